"""The prediction benchmark at a tiny size, so it cannot rot: its shape and bookkeeping (every
target beside its baselines on the same profiles, the tiled speed run, the online samples),
never its figures."""

from __future__ import annotations

import pytest

from cdp_bench.cli import parser, render
from cdp_bench.prediction import run_prediction_bench, run_service_bench


def test_prediction_bench_reports_every_target_beside_its_baselines():
    r = run_prediction_bench(people=1500, days=100, seed=3, horizon=28, scale_profiles=3000, online_samples=20)
    fw = r["future_window"]
    assert set(fw) == {"purchase", "churn", "purchases", "ltv"}  # the truth has no discount outcome
    assert {"model", "rfm", "bgnbd", "pareto_nbd"} <= set(fw["purchase"])
    assert {"model", "rfm", "bgnbd_gamma_gamma", "pareto_nbd_gamma_gamma"} <= set(fw["ltv"])
    n = r["world"]["profiles_scored"]
    assert all(m["n"] == n for m in (fw["purchase"]["model"], fw["purchase"]["bgnbd"], fw["ltv"]["rfm"]))
    assert "discount" in r["validation_window"]
    assert r["speed"]["copies"] >= 2 and r["speed"]["scored"] == r["speed"]["profiles"]
    assert 0 < r["speed"]["boosting_rows"] <= r["speed"]["train_rows"] and r["speed"]["affinity_tuples_seconds"] >= 0
    assert r["online"]["samples"] == 20
    assert set(r["latent"]["attribute_top1_in_preferred"]) == {"category", "colour", "size", "brand", "price_band"}
    text = render(r)
    assert "future window" in text and "bgnbd" in text and "online scoring" in text


def test_the_subcommand_parses():
    args = parser().parse_args(["prediction", "--people", "100", "--scale-profiles", "1000", "--json"])
    assert (args.people, args.scale_profiles, args.json) == (100, 1000, True)


@pytest.mark.component
async def test_service_bench_trains_scores_and_times_online_events():
    r = await run_service_bench(2500, days=100, seed=7, online=5)
    assert r["resolved_events"] > 50_000 and r["project_events_per_s"] > 0
    assert r["model_version"] == 1
    assert 0 < r["load_seconds"] <= r["train_seconds"] <= r["train_and_score_seconds"]
    assert r["online"]["events"] == 5 and r["online"]["p50_ms"] >= r["debounce_s"] * 1000
    assert r["baseline_publish_deliver"]["p99_ms"] > 0
