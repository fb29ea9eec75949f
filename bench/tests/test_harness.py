"""The harness's logic with fake workloads (no servers, no timing assertions), and one
component smoke test of the ingest benchmark's shape (not its speed)."""

from __future__ import annotations

import json
import math

import pytest

from cdp_bench import harness
from cdp_bench.harness import compare, median, percentile, ratio


def sequence(values):
    it = iter(values)
    return lambda: next(it)


async def test_reports_medians_of_the_repetitions_and_their_ratio():
    # warm-up consumes the first value of each; the rest are the measured repetitions
    c = await compare("fake", sequence([999, 10, 30, 20]), sequence([999, 5, 4, 6]), repetitions=3, warmup=1)
    assert c.figure_runs == [10, 30, 20] and c.baseline_runs == [5, 4, 6]
    assert c.figure == 20 and c.baseline == 5
    assert c.ratio == 4


async def test_warm_up_runs_are_not_reported_and_can_use_other_workloads():
    calls = []

    def fig():
        calls.append("f")
        return 1.0

    def warm():
        calls.append("w")
        return 1000.0

    c = await compare("fake", fig, lambda: 1.0, repetitions=2, warmup=2, warmup_figure=warm)
    assert calls == ["w", "w", "f", "f"]
    assert c.figure_runs == [1.0, 1.0] and c.warmup == 2


async def test_interleaves_and_alternates_which_goes_first():
    order = []
    await compare("fake", lambda: order.append("F") or 1, lambda: order.append("B") or 1, repetitions=4, warmup=0)
    assert order == ["F", "B", "B", "F", "F", "B", "B", "F"]


async def test_back_to_back_when_not_interleaved():
    order = []
    await compare("fake", lambda: order.append("F") or 1, lambda: order.append("B") or 1, repetitions=2, warmup=0,
                  interleave=False)
    assert order == ["F", "F", "B", "B"]


async def test_async_workloads_and_named_metrics():
    async def fig():
        return {"p50_ms": 10.0, "p99_ms": 40.0}

    async def base():
        return {"p50_ms": 2.0, "p99_ms": 5.0}

    c = await compare("lat", fig, base, repetitions=1, warmup=0, metric="p50_ms", unit="ms", higher_is_better=False)
    assert c.figure == 10 and c.baseline == 2 and c.ratio == 5
    assert c.figure_metrics == {"p50_ms": 10.0, "p99_ms": 40.0}
    assert c.baseline_metrics["p99_ms"] == 5.0


async def test_a_missing_metric_is_an_error():
    with pytest.raises(KeyError, match="p50_ms"):
        await compare("lat", lambda: {"x": 1}, lambda: {"x": 1}, repetitions=1, warmup=0, metric="p50_ms")


async def test_rejects_no_repetitions():
    with pytest.raises(ValueError):
        await compare("x", lambda: 1, lambda: 1, repetitions=0)


async def test_to_json_is_plain_json_with_both_figures_and_the_ratio():
    c = await compare("fake", lambda: 3.0, lambda: 6.0, repetitions=2, warmup=1)
    d = c.to_json()
    assert json.loads(json.dumps(d)) == d
    assert {"name", "unit", "figure", "baseline", "ratio", "figure_runs", "baseline_runs", "repetitions",
            "warmup"} <= set(d)
    assert d["ratio"] == 0.5
    text = c.render()
    assert "figure" in text and "baseline" in text and "0.500" in text


def test_median_ratio_percentile():
    assert median([3, 1, 2]) == 2 and median([4, 1, 2, 3]) == 2.5
    with pytest.raises(ValueError):
        median([])
    assert ratio(10, 4) == 2.5 and ratio(1, 0) == math.inf and math.isnan(ratio(0, 0))
    xs = list(range(1, 101))
    assert percentile(xs, 50) == 50.5 and percentile(xs, 0) == 1 and percentile(xs, 100) == 100
    assert percentile([7.0], 99) == 7.0


def test_machine_info_names_cpus_and_python():
    info = harness.machine_info()
    assert info["cpu_count"] >= 1 and info["python"].count(".") == 2


def test_cli_renders_either_result():
    from cdp_bench import render

    ingest = {"benchmark": "ingest", "events": 10, "repetitions": 1, "concurrency": 2, "payload_bytes": 700,
              "properties_bytes": 500, "events_per_s": 100.0, "baseline_per_s": 1000.0, "ratio": 0.1,
              "runs": {"events_per_s": [100.0], "baseline_per_s": [1000.0]}, "accepted": 10, "sent": 10,
              "errors": {}, "cpu_count": 2, "python": "3.11.7", "machine": {"cpu_model": "x"}, "date": "d"}
    assert "0.100" in render(ingest) and "events/s" in render(ingest)
    latency = {"benchmark": "latency", "rate_per_s": 200, "seconds": 10, "payload_bytes": 500, "p50_ms": 30.0,
               "p99_ms": 90.0, "count": 2000, "sent": 2000, "baseline_p50_ms": 2.0, "baseline_p99_ms": 9.0,
               "baseline_count": 2000, "ratio_p50": 15.0, "ratio_p99": 10.0, "verified_with_get_profile": "25/25",
               "cpu_count": 2, "python": "3.11.7", "machine": {"cpu_model": "x"}, "date": "d"}
    assert "p99" in render(latency) and "15.00" in render(latency)


@pytest.mark.component
async def test_ingest_bench_smoke_accepts_every_event():
    from cdp_bench import run_ingest_bench

    r = await run_ingest_bench(events=200, concurrency=16, repetitions=1, warmup=1, warmup_events=20)
    assert json.loads(json.dumps(r)) == r
    for key in ("events_per_s", "baseline_per_s", "ratio", "events", "payload_bytes", "concurrency", "cpu_count",
                "python", "date"):
        assert key in r
    assert r["events"] == 200 and r["concurrency"] == 16
    assert r["accepted"] == r["sent"] == 200 and r["errors"] == {}
    assert r["events_per_s"] > 0 and r["baseline_per_s"] > 0
    assert r["ratio"] == pytest.approx(r["events_per_s"] / r["baseline_per_s"], rel=1e-2)
    assert r["payload_bytes"] > r["properties_bytes"] >= 400


def test_cli_parses_the_batch_benchmarks():
    from cdp_bench.cli import parser

    a = parser().parse_args(["ingest-batch", "--batch-size", "100", "--json"])
    assert a.bench == "ingest-batch" and a.batch_size == 100 and a.json and a.concurrency == 4
    h = parser().parse_args(["ingest-http", "--gzip"])
    assert h.bench == "ingest-http" and h.gzip and h.batch_size == 500


def test_cli_renders_batch_results():
    from cdp_bench import render

    r = {"benchmark": "ingest-http", "protocol": "http", "gzip": True, "events_per_s": 4000.0,
         "baseline_per_s": 10000.0, "ratio": 0.4, "goal_ratio": 0.5, "batch_size": 500, "batches": 40,
         "concurrency": 4, "accepted": 20000, "sent": 20000, "errors": {}, "payload_bytes": 900,
         "request_bytes": 45000, "repetitions": 3, "runs": {"events_per_s": [4000.0], "baseline_per_s": [10000.0]},
         "latency": {"rate_events_per_s": 2000.0, "rate_requests_per_s": 4.0, "fraction_of_peak": 0.5, "seconds": 10,
                     "requests": 40, "answered": 40, "failures": 0, "p50_ms": 50.0, "p99_ms": 90.0, "max_ms": 95.0,
                     "baseline_p50_ms": 20.0, "baseline_p99_ms": 30.0, "baseline_failures": 0, "ratio_p99": 3.0},
         "services": "ingest only", "cpu_count": 2, "python": "3.11.7", "machine": {"cpu_model": "x"}, "date": "d"}
    text = render(r)
    assert "gzip on" in text and "NOT met" in text and "p99 90.0 ms" in text and "0.400" in text


async def test_send_all_counts_every_accepted_event_with_concurrent_requests():
    import asyncio

    from cdp_bench.ingest import send_all

    async def send(n):
        await asyncio.sleep(0)  # a real await between reading and adding the count
        return n

    out = await send_all(send, [5] * 40, concurrency=4)
    assert out["accepted"] == 200 and out["errors"] == {}


async def test_open_loop_sends_every_item_and_counts_failures():
    from cdp_bench.ingest import open_loop

    async def send(i):
        if i == 3:
            raise RuntimeError("no")

    latencies, failures = await open_loop(1000.0, list(range(10)), send)
    assert len(latencies) == 9 and failures == 1 and all(x >= 0 for x in latencies)


@pytest.mark.component
@pytest.mark.parametrize("protocol,gzip_body", [("grpc", False), ("http", True)])
async def test_batch_bench_smoke_accepts_every_event(protocol, gzip_body):
    from cdp_bench.ingest import run_batch_bench

    r = await run_batch_bench(protocol, batch_size=20, batches=4, concurrency=2, gzip_body=gzip_body,
                              repetitions=1, warmup=1, latency_seconds=1)
    assert json.loads(json.dumps(r)) == r
    assert r["accepted"] == r["sent"] == 80 and r["errors"] == {}
    assert r["events_per_s"] > 0 and r["baseline_per_s"] > 0
    assert r["ratio"] == pytest.approx(r["events_per_s"] / r["baseline_per_s"], rel=1e-2)
    assert r["latency"]["answered"] == r["latency"]["requests"] >= 1 and r["latency"]["failures"] == 0
    assert r["latency"]["p99_ms"] > 0 and r["latency"]["baseline_p99_ms"] > 0
    assert r["payload_bytes"] > 500
