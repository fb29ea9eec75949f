"""The profile projection converges whatever the order of arrival (competing consumers)."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

import cdp_profile
from cdp.common.v1 import identifier_pb2
from cdp.identity.v1 import events_pb2 as identity_events
from cdp.ingest.v1 import events_pb2 as ingest_events
from cdp_core import envelope
from cdp_core.settings import with_database
from cdp_core.store import open_store
from cdp_core.testing import apply_envelopes
from cdp_profile.projection import ProfileProjection

pytestmark = pytest.mark.component
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def resolved(i: int, profile: str, traits: dict | None, ids: list[tuple[str, str]], minutes: int) -> envelope.Envelope:
    ev = ingest_events.EventCollected(kind="identify" if traits else "track", user_id=ids[0][1],
                                      event="" if traits else ("Email Opened" if i % 4 else "Product Viewed"),
                                      traits_json=json.dumps(traits) if traits else "",
                                      properties_json="" if traits else json.dumps({"i": i, "nul": "a\u0000b"}),
                                      context_json=json.dumps({"channel": "Kiosk"}) if i % 5 == 0 else "",
                                      source_id="src-1", source_kind="web")
    ev.timestamp.CopyFrom(envelope.ts(T0 + timedelta(minutes=minutes)))
    ev.received_at.CopyFrom(envelope.ts(T0 + timedelta(minutes=minutes, seconds=1)))
    event_id = f"e{i:03d}"
    msg = identity_events.IdentityResolved(
        event=ev, profile_id=profile, event_id=event_id,
        identifiers=[identifier_pb2.Identifier(type=t, value=v) for t, v in ids])
    return envelope.make("cdp.identity.resolved", msg, producer="identity", event_id="r-" + event_id)


def merged(survivor: str, gone: str) -> envelope.Envelope:
    msg = identity_events.ProfilesMerged(survivor_profile_id=survivor, merged_profile_id=gone, rule="shared-identifier",
                                         event_id="e-link")
    return envelope.make("cdp.identity.merged", msg, producer="identity", event_id="m-1")


def story() -> list[envelope.Envelope]:
    envs = []
    for i in range(12):
        envs.append(resolved(i, "P1", {"plan": f"p{i}", "city": "Madrid"} if i % 3 == 0 else None,
                             [("user_id", "u1")], minutes=i))
    for i in range(12, 20):
        envs.append(resolved(i, "P2", {"plan": f"q{i}"} if i % 2 else None, [("anonymous_id", "a2")], minutes=i - 8))
    envs.append(resolved(20, "P1", {"vip": True}, [("user_id", "u1"), ("anonymous_id", "a2")], minutes=5))
    envs.append(merged("P1", "P2"))
    # a tie on event time: the greater event id wins, whatever the order
    envs.append(resolved(21, "P2", {"tie": "first"}, [("anonymous_id", "a2")], minutes=30))
    envs.append(resolved(22, "P1", {"tie": "second"}, [("user_id", "u1")], minutes=30))
    return envs


async def apply_all(url: str, envs: list[envelope.Envelope]) -> dict:
    pool = await open_store(url, "profile", Path(cdp_profile.__file__).parent / "migrations")
    projection = ProfileProjection()
    try:
        await apply_envelopes(pool, projection, envs)
        async with pool.acquire() as conn:
            return {
                "profiles": [tuple(r) for r in await conn.fetch(
                    "SELECT profile_id, merged_into, event_count, first_seen, last_seen FROM profiles ORDER BY 1")],
                "traits": [tuple(r) for r in await conn.fetch(
                    "SELECT profile_id, name, value::text, updated_at, event_id FROM profile_traits ORDER BY 1, 2")],
                "ids": [tuple(r) for r in await conn.fetch("SELECT * FROM profile_identifiers ORDER BY 1, 2")],
                "events": [tuple(r) for r in await conn.fetch(
                    "SELECT event_id, profile_id, occurred_at, kind, event_name, source_id, source_kind, channel, "
                    "properties::text, traits::text, context::text, received_at FROM profile_events ORDER BY 1")],
            }
    finally:
        await pool.close()


async def test_shuffled_input_gives_the_same_projection(database_server_url):
    envs = story()
    results = []
    for seed in (None, 1, 2, 3):
        order = list(envs)
        if seed is not None:
            random.Random(seed).shuffle(order)
        name = "t_" + uuid.uuid4().hex[:12]
        admin = await asyncpg.connect(database_server_url)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        try:
            results.append(await apply_all(with_database(database_server_url, name), order))
        finally:
            admin = await asyncpg.connect(database_server_url)
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            await admin.close()
    in_order = results[0]
    for other in results[1:]:
        assert other == in_order
    live = {p[0]: p for p in in_order["profiles"]}
    assert live["P2"][1] == "P1" and live["P1"][2] == 23  # 23 events, all on the survivor
    traits = {(t[0], t[1]): json.loads(t[2]) for t in in_order["traits"]}
    assert traits[("P1", "plan")] == "q19"  # minute 11 from P2 beats p9 at minute 9
    assert traits[("P1", "tie")] == "second"  # same minute: e022 > e021
    assert not [t for t in in_order["traits"] if t[0] == "P2"]
    events = {e[0]: e for e in in_order["events"]}
    assert len(events) == 23 and {e[1] for e in events.values()} == {"P1"}  # moved to the survivor
    # (event_id, profile_id, occurred_at, kind, event_name, source_id, source_kind, channel, properties, ...)
    assert events["e001"][3:8] == ("track", "Email Opened", "src-1", "web", "email")
    assert events["e004"][7] == "web" and events["e005"][7] == "kiosk"  # context.channel wins
    assert json.loads(events["e001"][8]) == {"i": 1, "nul": "a\ufffdb"}
    assert events["e000"][8] is None and json.loads(events["e000"][9])["plan"] == "p0"


async def test_one_change_per_profile_per_batch_names_every_event(profile_pool):
    """A batch's events of one profile go out as one cdp.profile.changed: `event_ids` in the
    order applied (the last is `event_id`), the traits they changed, the state after them; a
    later batch's change has a higher revision."""
    from cdp.profile.v1 import events_pb2 as profile_events
    from cdp_core.consumer import Delivery
    from cdp_core.outbox import OutboxWriter

    pool, projection = profile_pool, ProfileProjection()

    async def batch(envs: list[envelope.Envelope], first_seq: int) -> list[profile_events.ProfileChanged]:
        outbox = OutboxWriter()
        async with pool.acquire() as conn, conn.transaction():
            await projection.handle_batch(conn, [Delivery(e, e.type, first_seq + k, {}) for k, e in enumerate(envs)],
                                          outbox)
        assert {p[0] for p in outbox.pending} == {"cdp.profile.changed"}
        return [envelope.unpack(envelope.decode(p[2]), profile_events.ProfileChanged) for p in outbox.pending]

    envs = [resolved(0, "P1", {"plan": "free"}, [("user_id", "u1")], minutes=0),
            resolved(1, "P2", None, [("anonymous_id", "a2")], minutes=1),
            resolved(2, "P1", None, [("user_id", "u1")], minutes=2),
            resolved(3, "P1", {"city": "Madrid"}, [("user_id", "u1")], minutes=3)]
    out = await batch(envs, 1)
    assert sorted(c.profile_id for c in out) == ["P1", "P2"]  # one each, not one per event
    changes = {c.profile_id: c for c in out}
    p1, p2 = changes["P1"], changes["P2"]
    assert list(p1.event_ids) == ["e000", "e002", "e003"] and p1.event_id == "e003"
    assert list(p1.changed_traits) == ["city", "plan"] and p1.event_count == 3
    assert json.loads(p1.traits_json) == {"plan": "free", "city": "Madrid"}
    assert list(p2.event_ids) == ["e001"] and p2.event_id == "e001" and not p2.changed_traits
    # a resent event is not applied again: no change for it; a new one makes a newer change
    again = await batch([resolved(3, "P1", {"city": "Madrid"}, [("user_id", "u1")], minutes=3),
                         resolved(4, "P1", None, [("user_id", "u1")], minutes=4)], 5)
    assert [(list(c.event_ids), c.event_count) for c in again] == [(["e004"], 4)]
    assert again[0].revision > p1.revision


async def test_a_batch_takes_every_profile_lock_before_its_handlers(profile_pool):
    """A batch mixing resolutions and merges locks all its profiles (and their survivors) at
    once, in order, before any handler runs: handlers locking in rounds could deadlock with
    another consumer of the store (PostgreSQL aborts one after deadlock_timeout)."""
    from cdp_core.consumer import Delivery
    from cdp_core.outbox import OutboxWriter

    held_sql = "SELECT classid, objid FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"

    class Watched(ProfileProjection):
        async def before_batch(self, conn, ds):
            await super().before_batch(conn, ds)
            self.first = {tuple(r) for r in await conn.fetch(held_sql)}

    async def apply(envs: list[envelope.Envelope], seq: int) -> tuple[set, set]:
        p = Watched()
        async with profile_pool.acquire() as conn, conn.transaction():
            await p.handle_batch(conn, [Delivery(e, e.type, seq + k, {}) for k, e in enumerate(envs)], OutboxWriter())
            return p.first, {tuple(r) for r in await conn.fetch(held_sql)}

    first, all_ = await apply([resolved(1, "P2", None, [("anonymous_id", "a2")], minutes=1),
                               merged("P1", "P2"), resolved(2, "P3", None, [("user_id", "u3")], minutes=2)], 1)
    assert len(first) == 3 and all_ == first  # P1, P2, P3: nothing locked later
    # P2 is merged into P1 now: an event still resolved to P2 locks its survivor up front too
    first, all_ = await apply([resolved(3, "P2", None, [("anonymous_id", "a2")], minutes=3)], 4)
    assert len(first) == 2 and all_ == first
