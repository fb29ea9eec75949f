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
import base64
import gzip
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

from .harness import compare, frozen_heap, machine_info, now_iso, paced, percentile, render_comparison
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

            with frozen_heap():
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




# ---- issue 4: gRPC IngestService/Batch and HTTP POST /v1/batch ---------------------------
#
# Figure: `batches` requests of `batch_size` Track calls each (the same realistic
# 'Order Completed' calls as above), `concurrency` requests in flight, from one client
# process; events/s counts accepted events (every call of every answered request was
# accepted: the result checks it). The calls come from a write-key source created through
# SourceService with a rate limit high enough never to bite, so auth, the write-key lookup,
# validation, the tracking-plan lookup and the durable append all run as in production.
#
# Baseline: bare nats-py publish_async of batches*batch_size messages of the stored
# envelope's size (read back from CDP_INGEST), same headers, unique Nats-Msg-Id, to a
# throwaway stream configured like CDP_INGEST, then awaiting every ack.
#
# Latency: the same requests sent open loop (request i at start + i/rate, whatever the
# earlier ones are doing) at half of the peak events/s just measured; p50/p99 of the time
# from the scheduled send to the answer. Baseline: bare publish_async of batch_size
# messages and awaiting their acks, on the same schedule.
#
# Only the ingest service runs (no identity/profile consumers taking CPU from it).

BATCH_SUBJECT_KIND = "track"


def make_batch_calls(n: int, seed: int, users: int = 1000) -> list[dict]:
    """n Segment JSON track calls (the HTTP shape) with the same content as make_requests."""
    rng = random.Random(seed)
    run = secrets.token_hex(4)
    context = json.loads(CONTEXT)
    return [
        {"type": "track", "messageId": f"{run}-{i}", "userId": f"user-{rng.randrange(users)}",
         "event": "Order Completed", "properties": json.loads(properties_payload(i, rng)), "context": context}
        for i in range(n)
    ]


def grpc_batch(calls: list[dict], write_key: str) -> ingest_pb2.BatchRequest:
    return ingest_pb2.BatchRequest(write_key=write_key, calls=[
        ingest_pb2.Call(track=ingest_pb2.TrackRequest(
            common=ingest_pb2.EventCommon(message_id=c["messageId"], user_id=c["userId"], context_json=CONTEXT),
            event=c["event"], properties_json=json.dumps(c["properties"], separators=(",", ":"))))
        for c in calls])


def http_batch(calls: list[dict], gzip_body: bool) -> bytes:
    body = json.dumps({"batch": calls}, separators=(",", ":")).encode()
    return gzip.compress(body, compresslevel=6) if gzip_body else body


class _Sender:
    """One request (a gRPC BatchRequest or an HTTP body) -> accepted events; raises on failure."""

    def __init__(self, protocol: str, stub=None, session=None, url: str = "", auth=None, gzip_body: bool = False):
        self.protocol, self.stub, self.session, self.url, self.auth, self.gzip = protocol, stub, session, url, auth, gzip_body

    async def __call__(self, req) -> int:
        if self.protocol == "grpc":
            resp = await self.stub.Batch(req, timeout=60)
            if resp.rejected:
                raise RuntimeError(f"{resp.rejected} rejected: {[r.error for r in resp.results if r.error][:3]}")
            return resp.accepted
        headers = {"Content-Type": "application/json", "Authorization": self.auth}
        if self.gzip:
            headers["Content-Encoding"] = "gzip"
        async with self.session.post(self.url, data=req[0], headers=headers) as r:
            body = await r.read()
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}: {body[:200]!r}")
            if b'"rejected"' in body:
                raise RuntimeError(f"rejected calls: {body[:300]!r}")
        return req[1]


async def send_all(send: _Sender, requests: list, concurrency: int) -> dict:
    """Sends every request with `concurrency` in flight; returns accepted, errors, seconds."""
    it = iter(requests)
    accepted = 0
    errors: dict[str, int] = {}

    async def worker() -> None:
        nonlocal accepted
        for req in it:
            try:
                n = await send(req)  # not `accepted += await ...`: that reads `accepted` before awaiting
                accepted += n
            except Exception as e:  # noqa: BLE001 - counted and reported
                key = e.code().name if isinstance(e, grpc.aio.AioRpcError) else str(e)[:120]
                errors[key] = errors.get(key, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(requests)))))
    return {"accepted": accepted, "errors": errors, "seconds": time.perf_counter() - started}


async def open_loop(rate: float, items: list, send) -> tuple[list[float], int]:
    """Calls send(item) for item i at start + i/rate (open loop); latencies (s) from the
    scheduled time to completion, and the number of failures."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    failures = 0

    async def one(i: int, scheduled: float) -> None:
        nonlocal failures
        try:
            await send(items[i])
            latencies.append(loop.time() - scheduled)
        except Exception:  # noqa: BLE001 - counted
            failures += 1

    await paced(rate, len(items), one)
    return latencies, failures


def _ms(xs: list[float], p: float) -> float:
    return round(percentile(xs, p) * 1000, 2) if xs else float("nan")


def http_port_of(stack, name: str = "ingest") -> int:
    """The HTTP edge port the stack gave the service (CDP_HTTP_PORT in its environment)."""
    sp = stack.services[name]
    port = getattr(sp, "http_port", None)
    if port:
        return int(port)
    with open(f"/proc/{sp.proc.pid}/environ", "rb") as f:
        for kv in f.read().split(b"\0"):
            if kv.startswith(b"CDP_HTTP_PORT="):
                return int(kv.split(b"=", 1)[1])
    raise RuntimeError("cannot tell the ingest service's HTTP port")


async def _wait_http(url: str, session, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            async with session.get(url) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} is not serving")
        await asyncio.sleep(0.2)


async def run_batch_bench(protocol: str = "grpc", *, batch_size: int = 500, batches: int = 40,
                          concurrency: int = 4, gzip_body: bool = False, repetitions: int = 3, warmup: int = 1,
                          latency_seconds: float = 10.0, latency_fraction: float = 0.5) -> dict:
    """gRPC Batch or HTTP /v1/batch events/s beside bare publish_async msgs/s (same run, same
    payload size), then p50/p99 response time, open loop at `latency_fraction` of the peak."""
    if protocol not in ("grpc", "http"):
        raise ValueError("protocol is grpc or http")
    if batch_size < 1 or batches < 1 or concurrency < 1:
        raise ValueError("batch_size, batches and concurrency must be at least 1")
    import aiohttp

    from cdp.ingest.v1 import ingest_pb2_grpc as pb_grpc

    async with bench_stack(["ingest"]) as stack:
        ch = stack.channel("ingest")
        stub = pb_grpc.IngestServiceStub(ch)
        created = await pb_grpc.SourceServiceStub(ch).CreateSource(
            ingest_pb2.CreateSourceRequest(name="bench-" + secrets.token_hex(4), kind="server",
                                           rate_limit_per_s=1e9), timeout=30)
        write_key = created.write_key
        nc = await nats.connect(stack.infra.nats_url, name="cdp-bench", pending_size=64 * 1024 * 1024)
        js = nc.jetstream(timeout=10)
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=max(concurrency, 64)))
        bench_stream = "BENCH_" + secrets.token_hex(4).upper()
        bench_subject = f"bench.{bench_stream.lower()}.track"
        seeds = iter(range(1, 10**9))
        try:
            if protocol == "http":
                base = f"http://127.0.0.1:{http_port_of(stack)}"
                await _wait_http(base + "/health", session)
                send = _Sender("http", session=session, url=base + "/v1/batch",
                               auth="Basic " + base64.b64encode(f"{write_key}:".encode()).decode(), gzip_body=gzip_body)

                def build(n_batches: int) -> list:
                    out = []
                    for _ in range(n_batches):
                        calls = make_batch_calls(batch_size, next(seeds))
                        out.append((http_batch(calls, gzip_body), len(calls)))
                    return out
            else:
                send = _Sender("grpc", stub=stub)

                def build(n_batches: int) -> list:
                    return [grpc_batch(make_batch_calls(batch_size, next(seeds)), write_key) for _ in range(n_batches)]

            # One request, read back from the log: the exact stored envelope (size and headers).
            probe = build(1)
            await send(probe[0])
            stored = await js.get_last_msg(stream_name("ingest"), TRACK_SUBJECT)
            payload = bytes(stored.data)
            headers = {k: v for k, v in (stored.headers or {}).items() if k != "Nats-Msg-Id"}
            request_bytes = len(probe[0][0]) if protocol == "http" else probe[0].ByteSize()
            await js.add_stream(api.StreamConfig(
                name=bench_stream, subjects=[f"bench.{bench_stream.lower()}.>"], storage=api.StorageType.FILE,
                retention=api.RetentionPolicy.LIMITS, duplicate_window=DUPLICATE_WINDOW_S, allow_direct=True))

            events = batches * batch_size
            done: list[dict] = []

            async def figure(n_batches: int = batches, record: bool = True) -> float:
                reqs = build(n_batches)  # built outside the timed part
                out = await send_all(send, reqs, concurrency)
                if record:
                    done.append(out)
                return out["accepted"] / out["seconds"]

            async def baseline(n: int = events) -> float:
                return n / await publish_all(js, bench_subject, payload, n, headers)

            what = "gRPC IngestService/Batch" if protocol == "grpc" else \
                f"HTTP POST /v1/batch (gzip {'on' if gzip_body else 'off'})"
            warm_batches = max(1, min(batches, 8))
            with frozen_heap():
                cmp = await compare(
                    f"ingest: {what} events/s vs bare JetStream publish_async msgs/s", figure, baseline,
                    repetitions=repetitions, warmup=warmup, unit="msgs/s",
                    warmup_figure=lambda: figure(warm_batches, record=False),
                    warmup_baseline=lambda: baseline(warm_batches * batch_size))

            # Latency at a fraction of the peak just measured, open loop, beside bare publishes.
            rate_events = cmp.figure * latency_fraction
            rate_requests = rate_events / batch_size
            n_req = max(1, int(round(rate_requests * latency_seconds)))
            reqs = build(n_req)
            run = secrets.token_hex(4)
            counter = iter(range(10**12))

            async def bare_batch(_item) -> None:
                futs = [await js.publish_async(bench_subject, payload,
                                               headers={**headers, "Nats-Msg-Id": f"{run}-{next(counter)}"})
                        for _ in range(batch_size)]
                await asyncio.gather(*futs)

            with frozen_heap():
                lat, lat_failures = await open_loop(rate_requests, reqs, send)
                base_lat, base_failures = await open_loop(rate_requests, list(range(n_req)), bare_batch)
        finally:
            try:
                await js.delete_stream(bench_stream)
            except Exception:  # noqa: BLE001 - the stream may not exist when setup failed
                pass
            await session.close()
            await nc.close()
        errors: dict[str, int] = {}
        for t in done:
            for k, v in t["errors"].items():
                errors[k] = errors.get(k, 0) + v
        info = machine_info()
        p99, bp99 = _ms(lat, 99), _ms(base_lat, 99)
        return {
            "benchmark": "ingest-batch" if protocol == "grpc" else "ingest-http",
            "protocol": protocol,
            "gzip": gzip_body if protocol == "http" else None,
            "events_per_s": round(cmp.figure, 1),
            "baseline_per_s": round(cmp.baseline, 1),
            "ratio": round(cmp.ratio, 4),
            "goal_ratio": 0.8 if protocol == "grpc" else 0.5,
            "batch_size": batch_size,
            "batches": batches,
            "events": events,
            "concurrency": concurrency,
            "accepted": sum(t["accepted"] for t in done),
            "sent": events * len(done),
            "errors": errors,
            "payload_bytes": len(payload),
            "request_bytes": request_bytes,
            "repetitions": repetitions,
            "warmup": warmup,
            "runs": {"events_per_s": [round(x, 1) for x in cmp.figure_runs],
                     "baseline_per_s": [round(x, 1) for x in cmp.baseline_runs]},
            "latency": {
                "rate_events_per_s": round(rate_events, 1),
                "rate_requests_per_s": round(rate_requests, 3),
                "fraction_of_peak": latency_fraction,
                "seconds": latency_seconds,
                "requests": n_req,
                "answered": len(lat),
                "failures": lat_failures,
                "p50_ms": _ms(lat, 50), "p99_ms": p99, "max_ms": round(max(lat) * 1000, 2) if lat else float("nan"),
                "baseline_p50_ms": _ms(base_lat, 50), "baseline_p99_ms": bp99,
                "baseline_failures": base_failures,
                "ratio_p99": round(p99 / bp99, 3) if bp99 else float("nan"),
            },
            "services": "ingest only (no downstream consumers)",
            "stack": stack.describe(),
            "machine": info,
            "cpu_count": info["cpu_count"],
            "python": info["python"],
            "date": now_iso(),
            "comparison": cmp.to_json(),
        }


def render_batch(result: dict) -> str:
    what = "gRPC IngestService/Batch" if result["protocol"] == "grpc" else \
        f"HTTP POST /v1/batch, gzip {'on' if result['gzip'] else 'off'}"
    lt = result["latency"]
    met = "met" if result["ratio"] >= result["goal_ratio"] else "NOT met"
    lines = [
        f"{what}: {result['batches']} requests of {result['batch_size']} Track calls x {result['repetitions']} "
        f"(median), {result['concurrency']} in flight; envelope {result['payload_bytes']} B, "
        f"request {result['request_bytes']:,} B; {result['services']}",
        f"  {what.split(',')[0]:<26} {result['events_per_s']:>12,.0f} events/s   runs: {result['runs']['events_per_s']}",
        f"  bare publish_async         {result['baseline_per_s']:>12,.0f} msgs/s     runs: {result['runs']['baseline_per_s']}",
        f"  ratio                      {result['ratio']:>12.3f}   (goal >= {result['goal_ratio']}: {met})",
        f"  accepted {result['accepted']}/{result['sent']}" + (f", errors {result['errors']}" if result["errors"] else ""),
        f"  response time at {lt['fraction_of_peak']:.0%} of peak ({lt['rate_events_per_s']:,.0f} events/s = "
        f"{lt['rate_requests_per_s']:.2f} requests/s, open loop, {lt['requests']} requests): "
        f"p50 {lt['p50_ms']} ms, p99 {lt['p99_ms']} ms, max {lt['max_ms']} ms"
        + (f", {lt['failures']} failed" if lt["failures"] else ""),
        f"  bare publish_async of {result['batch_size']} + acks, same schedule: p50 {lt['baseline_p50_ms']} ms, "
        f"p99 {lt['baseline_p99_ms']} ms; ratio p99 {lt['ratio_p99']}",
        f"  machine: {result['cpu_count']} CPUs ({result['machine']['cpu_model']}), Python {result['python']}; "
        f"{result['date']}",
    ]
    return "\n".join(lines)


__all__ = ["run_ingest_bench", "run_batch_bench", "render", "render_batch", "render_comparison"]
