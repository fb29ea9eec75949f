"""The command line of the benchmarks: `python -m cdp_bench ingest|latency [--json] ...`.

Human output by default (figure, baseline, ratio); with --json exactly one JSON object on
stdout. `cdp bench ...` calls the same functions (run_ingest_bench, run_latency_bench, render).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from .ingest import run_ingest_bench
from .latency import run_latency_bench


def render(result: dict) -> str:
    """Human output for a result of either benchmark."""
    if result.get("benchmark") == "latency":
        from .latency import render as r
    elif result.get("benchmark") == "simulate":
        from .simulate import render as r
    else:
        from .ingest import render as r
    return r(result)


def parser(prog: str = "python -m cdp_bench") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="CDP benchmarks: each figure beside a raw baseline measured in the same run.")
    sub = p.add_subparsers(dest="bench", required=True)
    i = sub.add_parser("ingest", help="gRPC Track events/s beside bare JetStream publish_async msgs/s")
    i.add_argument("--events", type=int, default=20000, help="Track calls per repetition (default 20000)")
    i.add_argument("--concurrency", type=int, default=64, help="calls in flight (default 64)")
    i.add_argument("--repetitions", type=int, default=3, help="measured repetitions, median reported (default 3)")
    i.add_argument("--json", action="store_true", help="one JSON object on stdout")
    lat = sub.add_parser("latency", help="Identify -> profile-visible p50/p99 beside a bare JetStream round trip")
    lat.add_argument("--rate", type=float, default=200, help="Identify calls per second (default 200)")
    lat.add_argument("--seconds", type=float, default=10, help="how long to send (default 10)")
    lat.add_argument("--repetitions", type=int, default=1, help="measured repetitions (default 1)")
    lat.add_argument("--json", action="store_true", help="one JSON object on stdout")
    sim = sub.add_parser("simulate", help="simulator records/s beside serializing the same dicts to JSON lines")
    sim.add_argument("--events", type=int, default=1_000_000, help="records to generate (default 1,000,000)")
    sim.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m cdp_bench") -> int:
    args = parser(prog).parse_args(argv)
    if args.bench == "ingest":
        result = asyncio.run(run_ingest_bench(args.events, args.concurrency, repetitions=args.repetitions))
    elif args.bench == "latency":
        result = asyncio.run(run_latency_bench(args.rate, args.seconds, repetitions=args.repetitions))
    else:
        from .simulate import run_simulate_bench

        result = run_simulate_bench(events=args.events)
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        print(render(result))
    return 0


