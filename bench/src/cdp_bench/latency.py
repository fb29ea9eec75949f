"""Event -> profile-visible latency at a steady rate, beside a bare JetStream round trip.

Figure: Identify calls sent open-loop at a fixed rate (each scheduled at start + i/rate,
whatever the previous calls are doing, so a slow system cannot slow the sender down and
hide its own latency), each for a new user id with a unique trait value. The clock starts
at the call's scheduled send time and stops when the `cdp.profile.changed` event carrying
that call's ingest event id arrives on a core NATS subscription. The profile service
publishes that event from its outbox after the transaction that wrote the profile has
committed, so at that moment GetProfile returns the trait: it is an upper bound of
"profile-visible". A sample of users is then checked with GetProfile for the trait.

The path measured: gRPC Identify -> ingest -> CDP_INGEST -> identity (pull, one PostgreSQL
transaction, outbox) -> CDP_IDENTITY -> profile (pull, one transaction, outbox) ->
CDP_PROFILE -> this process.

Baseline: bare JetStream at the same rate with a message of the same size as one stored
Identify envelope: `js.publish` (awaiting the ack) to a throwaway file-storage stream,
consumed by a durable pull consumer (fetch batches of 256, explicit ack per message, as the
services consume), timed from scheduled publish to receipt. One hop of the several above.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import uuid

import grpc
import nats
from nats.js import api

from cdp.common.v1 import identifier_pb2
from cdp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from cdp.profile.v1 import events_pb2 as profile_events
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_core import envelope
from cdp_core.bus import DUPLICATE_WINDOW_S, stream_name

from .harness import compare, machine_info, now_iso, paced, percentile
from .stack import bench_stack

IDENTIFY_SUBJECT = "cdp.ingest.event.identify"
CHANGED_SUBJECT = "cdp.profile.changed"
VERIFY_SAMPLE = 25


def _summary(latencies_s: list[float], sent: int, errors: int) -> dict[str, float]:
    ms = [x * 1000 for x in latencies_s]
    if not ms:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan"), "count": 0,
                "sent": sent, "missing": sent, "errors": errors}
    return {"p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99), "max_ms": max(ms), "count": len(ms),
            "sent": sent, "missing": sent - len(ms), "errors": errors}


class _Matcher:
    """Pairs sends (key -> scheduled time) with arrivals (key -> arrival time), in any order."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.sent: dict[str, float] = {}
        self.arrived: dict[str, float] = {}
        self.latencies: list[float] = []
        self.expected = 0
        self.done = asyncio.Event()

    def on_sent(self, key: str, at: float) -> None:
        if key in self.arrived:  # the arrival beat the reply to the caller
            self.latencies.append(self.arrived.pop(key) - at)
        else:
            self.sent[key] = at
        self._check()

    def on_arrival(self, key: str) -> None:
        now = self.loop.time()
        at = self.sent.pop(key, None)
        if at is not None:
            self.latencies.append(now - at)
            self._check()
        elif key not in self.arrived:
            self.arrived[key] = now

    def _check(self) -> None:
        if self.expected and len(self.latencies) >= self.expected:
            self.done.set()

    async def wait(self, expected: int, timeout: float) -> None:
        self.expected = expected
        self._check()
        try:
            await asyncio.wait_for(self.done.wait(), timeout)
        except TimeoutError:
            pass


def identify_request(run: str, i: int) -> tuple[ingest_pb2.IdentifyRequest, str, str]:
    user = f"bench-{run}-{i}"
    nonce = uuid.uuid4().hex
    traits = {"bench_nonce": nonce, "email": f"{user}@example.com", "name": f"Bench User {i}",
              "plan": random.choice(["free", "pro", "enterprise"]), "company": "Example Ltd",
              "created_at": "2024-05-01T10:00:00Z"}
    req = ingest_pb2.IdentifyRequest(common=ingest_pb2.EventCommon(message_id=f"{run}-{i}", user_id=user),
                                     traits_json=json.dumps(traits))
    return req, user, nonce


async def run_latency_bench(rate: float = 200, seconds: float = 10, *, repetitions: int = 1, warmup: int = 1,
                            warmup_seconds: float | None = None, drain_timeout_s: float = 30.0) -> dict:
    """Identify -> profile.changed latency p50/p99 at `rate`/s beside a bare JetStream round trip."""
    if rate <= 0 or seconds <= 0:
        raise ValueError("rate and seconds must be positive")
    warmup_seconds = warmup_seconds if warmup_seconds is not None else min(2.0, seconds)
    async with bench_stack(["ingest", "identity", "profile"]) as stack:
        loop = asyncio.get_running_loop()
        ingest = ingest_pb2_grpc.IngestServiceStub(stack.channel("ingest"))
        profiles = profile_pb2_grpc.ProfileServiceStub(stack.channel("profile"))
        nc = await nats.connect(stack.infra.nats_url, name="cdp-bench", pending_size=64 * 1024 * 1024)
        js = nc.jetstream(timeout=10)
        bench_stream = "BENCH_" + secrets.token_hex(4).upper()
        bench_subject = f"bench.{bench_stream.lower()}.identify"
        matcher: _Matcher | None = None
        stop_consumer = asyncio.Event()
        consumer_task: asyncio.Task | None = None
        verify: list[tuple[str, str]] = []
        consumer_errors: list[str] = []
        try:
            async def on_changed(msg) -> None:
                if matcher is None:
                    return
                try:
                    changed = envelope.unpack(envelope.decode(msg.data), profile_events.ProfileChanged)
                except Exception:  # noqa: BLE001 - not ours to judge here
                    return
                matcher.on_arrival(changed.event_id)

            await nc.subscribe(CHANGED_SUBJECT, cb=on_changed)
            await nc.flush()

            # One Identify, read back from the log: the size of a stored Identify envelope.
            probe, _, _ = identify_request("probe" + secrets.token_hex(3), 0)
            await ingest.Identify(probe, timeout=30)
            stored = await js.get_last_msg(stream_name("ingest"), IDENTIFY_SUBJECT)
            payload_size = len(stored.data)

            await js.add_stream(api.StreamConfig(
                name=bench_stream, subjects=[bench_subject], storage=api.StorageType.FILE,
                retention=api.RetentionPolicy.LIMITS, duplicate_window=DUPLICATE_WINDOW_S, allow_direct=True))
            psub = await js.pull_subscribe(bench_subject, durable="bench", stream=bench_stream,
                                           config=api.ConsumerConfig(ack_policy=api.AckPolicy.EXPLICIT,
                                                                     max_ack_pending=10_000))

            async def consume() -> None:
                while not stop_consumer.is_set():
                    try:
                        msgs = await psub.fetch(256, timeout=1.0)
                    except (TimeoutError, nats.errors.TimeoutError):  # idle
                        continue
                    except Exception as e:  # noqa: BLE001 - keep consuming; reported in the result
                        consumer_errors.append(repr(e)[:200])
                        await asyncio.sleep(0.05)
                        continue
                    for m in msgs:
                        if matcher is not None:
                            matcher.on_arrival(m.headers.get("Nats-Msg-Id", "") if m.headers else "")
                        await m.ack()

            consumer_task = asyncio.create_task(consume())

            async def figure(secs: float = seconds) -> dict[str, float]:
                nonlocal matcher
                m = matcher = _Matcher(loop)
                run = secrets.token_hex(4)
                errors = 0

                async def send(i: int, at: float) -> None:
                    nonlocal errors
                    req, user, nonce = identify_request(run, i)
                    try:
                        resp = await ingest.Identify(req, timeout=30)
                    except grpc.aio.AioRpcError:
                        errors += 1
                        return
                    m.on_sent(resp.event_id, at)
                    if len(verify) < VERIFY_SAMPLE and i % 7 == 0:
                        verify.append((user, nonce))

                n = await paced(rate, max(1, int(rate * secs)), send)
                await m.wait(n - errors, drain_timeout_s)
                matcher = None
                return _summary(m.latencies, n, errors)

            async def baseline(secs: float = seconds) -> dict[str, float]:
                nonlocal matcher
                m = matcher = _Matcher(loop)
                run = secrets.token_hex(4)
                body = secrets.token_bytes(payload_size)
                errors = 0

                async def send(i: int, at: float) -> None:
                    nonlocal errors
                    key = f"{run}-{i}"
                    m.on_sent(key, at)
                    try:
                        await js.publish(bench_subject, body, headers={"Nats-Msg-Id": key})
                    except Exception:  # noqa: BLE001 - counted, the figure is what matters
                        errors += 1

                n = await paced(rate, max(1, int(rate * secs)), send)
                await m.wait(n - errors, drain_timeout_s)
                matcher = None
                return _summary(m.latencies, n, errors)

            verify.clear()
            cmp = await compare(
                "latency: Identify -> profile.changed vs bare JetStream publish -> pull consume",
                figure, baseline, repetitions=repetitions, warmup=warmup, unit="ms", metric="p50_ms",
                higher_is_better=False,
                warmup_figure=lambda: figure(warmup_seconds), warmup_baseline=lambda: baseline(warmup_seconds),
            )

            verified = 0
            for user, nonce in verify:
                try:
                    p = (await profiles.GetProfile(profile_pb2.GetProfileRequest(
                        identifier=identifier_pb2.Identifier(type="user_id", value=user)), timeout=10)).profile
                except grpc.aio.AioRpcError:
                    continue
                traits = {t.name: json.loads(t.value_json) for t in p.traits}
                verified += traits.get("bench_nonce") == nonce
        finally:
            stop_consumer.set()
            if consumer_task is not None:
                await asyncio.gather(consumer_task, return_exceptions=True)
            try:
                await js.delete_stream(bench_stream)
            except Exception:  # noqa: BLE001 - absent when setup failed
                pass
            await nc.close()

        fm, bm = cmp.figure_metrics, cmp.baseline_metrics
        info = machine_info()
        return {
            "benchmark": "latency",
            "rate_per_s": rate,
            "seconds": seconds,
            "p50_ms": round(fm["p50_ms"], 2),
            "p99_ms": round(fm["p99_ms"], 2),
            "max_ms": round(fm["max_ms"], 2),
            "baseline_p50_ms": round(bm["p50_ms"], 2),
            "baseline_p99_ms": round(bm["p99_ms"], 2),
            "baseline_max_ms": round(bm["max_ms"], 2),
            "ratio_p50": round(cmp.ratio, 3),
            "ratio_p99": round(fm["p99_ms"] / bm["p99_ms"], 3) if bm["p99_ms"] else None,
            "count": int(fm["count"]),
            "sent": int(fm["sent"]),
            "missing": int(fm["missing"]),
            "errors": int(fm["errors"]),
            "baseline_count": int(bm["count"]),
            "baseline_errors": int(bm["errors"]),
            "baseline_consumer_errors": consumer_errors[:5],
            "verified_with_get_profile": f"{verified}/{len(verify)}",
            "payload_bytes": payload_size,
            "repetitions": repetitions,
            "warmup": warmup,
            "warmup_seconds": warmup_seconds,
            "stack": stack.describe(),
            "machine": info,
            "cpu_count": info["cpu_count"],
            "python": info["python"],
            "date": now_iso(),
            "comparison": cmp.to_json(),
        }


def render(result: dict) -> str:
    return "\n".join([
        f"latency: Identify -> profile visible, {result['rate_per_s']:g}/s for {result['seconds']:g} s "
        f"(open loop), envelope {result['payload_bytes']} B",
        f"  CDP (ingest->identity->profile)  p50 {result['p50_ms']:>8.2f} ms   p99 {result['p99_ms']:>8.2f} ms   "
        f"({result['count']}/{result['sent']} seen)",
        f"  bare JetStream pub -> pull       p50 {result['baseline_p50_ms']:>8.2f} ms   "
        f"p99 {result['baseline_p99_ms']:>8.2f} ms   ({result['baseline_count']} seen)",
        f"  ratio p50 {result['ratio_p50']:.2f}   ratio p99 {result['ratio_p99']}   "
        f"GetProfile check {result['verified_with_get_profile']}",
        f"  machine: {result['cpu_count']} CPUs ({result['machine']['cpu_model']}), Python {result['python']}; "
        f"{result['date']}",
    ])
