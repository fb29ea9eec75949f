"""cdp.profile.changed carries the profile's state after each change (traits, computed
traits with declared ones, identifiers, a revision that only increases), read straight
from CDP_PROFILE as a downstream projection (the segment service) reads it; and the
computed traits kept incrementally equal a computation from all the profile's events."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest

from cdp.profile.v1 import events_pb2 as profile_events
from cdp.profile.v1 import traits_pb2, traits_pb2_grpc
from cdp_core import envelope
from cdp_core.testing import eventually
from cdp_profile import computed

from .test_reads import T0, World

pytestmark = pytest.mark.component


async def _changes(stack, pid: str) -> list[profile_events.ProfileChanged]:
    js = stack.services["profile"].runtime.bus.js
    info = await js.stream_info("CDP_PROFILE")
    out = []
    for seq in range(1, info.state.last_seq + 1):
        try:
            m = await js.get_msg("CDP_PROFILE", seq)
        except Exception:  # noqa: BLE001 - a deleted sequence
            continue
        c = envelope.unpack(envelope.decode(m.data), profile_events.ProfileChanged)
        if c.profile_id == pid:
            out.append(c)
    return out


async def _from_all_events(w: World, pid: str) -> dict:
    """The reference: computed.compute over every event of the profile's timeline."""
    timeline = await w.all_pages(100, profile_id=pid)
    evs = [computed.Event(e.event_id, e.kind, e.event, e.occurred_at.ToDatetime().replace(tzinfo=T0.tzinfo),
                          json.loads(e.properties_json or "{}"), json.loads(e.traits_json or "{}"),
                          json.loads(e.context_json or "{}"), e.source_kind) for e in timeline]
    return json.loads(json.dumps(computed.compute(evs, now=max(e.occurred_at for e in evs))))


async def test_profile_changed_carries_the_state_after_the_change(stack):
    w = World(stack)
    traits_stub = traits_pb2_grpc.TraitServiceStub(stack.channel("profile"))
    await traits_stub.ApplyTraitDefinitions(traits_pb2.ApplyTraitDefinitionsRequest(yaml=json.dumps({
        "definitions": [{"name": "views_all", "event": {"names": ["Product Viewed"]}, "aggregation": "count",
                         "window": "all"}]})))
    user = "u-" + uuid.uuid4().hex[:8]
    web = {"library": {"name": "analytics.js"}, "timezone": "Europe/Madrid", "ip": "10.0.0.9"}
    await w.identify({"email": f"{user}@example.com", "plan": "free"}, T0, user_id=user)
    got = await w.profile("user_id", user, 1)
    pid = got.profile.profile_id
    for i in range(3):
        await w.track("Product Viewed", T0 + timedelta(minutes=1 + i),
                      {"sku": f"S{i}", "category": "Shoes", "price": 30}, user_id=user)
    await w.track("Order Completed", T0 + timedelta(minutes=5),
                  {"order_id": "o-1", "total": 42.5, "products": [{"sku": "S1", "price": 42.5}]}, user_id=user)
    last = await w.identify({"plan": "pro"}, T0 + timedelta(minutes=6), user_id=user)
    await w.profile("user_id", user, 6)

    async def all_there():
        cs = await _changes(stack, pid)
        return cs if cs and cs[-1].event_id == last else None
    changes = await eventually(all_there)

    revisions = [c.revision for c in changes]
    assert revisions == sorted(revisions) and len(set(revisions)) == len(revisions) and revisions[0] > 0
    final = changes[-1]
    assert final.event_count == 6 and "plan" in final.changed_traits
    assert json.loads(final.traits_json) == {"email": f"{user}@example.com", "plan": "pro"}
    assert {(i.type, i.value) for i in final.identifiers} >= {("user_id", user), ("email", f"{user}@example.com")}
    comp = json.loads(final.computed_json)
    assert comp["orders"]["count"] == 1 and comp["orders"]["revenue_total"] == 42.5
    assert [p["sku"] for p in comp["products_viewed"]] == ["S2", "S1", "S0"]
    assert comp["declared"] == {"views_all": 3}
    assert comp["last_seen"] == "2026-03-01T12:06:00.000Z"
    # the same as GetProfile serves, and as a computation from all the profile's events
    now = (await w.profile("user_id", user, 6)).profile
    assert json.loads(now.computed_json) == comp
    assert {k: v for k, v in comp.items() if k != "declared"} == await _from_all_events(w, pid)
    # an event of an earlier time, after the others: folded exactly all the same (a rebuild of this one profile)
    await w.track("Product Viewed", T0 + timedelta(seconds=30), {"sku": "S9", "category": "Bags"}, user_id=user,
                  context=web)
    after = (await w.profile("user_id", user, 7)).profile
    got_comp = json.loads(after.computed_json)
    assert [p["sku"] for p in got_comp["products_viewed"]] == ["S2", "S1", "S0", "S9"]
    assert got_comp["declared"] == {"views_all": 4}
    assert {k: v for k, v in got_comp.items() if k != "declared"} == await _from_all_events(w, pid)

    async def newer():
        cs = await _changes(stack, pid)
        return cs if cs[-1].revision > final.revision else None
    latest = (await eventually(newer))[-1]
    assert json.loads(latest.computed_json) == got_comp and latest.event_count == 7

    # a new declared trait's backfill changes the profile: a change (no cause event) says so
    await traits_stub.ApplyTraitDefinitions(traits_pb2.ApplyTraitDefinitionsRequest(yaml=json.dumps({
        "definitions": [{"name": "views_all", "event": {"names": ["Product Viewed"]}, "aggregation": "count",
                         "window": "all"},
                        {"name": "revenue_all", "event": {"names": ["Order Completed"]}, "aggregation": "sum",
                         "property": "total", "window": "all"}]})))

    async def backfilled():
        cs = await _changes(stack, pid)
        return cs if cs[-1].revision > latest.revision else None
    filled = (await eventually(backfilled))[-1]
    assert filled.event_id == "" and filled.event_count == 7
    assert json.loads(filled.computed_json)["declared"] == {"views_all": 4, "revenue_all": 42.5}
    assert json.loads(filled.traits_json)["plan"] == "pro"
