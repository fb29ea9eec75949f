"""Segment benchmarks, each figure beside a raw baseline measured in the same run.

1. Batch evaluation: a 10-condition segment (traits, computed traits, an affinity, channel
   reachability and engagement, location, a prediction, known/anonymous, an event in the
   last 30 days) compiled to SQL (cdp_segment.sqlgen) and counted over N profiles of the
   service's projection tables — profiles evaluated/s, beside bare asyncpg COPY of the same
   profile rows (rows/s) into a plain table. Goal (issue 7): 1M profiles in under 2 s.
2. Event -> `cdp.segment.entered` latency at a steady rate: resolved events published to
   CDP_IDENTITY (each one makes a new profile enter a segment) against a running segment
   service process, timed to the arrival of its `entered` on the bus; beside a bare JetStream
   publish -> subscriber round trip on the same schedule. Goal: p99 under 250 ms at 1,000/s.
3. Memory: the segment process's peak RSS after the latency run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import time
from datetime import timedelta
from pathlib import Path

import asyncpg

from cdp.identity.v1 import events_pb2 as identity_events
from cdp.ingest.v1 import events_pb2 as ingest_events
from cdp.segment.v1 import events_pb2 as segment_events
from cdp_core import envelope
from cdp_core.bus import Bus, Outgoing
from cdp_core.settings import with_database
from cdp_core.store import open_store

from .harness import Comparison, compare, machine_info, now_iso, paced, percentile, render_comparison
from .stack import bench_stack, infrastructure

TEN_CONDITIONS = """
name: bench-ten
where:
  all:
    - trait: {name: plan, op: in, value: [gold, platinum]}
    - trait: {name: age, op: between, value: [25, 60]}
    - computed: {name: orders.count, op: gte, value: 2}
    - affinity: {dimension: category, op: top_is, value: shoes}
    - reachable: {channel: email}
    - engaged: {channel: email, within_days: 30}
    - location: {field: country, op: in, value: [FR, DE, ES]}
    - predicted: {name: purchase_probability, op: gte, value: 0.3}
    - known: {known: true}
    - event: {name: Order Completed, window: {last_days: 30}}
"""
COLUMNS = ["profile_id", "traits", "computed", "identifiers"]


def _rows(n: int, seed: int) -> tuple[list[tuple], list[tuple]]:
    """N profiles (about one in ten passes all ten conditions) and 2 events each."""
    rng = random.Random(seed)
    now = envelope.now()
    profiles, events = [], []
    for i in range(n):
        pid = f"p{i:08d}"
        recent = (now - timedelta(days=rng.uniform(0, 40))).isoformat()
        traits = {"plan": rng.choice(["gold", "platinum", "free", "free"]), "age": rng.randint(18, 80),
                  "email": f"u{i}@example.com" if rng.random() < 0.9 else None,
                  "predicted": {"purchase_probability": rng.random()}}
        computed = {"orders": {"count": rng.choice([0, 1, 2, 3, 5]), "revenue_total": rng.uniform(0, 900)},
                    "top_affinities": {"category": rng.choice(["shoes", "shoes", "dresses", "bags"])},
                    "channels": {"email": {"engaged": rng.random() < 0.7, "last_engagement_at": recent}},
                    "last_location": {"country": rng.choice(["FR", "DE", "ES", "US", "GB"]), "city": "X"},
                    "consent": {"email": {"granted": rng.random() < 0.95}}}
        ids = {"email": [f"u{i}@example.com"]} if rng.random() < 0.8 else {"anonymous_id": [f"a{i}"]}
        profiles.append((pid, json.dumps(traits), json.dumps(computed), json.dumps(ids)))
        for j in range(2):
            events.append((f"{pid}-{j}", pid, rng.choice(["Order Completed", "Page Viewed"]),
                           now - timedelta(days=rng.uniform(0, 60)), "{}"))
    return profiles, events


async def batch(server: str, profiles: int, repetitions: int, seed: int) -> dict:
    import cdp_segment
    from cdp_segment import definition, sqlgen

    db = f"bench_seg_{secrets.token_hex(4)}"
    url = with_database(server, db)
    pool = await open_store(url, "segment", Path(cdp_segment.__file__).parent / "migrations", min_size=1, max_size=2)
    try:
        rows, events = _rows(profiles, seed)
        async with pool.acquire() as conn:
            await conn.execute("CREATE UNLOGGED TABLE bare_copy (profile_id text, traits jsonb, computed jsonb, "
                               "identifiers jsonb)")
            t = time.perf_counter()
            await conn.copy_records_to_table("seg_profiles", records=[(r[0], r[1], r[2], r[3]) for r in rows],
                                             columns=COLUMNS)
            await conn.copy_records_to_table("seg_events", records=events,
                                             columns=["event_id", "profile_id", "name", "occurred_at", "properties"])
            load_s = time.perf_counter() - t
            await conn.execute("VACUUM ANALYZE")
        tree = definition.validate(definition.load_documents(TEN_CONDITIONS)[0]).tree
        counts = []

        async def evaluate() -> dict:
            sql, args = sqlgen.members_query(tree, envelope.now())
            async with pool.acquire() as conn:
                t0 = time.perf_counter()
                n = await conn.fetchval(f"SELECT count(*) FROM ({sql}) q", *args)
                secs = time.perf_counter() - t0
            counts.append(n)
            return {"value": profiles / secs, "seconds": secs}

        async def copy() -> dict:
            async with pool.acquire() as conn:
                await conn.execute("TRUNCATE bare_copy")
                t0 = time.perf_counter()
                await conn.copy_records_to_table("bare_copy", records=rows, columns=COLUMNS)
                secs = time.perf_counter() - t0
            return {"value": profiles / secs, "seconds": secs}

        c = await compare(f"batch evaluation of a 10-condition segment over {profiles:,} profiles (profiles/s) vs "
                          "bare asyncpg COPY of the same rows (rows/s)", evaluate, copy, repetitions=repetitions,
                          unit="profiles/s")
        return {"profiles": profiles, "events": len(events), "members": counts[-1], "load_seconds": load_s,
                "evaluation_seconds": c.figure_metrics.get("seconds"),
                "seconds_per_million": c.figure_metrics.get("seconds", 0) * 1_000_000 / profiles,
                "comparison": c.to_json()}
    finally:
        await pool.close()
        admin = await asyncpg.connect(with_database(server, "postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        finally:
            await admin.close()


def _resolved(pid: str) -> bytes:
    eid = secrets.token_hex(16)
    ev = ingest_events.EventCollected(kind="track", event="Bench Signal", message_id=eid)
    ev.timestamp.CopyFrom(envelope.ts(envelope.now()))
    return envelope.make("cdp.identity.resolved", identity_events.IdentityResolved(
        event=ev, profile_id=pid, event_id=eid), producer="identity").SerializeToString()


async def latency(rate: float, seconds: float) -> dict:
    """Figure: resolved event -> entered; baseline: bare publish -> subscriber on CDP_IDENTITY."""
    import psutil

    from cdp.segment.v1 import segment_pb2, segment_pb2_grpc

    n = int(rate * seconds)
    async with bench_stack(["segment"]) as stack:
        api = segment_pb2_grpc.SegmentServiceStub(stack.channel("segment"))
        await api.ApplySegments(segment_pb2.ApplySegmentsRequest(
            yaml="name: bench-signal\nwhere: {event: {name: Bench Signal, window: {last_days: 1}}}\n"))
        bus = await Bus.connect(stack.infra.nats_url, name="bench")
        loop = asyncio.get_running_loop()
        try:
            async def run(prefix: str, subject: str, key_of, make) -> dict:
                sent: dict[str, float] = {}
                lat: list[float] = []
                done = asyncio.Event()

                async def on_msg(msg) -> None:
                    k = key_of(msg)
                    if k in sent:
                        lat.append(loop.time() - sent.pop(k))
                        if len(lat) == n:
                            done.set()
                sub = await bus.nc.subscribe(subject, cb=on_msg)

                async def send(i: int, at: float) -> None:
                    pid = f"{prefix}{i}"
                    sent[pid] = at
                    await bus.publish_batch([make(pid)])
                await paced(rate, n, send)
                try:
                    await asyncio.wait_for(done.wait(), 30)
                except TimeoutError:
                    pass
                await sub.unsubscribe()
                ms = [x * 1000 for x in lat]
                return {"count": len(ms), "sent": n, "p50_ms": percentile(ms, 50) if ms else None,
                        "p99_ms": percentile(ms, 99) if ms else None, "max_ms": max(ms) if ms else None}

            def entered_key(msg) -> str:
                env = envelope.decode(msg.data)
                return envelope.unpack(env, segment_events.SegmentEntered).profile_id

            def bare_key(msg) -> str:
                return (msg.headers or {}).get("Bench-Key", "")

            run_id = secrets.token_hex(3)
            warm = await run(f"w{run_id}-", "cdp.segment.entered", entered_key,
                             lambda pid: Outgoing("cdp.identity.resolved", _resolved(pid), secrets.token_hex(16)))
            figure = await run(f"f{run_id}-", "cdp.segment.entered", entered_key,
                               lambda pid: Outgoing("cdp.identity.resolved", _resolved(pid), secrets.token_hex(16)))
            baseline = await run(f"b{run_id}-", "cdp.identity.bench", bare_key,
                                 lambda pid: Outgoing("cdp.identity.bench", b"x" * 200, secrets.token_hex(16),
                                                      {"Bench-Key": pid}))
            rss = psutil.Process(stack.services["segment"].proc.pid).memory_info().rss
        finally:
            await bus.close()
    return {"rate": rate, "seconds": seconds, "warmup": {"count": warm["count"]}, "figure": figure,
            "baseline": baseline, "segment_rss_mb": rss / 2**20}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profiles", type=int, default=100_000, help="profiles in the batch evaluation (100000)")
    p.add_argument("--repetitions", type=int, default=3, help="interleaved repetitions, medians reported (3)")
    p.add_argument("--rate", type=float, default=200, help="events/s of the latency run (200)")
    p.add_argument("--seconds", type=float, default=10, help="seconds of the latency run (10)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--skip", default="", help="comma-separated: batch, latency")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")


async def run_segment_bench(args: argparse.Namespace) -> dict:
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    out: dict = {"benchmark": "segment", "started": now_iso(), "machine": machine_info()}
    if "batch" not in skip:
        async with infrastructure("cdp-bench-seg-") as (infra, _root):
            out["batch"] = await batch(infra.database_url, args.profiles, args.repetitions, args.seed)
    if "latency" not in skip:
        out["latency"] = await latency(args.rate, args.seconds)
    out["finished"] = now_iso()
    return out


def run(args: argparse.Namespace) -> dict:
    return asyncio.run(run_segment_bench(args))


def render(result: dict) -> str:
    lines = [f"segment benchmark ({result['started']} → {result['finished']})"]
    b = result.get("batch")
    if b:
        lines += [f"1. batch: {b['profiles']:,} profiles, {b['events']:,} events, {b['members']:,} members",
                  render_comparison(Comparison(**b["comparison"])),
                  f"  {b['evaluation_seconds']:.3f} s per evaluation = {b['seconds_per_million']:.2f} s per million "
                  f"profiles (goal: under 2 s for 1M: {'met' if b['seconds_per_million'] < 2 else 'NOT met'})"]
    lat = result.get("latency")
    if lat:
        f, base = lat["figure"], lat["baseline"]
        lines += [f"2. event -> entered at {lat['rate']:.0f}/s for {lat['seconds']:.0f} s: p50 {f['p50_ms']:.1f} ms, "
                  f"p99 {f['p99_ms']:.1f} ms ({f['count']}/{f['sent']} arrived); bare JetStream round trip p50 "
                  f"{base['p50_ms']:.1f} ms, p99 {base['p99_ms']:.1f} ms (goal p99 < 250 ms at 1,000/s)",
                  f"3. memory: segment process RSS {lat['segment_rss_mb']:.0f} MB"]
    return "\n".join(lines)
