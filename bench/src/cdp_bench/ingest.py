"""Ingest throughput: gRPC IngestService.Track events/s beside bare JetStream publishes/s.

Figure: one client process (grpc.aio, one channel) keeps `concurrency` Track calls in
flight until `events` calls have been answered. Each call carries a realistic ~500-byte
properties payload; an answered call is durable in CDP_INGEST (the service awaits the
JetStream ack before it answers), so events/s is durable events per second.

Baseline: bare nats-py `publish_async` of the same number of messages, of the same size
as one Track's stored envelope (read back from CDP_INGEST), with the same headers, to a
throwaway file-storage stream configured like CDP_INGEST (duplicate window included), then
awaiting every ack. It is the ceiling the bus gives this client process on this machine;
the ratio says what share of it the service delivers.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
import uuid

import grpc
import nats
from nats.js import api

from cdp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from cdp_core.bus import DUPLICATE_WINDOW_S, stream_name

from .harness import compare, machine_info, now_iso, render_comparison
from .stack import bench_stack

TRACK_SUBJECT = "cdp.ingest.event.track"
_PRODUCTS = ["Espresso Machine", "Grinder", "Milk Jug", "Tamper", "Descaler", "Filter Papers", "Scale", "Kettle"]


def properties_payload(i: int, rng: random.Random) -> str:
    """A realistic 'Order Completed' properties object of about 500 bytes."""
    n = 3
    products = [
        {"product_id": f"sku-{rng.randrange(10**6):06d}", "name": rng.choice(_PRODUCTS),
         "price": round(rng.uniform(3, 400), 2), "quantity": rng.randint(1, 3), "category": "coffee"}
        for _ in range(n)
    ]
    props = {
        "order_id": f"ord-{i:08d}-{rng.randrange(16**6):06x}",
        "checkout_id": uuid.UUID(int=rng.getrandbits(128)).hex,
        "affiliation": "web-store",
        "total": round(sum(p["price"] * p["quantity"] for p in products), 2),
        "revenue": round(rng.uniform(5, 800), 2),
        "shipping": 4.99,
        "tax": round(rng.uniform(0, 40), 2),
        "discount": 0,
        "coupon": rng.choice(["", "SPRING10", "WELCOME"]),
        "currency": "EUR",
        "products": products,
    }
    return json.dumps(props, separators=(",", ":"))


CONTEXT = json.dumps({"library": {"name": "cdp-bench", "version": "0.1.0"}, "ip": "203.0.113.7",
                      "locale": "en-GB"}, separators=(",", ":"))


def make_requests(n: int, seed: int = 1, users: int = 1000) -> list[ingest_pb2.TrackRequest]:
    rng = random.Random(seed)
    run = secrets.token_hex(4)
    return [
        ingest_pb2.TrackRequest(
            common=ingest_pb2.EventCommon(message_id=f"{run}-{i}", user_id=f"user-{rng.randrange(users)}",
                                          context_json=CONTEXT),
            event="Order Completed",
            properties_json=properties_payload(i, rng),
        )
        for i in range(n)
    ]


async def track_all(stub: ingest_pb2_grpc.IngestServiceStub, requests: list, concurrency: int,
                    timeout_s: float = 30.0) -> dict:
    """Sends every request with `concurrency` calls in flight; returns count, errors, seconds."""
    it = iter(requests)
    accepted = 0
    errors: dict[str, int] = {}

    async def worker() -> None:
        nonlocal accepted
        for req in it:  # one shared iterator: each request is sent once
            try:
                await stub.Track(req, timeout=timeout_s)
                accepted += 1
            except grpc.aio.AioRpcError as e:
                errors[e.code().name] = errors.get(e.code().name, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(requests)))))
    elapsed = time.perf_counter() - started
    return {"accepted": accepted, "errors": errors, "seconds": elapsed}


async def publish_all(js, subject: str, payload: bytes, n: int, headers: dict[str, str]) -> float:
    """publish_async n messages, then await every ack; returns seconds."""
    run = secrets.token_hex(4)
    started = time.perf_counter()
    futures = [await js.publish_async(subject, payload, headers={**headers, "Nats-Msg-Id": f"{run}-{i}"})
               for i in range(n)]
    await asyncio.gather(*futures)
    return time.perf_counter() - started


async def run_ingest_bench(events: int = 20000, concurrency: int = 64, *, repetitions: int = 3, warmup: int = 1,
                           warmup_events: int | None = None) -> dict:
    """Track events/s over gRPC beside bare publish_async msgs/s, same run, same payload size."""
    if events < 1 or concurrency < 1:
        raise ValueError("events and concurrency must be at least 1")
    warmup_events = warmup_events or max(1, min(events, 2000))
    async with bench_stack(["ingest"]) as stack:
        stub = ingest_pb2_grpc.IngestServiceStub(stack.channel("ingest"))
        nc = await nats.connect(stack.infra.nats_url, name="cdp-bench", pending_size=64 * 1024 * 1024)
        js = nc.jetstream(timeout=10)
        bench_stream = "BENCH_" + secrets.token_hex(4).upper()
        bench_subject = f"bench.{bench_stream.lower()}.track"
        try:
            # One Track, read back from the log: the exact stored envelope (size and headers).
            probe = make_requests(1, seed=0)[0]
            await stub.Track(probe, timeout=30)
            stored = await js.get_last_msg(stream_name("ingest"), TRACK_SUBJECT)
            payload = bytes(stored.data)
            headers = {k: v for k, v in (stored.headers or {}).items() if k != "Nats-Msg-Id"}
            await js.add_stream(api.StreamConfig(
                name=bench_stream, subjects=[f"bench.{bench_stream.lower()}.>"], storage=api.StorageType.FILE,
                retention=api.RetentionPolicy.LIMITS, duplicate_window=DUPLICATE_WINDOW_S, allow_direct=True))

            batches = iter(range(1, 10**9))
            tracked: list[dict] = []

            async def figure(n: int = events, record: bool = True) -> float:
                reqs = make_requests(n, seed=next(batches))  # built outside the timed part
                out = await track_all(stub, reqs, concurrency)
                if record:
                    tracked.append(out)
                return out["accepted"] / out["seconds"]

            async def baseline(n: int = events) -> float:
                return n / await publish_all(js, bench_subject, payload, n, headers)

            cmp = await compare(
                "ingest: gRPC Track events/s vs bare JetStream publish_async msgs/s",
                figure, baseline, repetitions=repetitions, warmup=warmup, unit="msgs/s",
                warmup_figure=lambda: figure(warmup_events, record=False),
                warmup_baseline=lambda: baseline(warmup_events),
            )
        finally:
            try:
                await js.delete_stream(bench_stream)
            except Exception:  # noqa: BLE001 - the stream may not exist when setup failed
                pass
            await nc.close()
        errors: dict[str, int] = {}
        for t in tracked:
            for k, v in t["errors"].items():
                errors[k] = errors.get(k, 0) + v
        return {
            "benchmark": "ingest",
            "events_per_s": round(cmp.figure, 1),
            "baseline_per_s": round(cmp.baseline, 1),
            "ratio": round(cmp.ratio, 4),
            "events": events,
            "accepted": sum(t["accepted"] for t in tracked),
            "sent": events * len(tracked),
            "errors": errors,
            "payload_bytes": len(payload),
            "properties_bytes": len(probe.properties_json.encode()),
            "concurrency": concurrency,
            "repetitions": repetitions,
            "warmup": warmup,
            "warmup_events": warmup_events,
            "runs": {"events_per_s": [round(x, 1) for x in cmp.figure_runs],
                     "baseline_per_s": [round(x, 1) for x in cmp.baseline_runs]},
            "stack": stack.describe(),
            "machine": machine_info(),
            "cpu_count": machine_info()["cpu_count"],
            "python": machine_info()["python"],
            "date": now_iso(),
            "comparison": cmp.to_json(),
        }


def render(result: dict) -> str:
    lines = [
        f"ingest: {result['events']} Track calls x {result['repetitions']} (median), "
        f"{result['concurrency']} in flight, envelope {result['payload_bytes']} B "
        f"(properties {result['properties_bytes']} B)",
        f"  gRPC Track           {result['events_per_s']:>12,.0f} events/s   runs: {result['runs']['events_per_s']}",
        f"  bare publish_async   {result['baseline_per_s']:>12,.0f} msgs/s     runs: {result['runs']['baseline_per_s']}",
        f"  ratio                {result['ratio']:>12.3f}   (events/s / baseline msgs/s)",
        f"  accepted {result['accepted']}/{result['sent']}" + (f", errors {result['errors']}" if result["errors"] else ""),
        f"  machine: {result['cpu_count']} CPUs ({result['machine']['cpu_model']}), Python {result['python']}; "
        f"{result['date']}",
    ]
    return "\n".join(lines)


__all__ = ["run_ingest_bench", "render", "render_comparison"]
