"""Failed events (issue 4, item 8), server side: ingest keeps every rejected call with its
reason and bytes; FailedEventService lists, shows and replays them; a consumer failure in
identity is listed by identity's own FailedEventService."""

from __future__ import annotations

import base64
import json
import os
import uuid

import aiohttp
import grpc
import pytest
from google.protobuf.wrappers_pb2 import StringValue

from cdp.common.v1 import failed_pb2, failed_pb2_grpc
from cdp.ingest.v1 import events_pb2, ingest_pb2
from cdp_core import envelope
from cdp_core.testing import eventually
from cdp_core.testing.stack import Stack
from cdp_identity.service import SPEC as IDENTITY

pytestmark = pytest.mark.component


def good(event="Ok", **kw) -> ingest_pb2.Call:
    kw.setdefault("user_id", "u1")
    return ingest_pb2.Call(track=ingest_pb2.TrackRequest(common=ingest_pb2.EventCommon(**kw), event=event))


def bad(event="No Id") -> ingest_pb2.Call:
    return ingest_pb2.Call(track=ingest_pb2.TrackRequest(common=ingest_pb2.EventCommon(), event=event))


async def appended(stack) -> list[events_pb2.EventCollected]:
    js = stack.services["ingest"].runtime.bus.js
    info = await js.stream_info("CDP_INGEST")
    if not info.state.messages:
        return []
    return [envelope.unpack(envelope.decode((await js.get_msg("CDP_INGEST", seq)).data), events_pb2.EventCollected)
            for seq in range(info.state.first_seq, info.state.last_seq + 1)]


async def reject(ingest, n: int) -> list[int]:
    resp = await ingest.Batch(ingest_pb2.BatchRequest(calls=[bad(f"E{i}") for i in range(n)]))
    return [r.failed_event_id for r in resp.results]


def basic(write_key: str) -> dict[str, str]:
    """Basic auth as Segment's SDKs send it: the write key as user name, no password."""
    return {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}


def http_url(stack, path: str) -> str:
    return f"http://127.0.0.1:{stack.services['ingest'].settings.http_port}{path}"


async def test_list_shows_pending_newest_first_and_pages(ingest, failed):
    ids = await reject(ingest, 7)
    listed = await failed.ListFailedEvents(failed_pb2.ListFailedEventsRequest())
    assert [e.id for e in listed.events] == ids[::-1] and listed.pending_total == 7
    e = listed.events[0]
    assert (e.kind, e.consumer, e.source_id, e.content_type) == ("rejected", "ingest.grpc", "token:tests",
                                                                 "application/json")
    assert "either userId or anonymousId is required" in e.reason
    assert e.attempts == 1 and not e.replay_result and not e.replayed_at.seconds and e.failed_at.seconds > 0
    assert e.size_bytes > 0 and not e.stream and not e.stream_seq

    page1 = await failed.ListFailedEvents(failed_pb2.ListFailedEventsRequest(page_size=3))
    page2 = await failed.ListFailedEvents(failed_pb2.ListFailedEventsRequest(page_size=3,
                                                                            before_id=page1.events[-1].id))
    page3 = await failed.ListFailedEvents(failed_pb2.ListFailedEventsRequest(page_size=3,
                                                                            before_id=page2.events[-1].id))
    assert [e.id for p in (page1, page2, page3) for e in p.events] == ids[::-1]
    assert [len(p.events) for p in (page1, page2, page3)] == [3, 3, 1]
    assert page3.pending_total == 7  # the total ignores paging

    for size in (-1, 1001):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await failed.ListFailedEvents(failed_pb2.ListFailedEventsRequest(page_size=size))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_size" in err.value.details()


async def test_filters_by_kind_and_consumer_and_replayed_ones_on_request(stack, ingest, failed):
    grpc_ids = await reject(ingest, 2)

    async def requests():
        yield ingest_pb2.ImportEventsRequest(calls=[bad()])

    await ingest.ImportEvents(requests())
    by_consumer = await failed.ListFailedEvents(failed_pb2.ListFailedEventsRequest(consumer="ingest.import"))
    assert [e.consumer for e in by_consumer.events] == ["ingest.import"] and by_consumer.pending_total == 1
    assert len((await failed.ListFailedEvents(failed_pb2.ListFailedEventsRequest(kind="rejected"))).events) == 3
    assert not (await failed.ListFailedEvents(failed_pb2.ListFailedEventsRequest(kind="consumer"))).events

    # mark one replayed (as a fixed replay would) and look again
    await stack.services["ingest"].runtime.pool.execute(
        "UPDATE cdp_failed_events SET replayed_at = now(), replay_result = 'ok' WHERE id = $1", grpc_ids[0])
    pending = await failed.ListFailedEvents(failed_pb2.ListFailedEventsRequest())
    assert grpc_ids[0] not in [e.id for e in pending.events] and pending.pending_total == 2
    everything = await failed.ListFailedEvents(failed_pb2.ListFailedEventsRequest(include_replayed=True))
    assert grpc_ids[0] in [e.id for e in everything.events] and everything.pending_total == 2
    [done] = [e for e in everything.events if e.id == grpc_ids[0]]
    assert done.replayed_at.seconds > 0 and done.replay_result == "ok"


async def test_get_shows_the_original_bytes_as_text(ingest, failed):
    resp = await ingest.Batch(ingest_pb2.BatchRequest(calls=[ingest_pb2.Call(track=ingest_pb2.TrackRequest(
        common=ingest_pb2.EventCommon(message_id="m-7"), event="Checkout", properties_json='{"total": 3}'))]))
    got = await failed.GetFailedEvent(failed_pb2.GetFailedEventRequest(id=resp.results[0].failed_event_id))
    assert got.event.id == resp.results[0].failed_event_id
    assert json.loads(got.data) == json.loads(got.data_text)
    assert json.loads(got.data_text) == {"type": "track", "messageId": "m-7", "event": "Checkout",
                                         "properties": {"total": 3}}
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await failed.GetFailedEvent(failed_pb2.GetFailedEventRequest(id=999_999))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_protobuf_request_kept_whole_has_no_text(ingest, failed):
    calls = [good(f"E{i}") for i in range(2501)]
    with pytest.raises(grpc.aio.AioRpcError):
        await ingest.Batch(ingest_pb2.BatchRequest(calls=calls))
    [e] = (await failed.ListFailedEvents(failed_pb2.ListFailedEventsRequest())).events
    got = await failed.GetFailedEvent(failed_pb2.GetFailedEventRequest(id=e.id))
    assert got.event.content_type == "application/vnd.cdp.ingest.batch+protobuf"
    assert len(ingest_pb2.BatchRequest.FromString(got.data).calls) == 2501
    [r] = (await failed.ReplayFailedEvents(failed_pb2.ReplayFailedEventsRequest(ids=[e.id]))).results
    assert not r.ok and "cannot be replayed" in r.detail  # too large either way: send it again, split


async def test_a_call_refused_for_its_disabled_source_is_replayed_after_enabling_it(stack, sources, failed):
    src = await sources.CreateSource(ingest_pb2.CreateSourceRequest(name="website", kind="web"))
    await sources.DisableSource(ingest_pb2.DisableSourceRequest(name="website"))
    body = {"userId": "ada", "event": "Signed Up", "messageId": "msg-1", "properties": {"plan": "pro"}}
    async with aiohttp.ClientSession() as http:
        async with http.post(http_url(stack, "/v1/track"), json=body, headers=basic(src.write_key)) as r:
            assert r.status == 403
            answer = await r.json()
    fid = answer["failed_event_id"]
    assert await appended(stack) == []
    [e] = (await failed.ListFailedEvents(failed_pb2.ListFailedEventsRequest())).events
    assert e.id == fid and e.source_id == src.source.source_id and "disabled" in e.reason

    # still disabled: the replay fails, the event stays pending with the attempt recorded
    [r] = (await failed.ReplayFailedEvents(failed_pb2.ReplayFailedEventsRequest(ids=[fid]))).results
    assert not r.ok and "still disabled" in r.detail
    [e] = (await failed.ListFailedEvents(failed_pb2.ListFailedEventsRequest())).events
    assert e.attempts == 2 and "still disabled" in e.replay_result and not e.replayed_at.seconds

    await sources.EnableSource(ingest_pb2.EnableSourceRequest(name="website"))
    [r] = (await failed.ReplayFailedEvents(failed_pb2.ReplayFailedEventsRequest(ids=[fid]))).results
    assert r.ok and r.detail == "replayed"
    [ev] = await appended(stack)
    assert (ev.event, ev.user_id, ev.message_id, ev.source_id) == ("Signed Up", "ada", "msg-1", src.source.source_id)
    assert json.loads(ev.properties_json) == {"plan": "pro"}
    listed = await failed.ListFailedEvents(failed_pb2.ListFailedEventsRequest(include_replayed=True))
    [e] = listed.events
    assert listed.pending_total == 0 and e.replayed_at.seconds > 0 and e.replay_result == "ok" and e.attempts == 3
    # replaying again does nothing
    [r] = (await failed.ReplayFailedEvents(failed_pb2.ReplayFailedEventsRequest(ids=[fid]))).results
    assert r.ok and r.detail == "already replayed"
    assert len(await appended(stack)) == 1


async def test_a_grpc_call_refused_for_its_disabled_source_is_replayed_after_enabling_it(stack, ingest, sources,
                                                                                         failed):
    src = await sources.CreateSource(ingest_pb2.CreateSourceRequest(name="app", kind="app"))
    await sources.DisableSource(ingest_pb2.DisableSourceRequest(name="app"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ingest.Batch(ingest_pb2.BatchRequest(calls=[good("A"), good("B")], write_key=src.write_key))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and "kept as failed event" in err.value.details()
    [e] = (await failed.ListFailedEvents(failed_pb2.ListFailedEventsRequest())).events
    await sources.EnableSource(ingest_pb2.EnableSourceRequest(name="app"))
    [r] = (await failed.ReplayFailedEvents(failed_pb2.ReplayFailedEventsRequest(ids=[e.id]))).results
    assert r.ok, r.detail
    assert [ev.event for ev in await appended(stack)] == ["A", "B"]


async def test_a_replay_that_still_fails_stays_pending(stack, ingest, failed):
    [fid] = await reject(ingest, 1)
    [r] = (await failed.ReplayFailedEvents(failed_pb2.ReplayFailedEventsRequest(ids=[fid]))).results
    assert not r.ok and "either userId or anonymousId is required" in r.detail
    [r] = (await failed.ReplayFailedEvents(failed_pb2.ReplayFailedEventsRequest(all=True))).results
    assert r.id == fid and not r.ok
    [e] = (await failed.ListFailedEvents(failed_pb2.ListFailedEventsRequest())).events
    assert e.attempts == 3 and "either userId or anonymousId is required" in e.replay_result
    assert not e.replayed_at.seconds
    assert await appended(stack) == []


async def test_replay_all_drives_every_pending_one(stack, ingest, sources, failed):
    src = await sources.CreateSource(ingest_pb2.CreateSourceRequest(name="website", kind="web"))
    await sources.DisableSource(ingest_pb2.DisableSourceRequest(name="website"))
    async with aiohttp.ClientSession() as http:
        for i in range(3):
            async with http.post(http_url(stack, "/v1/batch"), headers=basic(src.write_key),
                                 json={"batch": [{"type": "track", "userId": f"u{i}", "event": "E"}]}) as r:
                assert r.status == 403
    [still_bad] = await reject(ingest, 1)
    await sources.EnableSource(ingest_pb2.EnableSourceRequest(name="website"))
    results = (await failed.ReplayFailedEvents(failed_pb2.ReplayFailedEventsRequest(all=True))).results
    assert [r.ok for r in results] == [True, True, True, False] and results[-1].id == still_bad
    assert sorted(ev.user_id for ev in await appended(stack)) == ["u0", "u1", "u2"]
    assert (await failed.ListFailedEvents(failed_pb2.ListFailedEventsRequest())).pending_total == 1


async def test_replay_needs_ids_or_all_and_known_ids(ingest, failed):
    [fid] = await reject(ingest, 1)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await failed.ReplayFailedEvents(failed_pb2.ReplayFailedEventsRequest())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "ids" in err.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await failed.ReplayFailedEvents(failed_pb2.ReplayFailedEventsRequest(ids=[fid, 424242]))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "424242" in err.value.details()
    [e] = (await failed.ListFailedEvents(failed_pb2.ListFailedEventsRequest())).events
    assert e.attempts == 1  # nothing was tried


async def test_failed_events_need_admin(stack):
    from cdp_core.auth import issue_token

    writer = failed_pb2_grpc.FailedEventServiceStub(
        stack.channel("ingest", issue_token(stack.secret, "w", ["events:write"])))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await writer.ListFailedEvents(failed_pb2.ListFailedEventsRequest())
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_consumer_failure_in_identity_is_listed_by_identity(fresh_nats_url, database_server_url, auth_secret):
    st = Stack(fresh_nats_url, database_server_url, auth_secret, "fei_" + os.urandom(4).hex())
    await st.start(IDENTITY)
    try:
        js = st.services["identity"].runtime.bus.js
        garbage = b"\xff\x00 not an envelope"
        await js.publish("cdp.ingest.event.track", garbage, headers={"Nats-Msg-Id": str(uuid.uuid4())})
        # an envelope of the right type whose payload is not an EventCollected
        wrong = envelope.make("cdp.ingest.event.track", StringValue(value="x"), producer="test")
        await js.publish("cdp.ingest.event.track", wrong.SerializeToString(), headers={"Nats-Msg-Id": wrong.event_id})
        failed = failed_pb2_grpc.FailedEventServiceStub(st.channel("identity"))

        async def both_listed():
            r = await failed.ListFailedEvents(failed_pb2.ListFailedEventsRequest(kind="consumer"))
            return r if r.pending_total == 2 else None

        listed = await eventually(both_listed, timeout=15)
        second, first = listed.events
        assert (first.kind, first.consumer, first.stream, first.stream_seq, first.subject) == (
            "consumer", "identity", "CDP_INGEST", 1, "cdp.ingest.event.track")
        assert "not a cdp.common.v1.Envelope" in first.reason and not first.event_id
        assert second.stream_seq == 2 and second.event_id == wrong.event_id
        assert "cdp.ingest.v1.EventCollected" in second.reason
        got = await failed.GetFailedEvent(failed_pb2.GetFailedEventRequest(id=first.id))
        assert got.data == garbage and got.data_text == ""
        got = await failed.GetFailedEvent(failed_pb2.GetFailedEventRequest(id=second.id))
        assert json.loads(got.data_text)["eventId"] == wrong.event_id
        # replaying runs identity's projection again: still poison, so both stay pending with the reason
        results = (await failed.ReplayFailedEvents(failed_pb2.ReplayFailedEventsRequest(all=True))).results
        assert [(r.id, r.ok) for r in results] == [(first.id, False), (second.id, False)]
        assert "not a cdp.common.v1.Envelope" in results[0].detail
        assert "cdp.ingest.v1.EventCollected" in results[1].detail
        # the consumer went on: a good event after them is applied
        ok = envelope.make("cdp.ingest.event.track", events_pb2.EventCollected(kind="track", user_id="u", event="E"),
                           producer="ingest")
        await js.publish("cdp.ingest.event.track", ok.SerializeToString(), headers={"Nats-Msg-Id": ok.event_id})
        pool = st.services["identity"].runtime.pool
        await eventually(lambda: pool.fetchval("SELECT count(*) FROM seen_events WHERE event_id = $1", ok.event_id))
    finally:
        await st.stop()
