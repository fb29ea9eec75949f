"""The classic buy-till-you-die baselines, on scipy: BG/NBD, Pareto/NBD and Gamma-Gamma.

Pure functions over numpy arrays of the customer-by-sufficient-statistic summary:
`x` repeat transactions, `t_x` time of the last one since the customer's birth, `T` time from
birth to the cutoff (all in days), and for Gamma-Gamma `m` the mean value of the repeat
transactions. Likelihoods are written in log space (gammaln, betaln, hyp2f1 on log terms) so
heavy buyers do not overflow. Parameters are fitted by maximum likelihood (L-BFGS-B on log
parameters); a fit on more than `max_rows` customers uses a seeded random subsample, since the
parameters describe the population.

References: Fader, Hardie & Lee (2005) "Counting your customers the easy way" (BG/NBD);
Fader & Hardie (2005) "A note on deriving the Pareto/NBD model and related expressions";
Fader & Hardie (2013) "The Gamma-Gamma model of monetary value".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize
from scipy.special import betaln, gammaln, hyp2f1

MAX_FIT_ROWS = 10_000


class FitError(ValueError):
    """The model cannot be fitted on this data (too few customers, no repeat buyers)."""


def _fit(neg_ll, x0: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    def f(logp):
        v = neg_ll(np.exp(logp))
        return v if np.isfinite(v) else 1e300

    res = optimize.minimize(f, np.log(x0), method="L-BFGS-B", bounds=[(-9.0, 9.0)] * len(x0))
    if not np.isfinite(res.fun) or res.fun >= 1e299:
        raise FitError(f"the likelihood did not converge ({res.message})")
    return dict(zip(names, (float(v) for v in np.exp(res.x)), strict=True))


def _sample(rows: int, max_rows: int, seed: int) -> np.ndarray | slice:
    if rows <= max_rows:
        return slice(None)
    return np.sort(np.random.default_rng(seed).choice(rows, max_rows, replace=False))


def _check(x, t_x, T):
    x, t_x, T = (np.asarray(a, dtype=np.float64) for a in (x, t_x, T))
    if len(x) < 10:
        raise FitError(f"{len(x)} customers; at least 10 are needed")
    if not (x > 0).any():
        raise FitError("no customer has a repeat transaction")
    return x, t_x, T


# --- BG/NBD ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class BetaGeoFitter:
    r: float
    alpha: float
    a: float
    b: float

    @staticmethod
    def log_likelihood(params, x, t_x, T) -> np.ndarray:
        """Per-customer log-likelihood (Fader, Hardie & Lee 2005, eq. 6)."""
        r, alpha, a, b = params
        x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
        common = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
        a1 = betaln(a, b + x) - betaln(a, b) - (r + x) * np.log(alpha + T)
        with np.errstate(divide="ignore", invalid="ignore"):
            a2 = np.where(x > 0, betaln(a + 1, b + np.maximum(x, 1) - 1) - betaln(a, b)
                          - (r + x) * np.log(alpha + t_x), -np.inf)
        return common + np.logaddexp(a1, a2)

    @classmethod
    def fit(cls, x, t_x, T, *, max_rows: int = MAX_FIT_ROWS, seed: int = 0,
            start: tuple[float, ...] | None = None) -> BetaGeoFitter:
        """`start`: parameters to start the search from (e.g. a fit on similar data)."""
        x, t_x, T = _check(x, t_x, T)
        s = _sample(len(x), max_rows, seed)
        x, t_x, T = x[s], t_x[s], T[s]
        x0 = np.array(start) if start is not None else np.array([1.0, max(float(T.mean()), 1.0), 1.0, 1.0])
        p = _fit(lambda v: -cls.log_likelihood(v, x, t_x, T).sum(), x0, ("r", "alpha", "a", "b"))
        return cls(**p)

    @property
    def params(self) -> tuple[float, float, float, float]:
        return (self.r, self.alpha, self.a, self.b)

    def p_alive(self, x, t_x, T) -> np.ndarray:
        r, alpha, a, b = self.params
        x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            odds = np.where(x > 0, a / (b + x - 1) * np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + t_x))), 0.0)
        return 1.0 / (1.0 + odds)

    def expected_purchases(self, t: float, x, t_x, T) -> np.ndarray:
        """E[transactions in (T, T+t] | x, t_x, T] (eq. 10)."""
        r, alpha, a, b = self.params
        x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
        z = t / (alpha + T + t)
        h = hyp2f1(r + x, b + x, a + b + x - 1, z)
        term = 1.0 - np.exp((r + x) * np.log((alpha + T) / (alpha + T + t))) * h
        return (a + b + x - 1) / (a - 1) * term * self.p_alive(x, t_x, T)

    def expected_purchases_new(self, t: float) -> float:
        """E[X(t)] for a customer just born (eq. 7)."""
        r, alpha, a, b = self.params
        z = t / (alpha + t)
        return float((a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, z)))


# --- Pareto/NBD ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ParetoNBDFitter:
    r: float
    alpha: float
    s: float
    beta: float

    @staticmethod
    def log_likelihood(params, x, t_x, T) -> np.ndarray:
        """Per-customer log-likelihood (Fader & Hardie 2005, eq. 19-22), in log space."""
        r, alpha, s, beta = params
        x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
        rsx = r + s + x
        if alpha >= beta:
            big, other = alpha, r + x
            arg1, arg2 = (alpha - beta) / (alpha + t_x), (alpha - beta) / (alpha + T)
            base1, base2 = alpha + t_x, alpha + T
            b_param = s + 1
        else:
            big, other = beta, r + x
            arg1, arg2 = (beta - alpha) / (beta + t_x), (beta - alpha) / (beta + T)
            base1, base2 = beta + t_x, beta + T
            b_param = other
        del big
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            l1 = np.log(hyp2f1(rsx, b_param, rsx + 1, arg1)) - rsx * np.log(base1)
            l2 = np.log(hyp2f1(rsx, b_param, rsx + 1, arg2)) - rsx * np.log(base2)
            # A0 = exp(l1) - exp(l2) >= 0 since t_x <= T
            log_a0 = l1 + np.log1p(-np.exp(np.minimum(l2 - l1, 0.0)))
        log_common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
        first = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
        second = np.log(s) - np.log(rsx) + log_a0
        return log_common + np.logaddexp(first, np.where(np.isfinite(second), second, -np.inf))

    @classmethod
    def fit(cls, x, t_x, T, *, max_rows: int = MAX_FIT_ROWS, seed: int = 0) -> ParetoNBDFitter:
        x, t_x, T = _check(x, t_x, T)
        s_ = _sample(len(x), max_rows, seed)
        x, t_x, T = x[s_], t_x[s_], T[s_]
        p = _fit(lambda v: -cls.log_likelihood(v, x, t_x, T).sum(),
                 np.array([1.0, max(float(T.mean()), 1.0), 1.0, max(float(T.mean()), 1.0)]),
                 ("r", "alpha", "s", "beta"))
        return cls(**p)

    @property
    def params(self) -> tuple[float, float, float, float]:
        return (self.r, self.alpha, self.s, self.beta)

    def p_alive(self, x, t_x, T) -> np.ndarray:
        r, alpha, s, beta = self.params
        x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
        log_first = (gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
                     - (r + x) * np.log(alpha + T) - s * np.log(beta + T))
        return np.exp(log_first - self.log_likelihood(self.params, x, t_x, T))

    def expected_purchases(self, t: float, x, t_x, T) -> np.ndarray:
        """E[transactions in (T, T+t] | x, t_x, T] (Fader & Hardie 2005, eq. 27)."""
        r, alpha, s, beta = self.params
        x, T = np.asarray(x, dtype=np.float64), np.asarray(T, dtype=np.float64)
        if abs(s - 1.0) < 1e-6:
            growth = np.log((beta + T + t) / (beta + T))
        else:
            growth = (1.0 - ((beta + T) / (beta + T + t)) ** (s - 1)) / (s - 1)
        return self.p_alive(x, t_x, T) * (r + x) * (beta + T) / (alpha + T) * growth


# --- Gamma-Gamma -----------------------------------------------------------------------------

@dataclass(frozen=True)
class GammaGammaFitter:
    p: float
    q: float
    v: float  # Fader & Hardie's gamma: the scale of the Gamma prior on nu

    @staticmethod
    def log_likelihood(params, x, m) -> np.ndarray:
        """Per-customer log-likelihood of the mean value m of x transactions (Fader & Hardie 2013,
        eq. 3), up to terms free of the parameters."""
        p, q, v = params
        x, m = np.asarray(x, dtype=np.float64), np.asarray(m, dtype=np.float64)
        return (gammaln(p * x + q) - gammaln(p * x) - gammaln(q) + q * np.log(v)
                + (p * x - 1) * np.log(m) + p * x * np.log(x) - (p * x + q) * np.log(v + m * x))

    @classmethod
    def fit(cls, x, m, *, max_rows: int = MAX_FIT_ROWS, seed: int = 0) -> GammaGammaFitter:
        x, m = np.asarray(x, dtype=np.float64), np.asarray(m, dtype=np.float64)
        keep = (x > 0) & (m > 0)
        if keep.sum() < 10:
            raise FitError(f"{int(keep.sum())} customers with repeat transactions of positive value; at least 10 are needed")
        x, m = x[keep], m[keep]
        s = _sample(len(x), max_rows, seed)
        x, m = x[s], m[s]
        p = _fit(lambda pr: -cls.log_likelihood(pr, x, m).sum(), np.array([1.0, 2.0, float(m.mean())]),
                 ("p", "q", "v"))
        return cls(**p)

    @property
    def params(self) -> tuple[float, float, float]:
        return (self.p, self.q, self.v)

    def population_mean(self) -> float:
        return self.p * self.v / (self.q - 1) if self.q > 1 else float("nan")

    def expected_value(self, x, m) -> np.ndarray:
        """E[M | x, m] (eq. 5): shrinks a customer's mean value towards the population mean;
        customers with no repeat transaction get the population mean."""
        p, q, v = self.params
        x, m = np.asarray(x, dtype=np.float64), np.asarray(m, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            est = p * (v + x * m) / (p * x + q - 1)
        return np.where(x > 0, est, self.population_mean())
