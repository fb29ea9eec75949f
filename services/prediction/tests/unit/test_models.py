"""Training, calibration, refusal, scoring and explanations on a small simulated world."""

import numpy as np
import pytest
import xgboost as xgb

from cdp_prediction import metrics
from cdp_prediction.features import History
from cdp_prediction.models import (
    InsufficientData,
    Model,
    TrainConfig,
    _calibrate,
    apply_calibration,
    explain,
    score,
    train,
)
from cdp_prediction.simworld import load_world
from cdp_sim import World

H = 28


@pytest.fixture(scope="module")
def world():
    return load_world(World.generate(people=2000, days=110, seed=21))


@pytest.fixture(scope="module")
def model(world):
    return train(world.history, world.cutoff - H, TrainConfig(horizon_days=H, max_rounds=200))


def truncate(h: History, end: float) -> History:
    keep = h.t < end
    return History(h.profiles, h.idx[keep], h.t[keep], h.code[keep], h.value[keep], h.discount[keep],
                   h.channel[keep], {a: v[keep] for a, v in h.attrs.items()}, h.vocab)


def test_models_learn_and_are_calibrated(model):
    m = model.metrics
    assert set(m) == {"purchase", "churn", "discount", "purchases", "ltv"}
    assert m["purchase"]["model"]["auc"] > 0.65  # ~770 held-out profiles, 11 % positive
    assert m["purchase"]["model"]["ece"] < 0.05  # held-out half: probabilities mean what they say
    assert m["churn"]["model"]["auc"] > 0.55
    assert m["purchases"]["model"]["spearman"] > 0.15 and m["purchases"]["model"]["decile_lift"] > 2
    for target in ("purchase", "churn"):
        for name in ("rfm", "bgnbd", "pareto_nbd"):
            assert np.isfinite(m[target][name]["auc"])  # baselines on the same rows
    assert {"rfm", "bgnbd_gamma_gamma", "pareto_nbd_gamma_gamma"} <= set(m["ltv"])
    table = m["purchase"]["reliability"]
    assert sum(b["n"] for b in table) == m["purchase"]["model"]["n"]
    assert model.importance["purchase"]  # global importance, by gain


def test_training_uses_nothing_after_the_label_window(world, model):
    """Events after cutoff + horizon cannot change the model: train again without them."""
    cut = model.cutoff + H
    again = train(truncate(world.history, cut), model.cutoff, TrainConfig(horizon_days=H, max_rounds=200))
    a = score(model, world.history, world.cutoff)
    b = score(again, world.history, world.cutoff)
    np.testing.assert_allclose(a.purchase_probability, b.purchase_probability, rtol=1e-6)
    np.testing.assert_allclose(a.predicted_ltv, b.predicted_ltv, rtol=1e-6)


def test_scores_cover_every_profile_and_roundtrip(world, model):
    s = score(model, world.history, world.cutoff)
    assert len(s.profile_ids) > 1000
    assert np.all((s.purchase_probability >= 0) & (s.purchase_probability <= 1))
    assert np.all(s.expected_purchases >= 0) and np.all(s.predicted_ltv >= 0)
    assert np.all((s.ltv_percentile >= 0) & (s.ltv_percentile <= 100))
    row = s.row(0)
    assert set(row["affinities"]) == {"category", "brand", "colour", "size", "price_band"}
    back = Model.from_bytes(model.to_bytes())
    s2 = score(back, world.history, world.cutoff)
    np.testing.assert_array_equal(s.purchase_probability, s2.purchase_probability)
    assert back.metrics == model.metrics and back.feature_names == model.feature_names


def test_explanations_add_up_to_the_margin(world, model):
    s = score(model, world.history, world.cutoff)
    X = s.X[:20]
    top = explain(model, X, "purchase", top=len(model.feature_names))
    margin = model.boosters["purchase"].predict(xgb.DMatrix(X, feature_names=model.feature_names), output_margin=True)
    contribs = model.boosters["purchase"].predict(xgb.DMatrix(X, feature_names=model.feature_names), pred_contribs=True)
    for i in range(20):
        assert sum(c for _, _, c in top[i]) + contribs[i, -1] == pytest.approx(float(margin[i]), abs=1e-3)
        assert abs(top[i][0][2]) >= abs(top[i][-1][2])
    with pytest.raises(ValueError, match="unknown target"):
        explain(model, X, "nope")


def test_bad_input_is_refused_with_reasons(world):
    h = world.history
    with pytest.raises(InsufficientData, match="horizon_days must be at least 1"):
        train(h, world.cutoff - H, TrainConfig(horizon_days=0))
    with pytest.raises(InsufficientData, match="no data after the cutoff for labels"):
        train(h, world.cutoff - 5, TrainConfig(horizon_days=H))
    with pytest.raises(InsufficientData, match="less than 7 days of history"):
        train(h, world.start + 3, TrainConfig(horizon_days=H))
    with pytest.raises(InsufficientData) as e:
        train(h, world.cutoff - H, TrainConfig(horizon_days=H, min_positives=100_000))
    assert any("purchase:" in r and "positive training labels" in r for r in e.value.reasons)
    assert any("ltv:" in r for r in e.value.reasons)


def test_metrics_known_values():
    y = np.array([0, 0, 1, 1])
    c = metrics.classification(y, np.array([0.1, 0.4, 0.35, 0.8]))
    assert c["auc"] == pytest.approx(0.75)
    assert metrics.ece(np.tile([1, 0], 50), np.full(100, 0.5)) == pytest.approx(0.0)
    assert metrics.ece(np.ones(10), np.full(10, 0.7)) == pytest.approx(0.3)
    r = metrics.regression(np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 10.0]), np.arange(10.0))
    assert r["decile_lift"] == pytest.approx(10.0) and r["mae"] == pytest.approx(3.7)


def test_calibration_is_applied_only_where_it_helps():
    rng = np.random.default_rng(4)
    p = rng.uniform(0.01, 0.6, 6000)
    y = (rng.random(6000) < p).astype(float)
    # already calibrated: left alone, or changed by no more than the noise of a 2-parameter fit
    assert np.abs(apply_calibration(_calibrate(p, y), p) - p).max() < 0.03
    skewed = p ** 2.5  # systematically too low
    cal = _calibrate(skewed, y)
    assert cal["kind"] in ("platt", "isotonic")
    assert metrics.ece(y, apply_calibration(cal, skewed)) < 0.3 * metrics.ece(y, skewed)


def test_large_populations_are_sampled_for_boosting_calibration_and_metrics(world, model):
    """Above max_train_rows / max_eval_rows the boosters, the calibration and the held-out
    metrics use seeded samples; the model still learns, and says how many rows it used."""
    cfg = TrainConfig(horizon_days=H, max_rounds=200, max_train_rows=1500, max_eval_rows=500)
    small = train(world.history, world.cutoff - H, cfg)
    assert small.info["train_rows"] == model.info["train_rows"] > 1500
    assert small.info["boosting_rows"] == 1500 and model.info["boosting_rows"] == model.info["train_rows"]
    assert small.info["held_out_rows"] == 500 < model.info["held_out_rows"]
    assert small.metrics["purchase"]["model"]["n"] == 500
    assert small.metrics["purchase"]["model"]["auc"] > 0.6
    again = train(world.history, world.cutoff - H, cfg)  # seeded: the same sample, the same model
    np.testing.assert_array_equal(score(small, world.history, world.cutoff).purchase_probability,
                                  score(again, world.history, world.cutoff).purchase_probability)


def test_scorings_and_explanations_on_several_threads_share_one_model(world, model):
    """The service scores (batch, online) and explains on worker threads, all with one model's
    boosters, with different thread counts: each gives what it gives alone."""
    from concurrent.futures import ThreadPoolExecutor

    alone = score(model, world.history, world.cutoff)
    fresh = Model.from_bytes(model.to_bytes())  # configured by nothing yet: the first predictions configure it

    def work(i: int):
        if i % 3 == 2:
            return explain(fresh, alone.X[:50], "purchase")
        return score(fresh, world.history, world.cutoff, nthread=1 + i % 2).purchase_probability

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(work, range(12)))
    for i, r in enumerate(results):
        if i % 3 == 2:
            assert repr(r) == repr(explain(model, alone.X[:50], "purchase"))  # NaN feature values alike
        else:
            np.testing.assert_allclose(r, alone.purchase_probability, rtol=1e-6)
