"""The BTYD likelihoods against independent numeric integration of their generative models,
and parameter recovery on data simulated from those models."""

import numpy as np
import pytest
from scipy import special, stats

from cdp_prediction.btyd import BetaGeoFitter, FitError, GammaGammaFitter, ParetoNBDFitter

CDNOW_BG = (0.243, 4.414, 0.793, 2.426)  # Fader, Hardie & Lee (2005), CDNOW
CDNOW_PNBD = (0.553, 10.58, 0.606, 11.67)  # Fader & Hardie (2005), CDNOW


def gamma_nodes(shape, rate, n=400):
    """Nodes and weights with sum(w * f(nodes)) = E[f(X)], X ~ Gamma(shape, rate): Gauss-Legendre
    in u = x**shape, which removes the density's singularity at 0 (independent of the closed forms)."""
    top = stats.gamma.ppf(1 - 1e-13, shape, scale=1 / rate) ** shape
    u, w = np.polynomial.legendre.leggauss(n)
    u, w = (u + 1) / 2 * top, w / 2 * top
    x = u ** (1 / shape)
    return x, w * rate ** shape / special.gamma(shape) / shape * np.exp(-rate * x)


def beta_nodes(a, b, n=400):
    u, w = np.polynomial.legendre.leggauss(n)
    u, w = (u + 1) / 2, w / 2
    p = u ** (1 / a)
    return p, w * (1 - p) ** (b - 1) / special.beta(a, b) / a


def bg_individual(params, x, t_x, T):
    """BG/NBD likelihood by integrating over lambda ~ Gamma(r, alpha) and p ~ Beta(a, b)."""
    r, alpha, a, b = params
    lam, wl = gamma_nodes(r, alpha)
    p, wp = beta_nodes(a, b)
    lam, p = lam[:, None], p[None, :]
    v = (1 - p) ** x * lam ** x * np.exp(-lam * T)
    if x > 0:
        v = v + p * (1 - p) ** (x - 1) * lam ** x * np.exp(-lam * t_x)
    return float(wl @ v @ wp)


def pnbd_individual(params, x, t_x, T):
    """Pareto/NBD likelihood by integrating over lambda ~ Gamma(r, alpha), mu ~ Gamma(s, beta)."""
    r, alpha, s, beta = params
    lam, wl = gamma_nodes(r, alpha)
    mu, wm = gamma_nodes(s, beta)
    lam, mu = lam[:, None], mu[None, :]
    v = lam ** x * np.exp(-(lam + mu) * T) + (lam ** x * mu / (lam + mu)) * (
        np.exp(-(lam + mu) * t_x) - np.exp(-(lam + mu) * T))
    return float(wl @ v @ wm)


@pytest.mark.parametrize("x,t_x,T", [(0, 0.0, 38.86), (2, 30.43, 38.86), (1, 1.71, 38.86), (5, 20.0, 30.0)])
def test_bgnbd_likelihood_matches_integration(x, t_x, T):
    closed = np.exp(BetaGeoFitter.log_likelihood(CDNOW_BG, np.array([x]), np.array([t_x]), np.array([T])))[0]
    assert closed == pytest.approx(bg_individual(CDNOW_BG, x, t_x, T), rel=1e-4)


@pytest.mark.parametrize("x,t_x,T", [(0, 0.0, 38.86), (2, 30.43, 38.86), (1, 1.71, 38.86), (4, 12.0, 30.0)])
@pytest.mark.parametrize("params", [CDNOW_PNBD, (0.553, 10.58, 0.606, 5.0)])  # alpha >= beta and alpha < beta
def test_pareto_nbd_likelihood_matches_integration(params, x, t_x, T):
    closed = np.exp(ParetoNBDFitter.log_likelihood(params, np.array([x]), np.array([t_x]), np.array([T])))[0]
    assert closed == pytest.approx(pnbd_individual(params, x, t_x, T), rel=1e-3)


def simulate_bg(rng, n, r, alpha, a, b, T):
    lam, p = rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n)
    x, tx = np.zeros(n), np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > T:
                break
            x[i], tx[i] = x[i] + 1, t
            if rng.random() < p[i]:
                break
    return x, tx, np.full(n, T)


def simulate_pnbd(rng, n, r, alpha, s, beta, T):
    lam, mu = rng.gamma(r, 1 / alpha, n), rng.gamma(s, 1 / beta, n)
    death = rng.exponential(1 / mu)
    x, tx = np.zeros(n), np.zeros(n)
    for i in range(n):
        t, end = 0.0, min(T, death[i])
        while True:
            t += rng.exponential(1 / lam[i])
            if t > end:
                break
            x[i], tx[i] = x[i] + 1, t
    return x, tx, np.full(n, T)


def test_bgnbd_recovers_parameters_and_predicts_holdout():
    rng = np.random.default_rng(7)
    x, tx, T = simulate_bg(rng, 6000, *CDNOW_BG, T=38.86)
    fit = BetaGeoFitter.fit(x, tx, T)
    assert fit.r == pytest.approx(CDNOW_BG[0], rel=0.15)
    assert fit.alpha == pytest.approx(CDNOW_BG[1], rel=0.25)
    # the mean number of purchases of a new customer in 39 weeks matches the simulated mean
    assert fit.expected_purchases_new(38.86) == pytest.approx(x.mean(), rel=0.08)
    assert np.all((fit.p_alive(x, tx, T) > 0) & (fit.p_alive(x, tx, T) <= 1))


def test_pareto_nbd_recovers_parameters():
    rng = np.random.default_rng(8)
    x, tx, T = simulate_pnbd(rng, 6000, *CDNOW_PNBD, T=38.86)
    fit = ParetoNBDFitter.fit(x, tx, T)
    # s and beta are weakly identified one by one; the mean purchase and dropout rates are not
    assert fit.r / fit.alpha == pytest.approx(CDNOW_PNBD[0] / CDNOW_PNBD[1], rel=0.1)
    assert fit.s / fit.beta == pytest.approx(CDNOW_PNBD[2] / CDNOW_PNBD[3], rel=0.2)
    # The fitted likelihood is at least as high as the true parameters' (it is the maximum).
    assert ParetoNBDFitter.log_likelihood(fit.params, x, tx, T).sum() >= \
        ParetoNBDFitter.log_likelihood(CDNOW_PNBD, x, tx, T).sum() - 1e-6


def test_conditional_expectations_order_customers_sensibly():
    fit = ParetoNBDFitter(*CDNOW_PNBD)
    bg = BetaGeoFitter(*CDNOW_BG)
    # a frequent recent buyer > a frequent buyer gone quiet > a one-off buyer
    x, tx, T = np.array([10, 10, 1]), np.array([38.0, 5.0, 38.0]), np.full(3, 39.0)
    for model in (fit, bg):
        e = model.expected_purchases(39.0, x, tx, T)
        assert e[0] > e[1] and e[0] > e[2]
        assert model.p_alive(x, tx, T)[0] > model.p_alive(x, tx, T)[1]


def test_gamma_gamma_recovers_parameters():
    rng = np.random.default_rng(9)
    p, q, v = 6.25, 3.74, 15.44  # Fader & Hardie (2013), CDNOW
    nu = rng.gamma(q, 1 / v, 4000)
    x = rng.integers(1, 8, 4000)
    m = np.array([rng.gamma(p, 1 / nu[i], x[i]).mean() for i in range(4000)])
    fit = GammaGammaFitter.fit(x, m)
    assert fit.p == pytest.approx(p, rel=0.2)
    assert fit.q == pytest.approx(q, rel=0.2)
    assert fit.population_mean() == pytest.approx(p * v / (q - 1), rel=0.1)
    # shrinkage: one transaction's value is pulled towards the population mean
    est = fit.expected_value(np.array([1, 50]), np.array([200.0, 200.0]))
    assert est[0] < est[1] < 200.0 + 1e-9


def test_fit_refuses_data_without_repeat_buyers():
    with pytest.raises(FitError, match="repeat"):
        BetaGeoFitter.fit(np.zeros(50), np.zeros(50), np.full(50, 10.0))
    with pytest.raises(FitError, match="at least 10"):
        ParetoNBDFitter.fit(np.ones(3), np.ones(3), np.full(3, 10.0))
