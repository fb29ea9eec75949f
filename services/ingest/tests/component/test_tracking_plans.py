"""Tracking plans (Segment Protocols) end to end in ingest: allow / flag / block for planned
events with bad properties, unplanned events and identify traits; violations counted and
listable; invalid plans refused naming the field."""

from __future__ import annotations

import json

import grpc
import pytest

from cdp.ingest.v1 import events_pb2, ingest_pb2
from cdp_core import envelope
from cdp_core.testing import eventually

pytestmark = pytest.mark.component

ORDER = {"type": "object", "properties": {"revenue": {"type": "number"}}, "required": ["revenue"]}
TRAITS = {"type": "object", "properties": {"email": {"type": "string", "pattern": "@"}}, "required": ["email"]}


@pytest.fixture
async def key(sources) -> str:
    return (await sources.CreateSource(ingest_pb2.CreateSourceRequest(name="web", kind="web"))).write_key


async def apply(sources, mode, unplanned="allow", events=None, identify=TRAITS, name="web"):
    return (await sources.ApplyTrackingPlan(ingest_pb2.ApplyTrackingPlanRequest(plan=ingest_pb2.TrackingPlan(
        source_name=name, mode=mode, unplanned_events=unplanned,
        events_json=json.dumps({"Order Completed": ORDER} if events is None else events),
        identify_traits_schema_json=json.dumps(identify) if identify is not None else "")))).plan


def calls() -> list[ingest_pb2.Call]:
    """good planned, bad planned, unplanned, bad identify, good identify, a page (never checked)."""
    c = ingest_pb2.EventCommon(user_id="u1")
    return [
        ingest_pb2.Call(track=ingest_pb2.TrackRequest(common=c, event="Order Completed", properties_json='{"revenue": 5}')),
        ingest_pb2.Call(track=ingest_pb2.TrackRequest(common=c, event="Order Completed",
                                                      properties_json='{"revenue": "five"}')),
        ingest_pb2.Call(track=ingest_pb2.TrackRequest(common=c, event="Signed Up")),
        ingest_pb2.Call(identify=ingest_pb2.IdentifyRequest(common=c, traits_json='{"email": "nope"}')),
        ingest_pb2.Call(identify=ingest_pb2.IdentifyRequest(common=c, traits_json='{"email": "a@b.c"}')),
        ingest_pb2.Call(page=ingest_pb2.PageRequest(common=c, name="Home")),
    ]


BAD_PROPS = "properties.revenue: 'five' is not of type 'number'"
UNPLANNED = "event 'Signed Up' is not in the tracking plan"
BAD_TRAITS = "traits.email: 'nope' does not match '@'"


async def appended(stack) -> dict[str, events_pb2.EventCollected]:
    js = stack.services["ingest"].runtime.bus.js
    info = await js.stream_info("CDP_INGEST")
    out = {}
    for seq in range(info.state.first_seq, info.state.last_seq + 1) if info.state.messages else ():
        env = envelope.decode((await js.get_msg("CDP_INGEST", seq)).data)
        out[env.event_id] = envelope.unpack(env, events_pb2.EventCollected)
    return out


async def test_without_a_plan_everything_passes(stack, ingest, key):
    resp = await ingest.Batch(ingest_pb2.BatchRequest(calls=calls(), write_key=key))
    assert resp.accepted == 6 and not any(r.violations for r in resp.results)


async def test_allow_passes_unmarked_but_counts(stack, ingest, sources, key):
    await apply(sources, "allow", "allow")
    resp = await ingest.Batch(ingest_pb2.BatchRequest(calls=calls(), write_key=key))
    assert resp.accepted == 6 and resp.rejected == 0
    assert not any(r.violations for r in resp.results)
    assert not any(ev.violations for ev in (await appended(stack)).values())

    async def counted():
        v = (await sources.ListViolations(ingest_pb2.ListViolationsRequest(source_name="web"))).violations
        return v if len(v) == 3 else None

    got = {(v.event, v.message, v.action, v.count) for v in await eventually(counted, timeout=10)}
    assert got == {("Order Completed", BAD_PROPS, "allow", 1), ("Signed Up", UNPLANNED, "allow", 1),
                   ("identify", BAD_TRAITS, "allow", 1)}


async def test_flag_keeps_the_call_and_marks_its_violations(stack, ingest, sources, key):
    await apply(sources, "flag", "flag")
    resp = await ingest.Batch(ingest_pb2.BatchRequest(calls=calls(), write_key=key))
    assert (resp.accepted, resp.rejected) == (6, 0)
    assert [list(r.violations) for r in resp.results] == [[], [BAD_PROPS], [UNPLANNED], [BAD_TRAITS], [], []]
    log = await appended(stack)
    assert [list(log[r.event_id].violations) for r in resp.results] == [[], [BAD_PROPS], [UNPLANNED], [BAD_TRAITS],
                                                                         [], []]


async def test_block_rejects_into_failed_events_with_the_reason(stack, ingest, sources, key):
    await apply(sources, "block", "block")
    resp = await ingest.Batch(ingest_pb2.BatchRequest(calls=calls(), write_key=key))
    assert (resp.accepted, resp.rejected) == (3, 3)
    bad = [r for r in resp.results if r.error]
    assert [r.index for r in bad] == [1, 2, 3]
    assert [r.error for r in bad] == [f"tracking plan: {m}" for m in (BAD_PROPS, UNPLANNED, BAD_TRAITS)]
    log = await appended(stack)
    assert sorted(log) == sorted(r.event_id for r in resp.results if not r.error)
    pool = stack.services["ingest"].runtime.pool
    rows = await pool.fetch("SELECT * FROM cdp_failed_events ORDER BY id")
    assert [r["id"] for r in rows] == [r.failed_event_id for r in bad]
    assert [r["reason"] for r in rows] == [r.error for r in bad]
    assert all(r["kind"] == "rejected" for r in rows)
    assert json.loads(bytes(rows[0]["data"]))["properties"] == {"revenue": "five"}

    # a single call gets INVALID_ARGUMENT naming the plan and the failed event
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await ingest.Track(ingest_pb2.TrackRequest(common=ingest_pb2.EventCommon(user_id="u"), event="Signed Up"),
                           metadata=[("x-cdp-write-key", key)])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert UNPLANNED in e.value.details() and "kept as failed event" in e.value.details()

    async def counted():
        v = (await sources.ListViolations(ingest_pb2.ListViolationsRequest(source_name="web"))).violations
        return v if sum(x.count for x in v) == 4 else None

    v = await eventually(counted, timeout=10)
    assert v[0].event == "Signed Up" and v[0].count == 2 and v[0].action == "block"  # most frequent first
    assert all(x.source_name == "web" and x.last_seen.seconds > 0 for x in v)


async def test_modes_for_planned_and_unplanned_events_are_separate(stack, ingest, sources, key):
    await apply(sources, "block", "allow")
    resp = await ingest.Batch(ingest_pb2.BatchRequest(calls=calls(), write_key=key))
    assert [bool(r.error) for r in resp.results] == [False, True, False, True, False, False]
    await apply(sources, "allow", "block")  # applying replaces the plan at once on this replica
    resp = await ingest.Batch(ingest_pb2.BatchRequest(calls=calls(), write_key=key))
    assert [bool(r.error) for r in resp.results] == [False, False, True, False, False, False]


async def test_list_violations_of_all_sources_and_of_one(stack, ingest, sources, key):
    other = (await sources.CreateSource(ingest_pb2.CreateSourceRequest(name="app", kind="app"))).write_key
    await apply(sources, "flag", "flag")
    await apply(sources, "flag", "flag", name="app")
    for _ in range(3):
        await ingest.Batch(ingest_pb2.BatchRequest(calls=calls()[1:2], write_key=key))
    await ingest.Batch(ingest_pb2.BatchRequest(calls=calls()[2:3], write_key=other))

    async def all_counted():
        v = (await sources.ListViolations(ingest_pb2.ListViolationsRequest())).violations
        return v if sum(x.count for x in v) == 4 else None

    v = await eventually(all_counted, timeout=10)
    assert [(x.source_name, x.event, x.count) for x in v] == [("web", "Order Completed", 3), ("app", "Signed Up", 1)]
    only_app = (await sources.ListViolations(ingest_pb2.ListViolationsRequest(source_name="app"))).violations
    assert [(x.source_name, x.message) for x in only_app] == [("app", UNPLANNED)]
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await sources.ListViolations(ingest_pb2.ListViolationsRequest(source_name="nope"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


async def test_get_tracking_plan_returns_what_was_applied(sources, key):
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await sources.GetTrackingPlan(ingest_pb2.GetTrackingPlanRequest(source_name="web"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    applied = await apply(sources, "flag", "")
    got = (await sources.GetTrackingPlan(ingest_pb2.GetTrackingPlanRequest(source_name="web"))).plan
    assert got == applied
    assert (got.source_name, got.mode, got.unplanned_events) == ("web", "flag", "allow")
    assert json.loads(got.events_json) == {"Order Completed": ORDER}
    assert json.loads(got.identify_traits_schema_json) == TRAITS
    assert got.updated_at.seconds > 0
    again = await apply(sources, "block", "block", events={}, identify=None)
    assert (again.mode, json.loads(again.events_json), again.identify_traits_schema_json) == ("block", {}, "")


@pytest.mark.parametrize(("plan", "field"), [
    ({"mode": "warn"}, "plan.mode"),
    ({"unplanned_events": "drop"}, "plan.unplanned_events"),
    ({"events_json": '{"Order Completed": {"type": "nope"}}'}, "plan.events_json['Order Completed']"),
    ({"events_json": '{"Order Completed": {"properties": {"a": {"minimum": "x"}}}}'},
     "plan.events_json['Order Completed']"),
    ({"events_json": "[]"}, "plan.events_json"),
    ({"events_json": "{"}, "plan.events_json"),
    ({"identify_traits_schema_json": '{"type": 5}'}, "plan.identify_traits_schema_json"),
])
async def test_an_invalid_plan_is_refused_naming_the_field(ingest, sources, key, plan, field):
    base = {"source_name": "web", "mode": "block", "unplanned_events": "block", "events_json": "{}"}
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await sources.ApplyTrackingPlan(ingest_pb2.ApplyTrackingPlanRequest(
            plan=ingest_pb2.TrackingPlan(**{**base, **plan})))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details().startswith(field + ":")
    # nothing was stored: calls still pass
    assert (await ingest.Batch(ingest_pb2.BatchRequest(calls=calls(), write_key=key))).accepted == 6


async def test_a_plan_for_an_unknown_source_is_not_found(sources):
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await apply(sources, "flag", name="nope")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
