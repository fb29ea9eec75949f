"""The command line of the benchmarks: `python -m cdp_bench ingest|ingest-batch|ingest-http|latency|simulate|identity-accuracy|identity|profile|prediction [--json] ...`.

Human output by default (figure, baseline, ratio); with --json exactly one JSON object on
stdout. `cdp bench ...` calls the same functions (run_ingest_bench, run_latency_bench, render).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from .ingest import run_ingest_bench
from .latency import run_latency_bench


def render(result: dict) -> str:
    """Human output for a result of either benchmark."""
    if result.get("benchmark") == "latency":
        from .latency import render as r
    elif result.get("benchmark") == "simulate":
        from .simulate import render as r
    elif result.get("benchmark") == "identity-accuracy":
        from .identity_accuracy import render as r
    elif result.get("benchmark") == "identity":
        from .identity import render as r
    elif result.get("benchmark") == "profile":
        from .profile import render as r
    elif result.get("benchmark") == "prediction":
        from .prediction import render as r
    elif result.get("benchmark") == "segment":
        from .segment import render as r
    elif result.get("benchmark") in ("ingest-batch", "ingest-http"):
        from .ingest import render_batch as r
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
    for name, what in (("ingest-batch", "gRPC IngestService/Batch"), ("ingest-http", "HTTP POST /v1/batch")):
        b = sub.add_parser(name, help=f"{what} events/s beside bare publish_async msgs/s, and p99 at half the peak")
        b.add_argument("--batch-size", type=int, default=500, help="Track calls per request (default 500)")
        b.add_argument("--batches", type=int, default=40, help="requests per repetition (default 40)")
        b.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
        b.add_argument("--repetitions", type=int, default=3, help="measured repetitions, median reported (default 3)")
        b.add_argument("--latency-seconds", type=float, default=10, help="open-loop latency run (default 10 s)")
        if name == "ingest-http":
            b.add_argument("--gzip", action="store_true", help="gzip-encoded bodies (Content-Encoding: gzip)")
        b.add_argument("--json", action="store_true", help="one JSON object on stdout")
    lat = sub.add_parser("latency", help="Identify -> profile-visible p50/p99 beside a bare JetStream round trip")
    lat.add_argument("--rate", type=float, default=200, help="Identify calls per second (default 200)")
    lat.add_argument("--seconds", type=float, default=10, help="how long to send (default 10)")
    lat.add_argument("--repetitions", type=int, default=1, help="measured repetitions (default 1)")
    lat.add_argument("--json", action="store_true", help="one JSON object on stdout")
    sim = sub.add_parser("simulate", help="simulator records/s beside serializing the same dicts to JSON lines")
    sim.add_argument("--events", type=int, default=1_000_000, help="records to generate (default 1,000,000)")
    sim.add_argument("--json", action="store_true", help="one JSON object on stdout")
    from .identity_accuracy import add_arguments as identity_accuracy_arguments

    identity_accuracy_arguments(sub.add_parser(
        "identity-accuracy", help="precision/recall of probabilistic matching on the simulator's offline records"))
    from .identity import add_arguments as identity_arguments

    identity_arguments(sub.add_parser(
        "identity", help="identity resolutions/s (deterministic, merge-heavy) beside bare COPY and fetch+ack, "
                         "store size per million identifiers, accuracy on the simulator's truth"))
    from .profile import add_arguments as profile_arguments

    profile_arguments(sub.add_parser(
        "profile", help="profile events projected/s beside bare fetch+ack and COPY, event -> profile-visible "
                        "latency, replay cost, disk per million profiles"))
    from .prediction import add_arguments as prediction_arguments

    prediction_arguments(sub.add_parser(
        "prediction", help="prediction accuracy on the simulator's future window beside RFM, BG/NBD and "
                           "Pareto/NBD; training and batch scoring time beside raw floors"))
    from .segment import add_arguments as segment_arguments

    segment_arguments(sub.add_parser(
        "segment", help="batch evaluation of a 10-condition segment beside bare COPY; event -> entered latency "
                        "beside a bare JetStream round trip; memory"))
    return p


def _interrupt_on_sigterm() -> None:
    """SIGTERM (a timeout, a CI stop) unwinds like Ctrl-C, so the benchmark stack's
    `finally` stops the service processes and servers it started."""

    def interrupt(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def main(argv: list[str] | None = None, prog: str = "python -m cdp_bench") -> int:
    args = parser(prog).parse_args(argv)
    _interrupt_on_sigterm()
    if args.bench == "ingest":
        result = asyncio.run(run_ingest_bench(args.events, args.concurrency, repetitions=args.repetitions))
    elif args.bench in ("ingest-batch", "ingest-http"):
        from .ingest import run_batch_bench

        result = asyncio.run(run_batch_bench(
            "grpc" if args.bench == "ingest-batch" else "http", batch_size=args.batch_size, batches=args.batches,
            concurrency=args.concurrency, gzip_body=getattr(args, "gzip", False), repetitions=args.repetitions,
            latency_seconds=args.latency_seconds))
    elif args.bench == "latency":
        result = asyncio.run(run_latency_bench(args.rate, args.seconds, repetitions=args.repetitions))
    elif args.bench == "identity-accuracy":
        from .identity_accuracy import run as run_identity_accuracy

        result = run_identity_accuracy(args)
    elif args.bench == "identity":
        from .identity import run as run_identity

        result = run_identity(args)
    elif args.bench == "profile":
        from .profile import run as run_profile

        result = run_profile(args)
    elif args.bench == "prediction":
        from .prediction import run_prediction_bench

        result = run_prediction_bench(args.people, args.days, args.seed, args.horizon, args.scale_profiles,
                                      score_threads=args.score_threads, service_people=args.service_people,
                                      service_online=args.service_online)
    elif args.bench == "segment":
        from .segment import run as run_segment

        result = run_segment(args)
    else:
        from .simulate import run_simulate_bench

        result = run_simulate_bench(events=args.events)
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        print(render(result))
    return 0


