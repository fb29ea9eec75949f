"""Computed-trait states are written to their rows only every so often (projection.SavePolicy):
between writes the process holds the newer state, and whatever happens to it (a crash, an
eviction, a stop) the values stay those of a recomputation from every event."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from cdp.identity.v1 import events_pb2 as identity_events
from cdp.ingest.v1 import events_pb2 as ingest_events
from cdp_core import envelope
from cdp_core.testing import apply_envelopes
from cdp_profile.incremental import State
from cdp_profile.projection import ProfileProjection, SavePolicy, StateCache

pytestmark = pytest.mark.component
T0 = datetime(2026, 1, 1, tzinfo=UTC)
NEVER = SavePolicy(events=10**9, seconds=1e9)


def resolved(i: int, profile: str) -> envelope.Envelope:
    name = ("Product Viewed", "Product Added", "Order Completed", "Email Opened")[i % 4]
    props = {"product_id": f"sku-{i % 5}", "category": f"c{i % 3}", "price": 10 + i}
    if name == "Order Completed":
        props = {"order_id": f"o{i}", "total": 20 + i, "products": [{"product_id": f"sku-{i % 5}", "price": 20 + i}]}
    ev = ingest_events.EventCollected(kind="track", user_id=profile, event=name, properties_json=json.dumps(props),
                                      source_id="src-1", source_kind="web")
    ev.timestamp.CopyFrom(envelope.ts(T0 + timedelta(minutes=i)))
    msg = identity_events.IdentityResolved(event=ev, profile_id=profile, event_id=f"e{i:04d}")
    return envelope.make("cdp.identity.resolved", msg, producer="identity", event_id=f"r-e{i:04d}")


@pytest.fixture
def pool(profile_pool):
    return profile_pool


async def rows(pool) -> dict[str, tuple]:
    """{pid: (event count, stored values, events the stored state accounts for or None, row version)}"""
    async with pool.acquire() as conn:
        out = {}
        for pid, count, values, state, version in await conn.fetch(
                "SELECT p.profile_id, p.event_count, c.computed, c.state, c.xmin::text FROM profiles p "
                "JOIN profile_computed c USING (profile_id)"):
            st = State.loads(state) if state is not None else None
            out[pid] = (count, orjson.loads(values), st.n if st is not None else None, version)
        return out


def recomputed(envs: list[envelope.Envelope], pid: str) -> dict:
    """The computed traits of one profile from all its events, as a fresh fold gives them."""
    from cdp_profile.projection import _event

    evs = []
    for env in envs:
        r = envelope.unpack(env, identity_events.IdentityResolved)
        if r.profile_id == pid:
            evs.append(_event((r.event_id, pid, envelope.from_ts(r.event.timestamp)), r.event))
    return orjson.loads(orjson.dumps(State.from_events(evs).result()))


async def test_held_states_are_written_back_on_eviction_and_stop_and_a_lost_one_is_recomputed(pool):
    envs = [resolved(i, ("A", "B", "C")[i % 3]) for i in range(60)]
    p = ProfileProjection()
    p.states = StateCache(2, NEVER)
    await apply_envelopes(pool, p, envs[:30])
    got = await rows(pool)
    for pid in "ABC":
        assert got[pid][1] == recomputed(envs[:30], pid)  # the values are always current
    # Only two are held: each event evicted the least recent, and an evicted state with events
    # its row lacks was written back; the two held ones lag in their rows.
    held = {pid for pid in "ABC" if StateCache.versions(p.states, [pid]) != [None]}
    assert len(held) == 2
    for pid in held:
        assert got[pid][2] is None or got[pid][2] < got[pid][0]
    (gone,) = set("ABC") - held
    assert got[gone][2] == got[gone][0]

    # A crash: the held states are lost; a new process finds rows whose state does not account
    # for every event, recomputes those profiles from their events, and goes on.
    crashed = ProfileProjection()
    crashed.states = StateCache(10, NEVER)
    await apply_envelopes(pool, crashed, envs[30:45])
    got = await rows(pool)
    for pid in "ABC":
        assert got[pid][1] == recomputed(envs[:45], pid)

    # A stop writes back everything held; the states stay held under their rows' new versions.
    await apply_envelopes(pool, crashed, envs[45:])
    assert {pid for pid, _ in crashed.states.unsaved()} == set("ABC")
    await crashed.stopped(pool)
    got = await rows(pool)
    for pid in "ABC":
        assert got[pid][1] == recomputed(envs, pid)
        assert got[pid][2] == got[pid][0] == 20  # the row's state accounts for all its events
        assert crashed.states.versions([pid]) == [got[pid][3]]
    assert crashed.states.unsaved() == []


async def test_a_state_due_for_saving_is_written_with_its_values(pool):
    envs = [resolved(i, "A") for i in range(12)]
    p = ProfileProjection()
    p.states = StateCache(10, SavePolicy(events=5, seconds=1e9))
    await apply_envelopes(pool, p, envs[:4])
    assert (await rows(pool))["A"][2] is None  # a first event keeps no state in the row: it is held
    await apply_envelopes(pool, p, envs[4:])
    count, values, stored_n, _ = (await rows(pool))["A"]
    assert values == recomputed(envs, "A")
    assert stored_n is not None and count - stored_n < 5  # saved at least every 5 events


async def _rebuild(pool, projection, envs) -> None:
    """Applies the envelopes as a rebuild's runner does: nothing is published."""
    from cdp_core.consumer import Delivery
    from cdp_core.outbox import OutboxWriter

    for seq, env in enumerate(envs, 1):
        async with pool.acquire() as conn, conn.transaction():
            await projection.handle(conn, Delivery(env, env.type, seq, {}), OutboxWriter(discard=True))


def forgotten(pid: str) -> envelope.Envelope:
    msg = identity_events.ProfileForgotten(profile_id=pid, profile_ids=[pid], reason="test")
    return envelope.make("cdp.identity.forgotten", msg, producer="identity", event_id=f"f-{pid}")


async def test_a_rebuild_writes_each_profile_s_values_with_its_state_once_done(pool):
    envs = [resolved(i, ("A", "B", "C")[i % 3]) for i in range(45)]
    p = ProfileProjection()
    p.states = StateCache(2, NEVER)
    d_events = [resolved(100 + i, "D") for i in range(3)]  # forgotten, and never seen again
    await _rebuild(pool, p, envs[:30] + [forgotten("C")] + d_events + [forgotten("D")])
    got = await rows(pool)
    # While it runs, a profile has a row only once its state was evicted, with the values and
    # the state as of then, together (each event evicts the least recent of the three); the
    # forgotten one has none.
    assert "C" not in got and set(got) == {"A", "B"}
    assert any(stored_n < count for count, _, stored_n, _ in got.values())  # the rest is held
    for pid in got:
        count, values, stored_n, _ = got[pid]
        assert stored_n <= count == 10
        assert values == recomputed([e for e in envs[:30] if (
            envelope.unpack(e, identity_events.IdentityResolved).profile_id == pid)][:stored_n], pid)
    await _rebuild(pool, p, envs[30:])  # C starts again from the events after its forgetting
    await p.stopped(pool)  # the end of the rebuild writes everything held
    got = await rows(pool)
    assert set(got) == {"A", "B", "C"}  # not D: what was held of it went with its rows
    for pid in "ABC":
        mine = [e for e in envs[30:] if pid == "C"] or envs
        assert got[pid][1] == recomputed(mine, pid)
        assert got[pid][2] == got[pid][0]  # the state accounts for every event
    assert got["C"][0] == 5
    assert p.states.unsaved() == []
