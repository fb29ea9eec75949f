"""Simulator throughput: records/s of `cdp simulate` beside bare orjson JSON-lines writing.

Figure: `World.write()` of a world sized to produce about `events` records (Segment
messages + Shopify webhooks + POS lines + CRM rows), 90 observed days, into a temporary
directory: drawing the behaviour, building every message, serializing, writing every file
and the ground truth. Reported as records/s and seconds.

Baseline: the same number of pre-built Segment message dicts (taken from the run's own
events.jsonl, loaded before timing and cycled) serialized with the same JSON library
(orjson, OPT_APPEND_NEWLINE) and written to a file in the same directory, one day's worth at
a time. It is the floor of writing that many JSON lines on this machine; the ratio says how
close generation gets to it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import tempfile
import time

import orjson

from .harness import compare, machine_info, now_iso, render_comparison

DAYS = 90
RECORDS_PER_PERSON_DAY = 0.44  # measured: ~40 records per person over 90 days with the default knobs
SAMPLE = 50_000


def people_for(events: int, days: int = DAYS) -> int:
    return max(100, round(events / (RECORDS_PER_PERSON_DAY * days)))


def run_simulate_bench(events: int = 1_000_000, seed: int = 1, repetitions: int = 1) -> dict:
    from cdp_sim import World

    people = people_for(events)
    tmp = tempfile.mkdtemp(prefix="cdp-bench-sim-")
    state: dict = {}

    def figure() -> dict:
        d = os.path.join(tmp, "world")
        shutil.rmtree(d, ignore_errors=True)
        t0, c0 = time.perf_counter(), time.process_time()
        world = World.generate(people=people, days=DAYS, seed=seed)
        manifest = world.write(d)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        n = manifest["counts"]["records"]
        state["records"] = n
        state["segment"] = manifest["counts"]["segment"]
        return {"value": n / dt, "seconds": dt, "cpu_seconds": dc, "records": n}

    def baseline() -> dict:
        n = state["records"]
        sample = state["sample"]
        chunk = max(1, n // DAYS)
        path = os.path.join(tmp, "baseline.jsonl")
        dumps, nl = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        t0, c0 = time.perf_counter(), time.process_time()
        with open(path, "wb", buffering=1 << 20) as f:
            done = 0
            it = itertools.cycle(sample)
            while done < n:
                k = min(chunk, n - done)
                f.write(b"".join([dumps(m, option=nl) for m in itertools.islice(it, k)]))
                done += k
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        return {"value": n / dt, "seconds": dt, "cpu_seconds": dc, "records": n}

    try:
        # the baseline's pre-built dicts: real messages of a small world of the same seed
        small = os.path.join(tmp, "sample")
        World.generate(people=2000, days=DAYS, seed=seed).write(small)
        with open(os.path.join(small, "events.jsonl"), "rb") as f:
            state["sample"] = [orjson.loads(line) for line in itertools.islice(f, SAMPLE)]
        c = asyncio.run(compare("simulate", figure, baseline, repetitions=repetitions, warmup=0,
                                unit="records/s", metric="value"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "benchmark": "simulate",
        "at": now_iso(),
        "machine": machine_info(),
        "params": {"events": events, "people": people, "days": DAYS, "seed": seed, "repetitions": repetitions},
        "records": state["records"],
        "segment_messages": state["segment"],
        "figure_records_per_s": c.figure,
        "figure_seconds": c.figure_metrics["seconds"],
        "figure_cpu_seconds": c.figure_metrics["cpu_seconds"],
        "baseline_records_per_s": c.baseline,
        "baseline_seconds": c.baseline_metrics["seconds"],
        "baseline_cpu_seconds": c.baseline_metrics["cpu_seconds"],
        "ratio": c.ratio,
        "comparison": c.to_json(),
    }


def render(result: dict) -> str:
    from .harness import Comparison

    c = Comparison(**result["comparison"])
    p = result["params"]
    return "\n".join([
        f"cdp simulate: {result['records']:,} records ({result['segment_messages']:,} Segment messages), "
        f"{p['people']:,} people x {p['days']} days, seed {p['seed']}",
        render_comparison(c),
        f"  time      figure {result['figure_seconds']:.1f} s ({result['figure_cpu_seconds']:.1f} s CPU)   "
        f"baseline {result['baseline_seconds']:.1f} s ({result['baseline_cpu_seconds']:.1f} s CPU): orjson dumps + "
        f"write of the same number of pre-built dicts",
    ])


if __name__ == "__main__":
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    print(render(run_simulate_bench(n)))
