"""Two identity resolvers sharing one shuffled stream build the same graph as one alone:
same profiles, same ids, same identifiers on each (issue 5, item 7).

The stream has people with several devices and emails, devices and emails shared between
people, and the default rules (one user id per profile, user ids protected from merging),
so the order in which links are applied matters: the two resolvers apply batches out of
log order, and identity rebuilds what an order-dependent rule touched out of order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import uuid

import asyncpg
import pytest

from cdp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from cdp_core.service import Service
from cdp_core.settings import with_database
from cdp_core.testing import eventually
from cdp_core.testing.stack import Stack
from cdp_identity.projection import IdentityProjection
from cdp_identity.service import SPEC as IDENTITY
from cdp_identity.service import config_store
from cdp_ingest.service import SPEC as INGEST

pytestmark = pytest.mark.integration

PEOPLE, EVENTS = 40, 1600


def stream(seed: int) -> list[ingest_pb2.Call]:
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:6]
    calls = []
    for n in range(EVENTS):
        p = rng.randrange(PEOPLE)
        anon = f"dev-{run}-{p}-{rng.randrange(3)}"
        if rng.random() < 0.2:  # a shared device (a family tablet)
            anon = f"dev-{run}-{rng.randrange(PEOPLE)}-0"
        c = ingest_pb2.EventCommon(message_id=f"{run}-{n}", anonymous_id=anon)
        r = rng.random()
        if r < 0.35:
            c.user_id = f"user-{run}-{p}"
            email = f"p{p}-{run}@example.com" if rng.random() < 0.7 else f"family{p % 7}-{run}@example.com"
            calls.append(ingest_pb2.Call(identify=ingest_pb2.IdentifyRequest(
                common=c, traits_json=json.dumps({"email": email}))))
        else:
            calls.append(ingest_pb2.Call(track=ingest_pb2.TrackRequest(common=c, event="Product Viewed")))
    rng.shuffle(calls)
    return calls


def spec_named(name: str, jitter_s: float = 0.0):
    """The identity service with its consumer under another name; with jitter, each batch
    waits a random while before it is applied (a paused or slow process), so the two
    resolvers commit batches out of log order far more often than they would by chance."""
    rng = random.Random(name)

    class Resolver(IdentityProjection):
        async def on_events(self, conn, ds, outbox):
            if jitter_s:
                await asyncio.sleep(rng.random() * jitter_s)
            return await super().on_events(conn, ds, outbox)

    Resolver.name = name
    Resolver.on_events._cdp_handles = IdentityProjection.on_events._cdp_handles
    Resolver.on_events._cdp_batch = True
    return dataclasses.replace(IDENTITY, projections=lambda rt: [Resolver(config_store(rt), rt.bus.js)])


async def graph_of(db: str) -> dict[str, frozenset]:
    conn = await asyncpg.connect(db)
    try:
        rows = await conn.fetch("SELECT profile_id, type, value FROM identifiers")
    finally:
        await conn.close()
    out: dict[str, set] = {}
    for pid, t, v in rows:
        out.setdefault(pid, set()).add((t, v))
    return {k: frozenset(v) for k, v in out.items()}


async def drained(db: str, consumer: str, last_seq: int) -> bool:
    conn = await asyncpg.connect(db)
    try:
        return await conn.fetchval("SELECT count(*) FROM cdp_tracking WHERE consumer = $1", consumer) >= last_seq
    finally:
        await conn.close()


async def test_two_resolvers_on_a_shuffled_stream_build_the_graph_one_builds(
        fresh_nats_url, database_server_url, auth_secret):
    prefix = "conc_" + os.urandom(3).hex()
    one = Stack(fresh_nats_url, database_server_url, auth_secret, prefix + "_one",
                env={"CDP_CONSUMER_BATCH_SIZE": "40", "CDP_LOG_LEVEL": "warning"})
    two = Stack(fresh_nats_url, database_server_url, auth_secret, prefix + "_two",
                env={"CDP_CONSUMER_BATCH_SIZE": "40", "CDP_LOG_LEVEL": "warning"})
    await one.start(INGEST)
    ingest = ingest_pb2_grpc.IngestServiceStub(one.channel("ingest"))
    calls = stream(7)
    for i in range(0, len(calls), 200):
        res = await ingest.Batch(ingest_pb2.BatchRequest(calls=calls[i:i + 200]))
        assert res.accepted == len(calls[i:i + 200])

    alone = Service(spec_named("identity_alone"), one.settings("identity"))
    pair = [Service(spec_named("identity_pair", jitter_s=0.05), two.settings("identity")) for _ in range(2)]
    db_one = with_database(database_server_url, f"{prefix}_one_identity")
    db_two = with_database(database_server_url, f"{prefix}_two_identity")
    try:
        await alone.start()
        await asyncio.gather(*(s.start() for s in pair))
        await eventually(lambda: drained(db_one, "identity_alone", EVENTS), timeout=120)
        await eventually(lambda: drained(db_two, "identity_pair", EVENTS), timeout=120)
        applied = [sum(r.processed for r in s.runners) for s in pair]
        assert all(n > 0 for n in applied), f"both resolvers must take part: {applied}"
        g1, g2 = await graph_of(db_one), await graph_of(db_two)
        assert len(g1) > PEOPLE // 2
        assert g2 == g1
    finally:
        for s in (alone, *pair):
            await s.stop()
        await one.stop()
