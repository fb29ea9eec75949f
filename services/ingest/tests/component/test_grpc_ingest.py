"""IngestService over gRPC against a real NATS server and PostgreSQL: every call kind is
appended to CDP_INGEST; Batch answers per call and keeps the rejected ones; limits refuse
a request whole; write keys set the source; rate limits answer RESOURCE_EXHAUSTED."""

from __future__ import annotations

import json
import os
import uuid

import grpc
import pytest

from cdp.ingest.v1 import events_pb2, ingest_pb2, ingest_pb2_grpc
from cdp_core import envelope
from cdp_core.testing.stack import Stack
from cdp_ingest.service import SPEC as INGEST

pytestmark = pytest.mark.component


def common(**kw) -> ingest_pb2.EventCommon:
    kw.setdefault("message_id", str(uuid.uuid4()))
    return ingest_pb2.EventCommon(**kw)


def track(event="Viewed", **kw) -> ingest_pb2.TrackRequest:
    props = kw.pop("properties", None)
    kw.setdefault("user_id", "u1")
    return ingest_pb2.TrackRequest(common=common(**kw), event=event,
                                   properties_json=json.dumps(props) if props is not None else "")


async def log_of_record(stack) -> list[tuple[str, envelope.Envelope, events_pb2.EventCollected]]:
    """Every message of CDP_INGEST: (subject, envelope, EventCollected)."""
    js = stack.services["ingest"].runtime.bus.js
    info = await js.stream_info("CDP_INGEST")
    out = []
    if info.state.messages == 0:
        return out
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        m = await js.get_msg("CDP_INGEST", seq)
        env = envelope.decode(m.data)
        out.append((m.subject, env, envelope.unpack(env, events_pb2.EventCollected)))
    return out


async def failed_rows(stack, **where):
    pool = stack.services["ingest"].runtime.pool
    rows = await pool.fetch("SELECT * FROM cdp_failed_events ORDER BY id")
    return [r for r in rows if all(r[k] == v for k, v in where.items())]


async def test_every_call_kind_is_appended_to_the_log_of_record(stack, ingest):
    uid, anon = "user-" + uuid.uuid4().hex, "anon-" + uuid.uuid4().hex
    answers = {
        "track": await ingest.Track(track("Order Completed", user_id=uid, properties={"revenue": 9.5})),
        "identify": await ingest.Identify(ingest_pb2.IdentifyRequest(
            common=common(user_id=uid, anonymous_id=anon), traits_json='{"plan": "pro"}')),
        "page": await ingest.Page(ingest_pb2.PageRequest(common=common(anonymous_id=anon), name="Home",
                                                         category="Docs", properties_json='{"path": "/"}')),
        "screen": await ingest.Screen(ingest_pb2.ScreenRequest(common=common(user_id=uid), name="Settings")),
        "group": await ingest.Group(ingest_pb2.GroupRequest(common=common(user_id=uid), group_id="acme",
                                                           traits_json='{"employees": 12}')),
        "alias": await ingest.Alias(ingest_pb2.AliasRequest(common=common(user_id=uid), previous_id=anon)),
    }
    log = await log_of_record(stack)
    assert [s for s, _, _ in log] == [f"cdp.ingest.event.{k}" for k in answers]
    for (subject, env, ev), (kind, answer) in zip(log, answers.items(), strict=True):
        assert env.event_id == answer.event_id and answer.received_at.seconds > 0
        assert env.type == subject and env.producer == "ingest"
        assert ev.kind == kind
        assert ev.source_id == "token:tests" and ev.source_kind == "server"  # no write key: the token's subject
        assert ev.received_at.seconds > 0 and ev.timestamp.seconds > 0
    by_kind = {ev.kind: ev for _, _, ev in log}
    assert by_kind["track"].event == "Order Completed"
    assert json.loads(by_kind["track"].properties_json) == {"revenue": 9.5}
    assert json.loads(by_kind["identify"].traits_json) == {"plan": "pro"}
    assert (by_kind["page"].name, by_kind["page"].category) == ("Home", "Docs")
    assert by_kind["screen"].name == "Settings"
    assert by_kind["group"].group_id == "acme"
    assert by_kind["alias"].previous_id == anon


async def test_a_message_id_makes_the_event_id_and_a_retry_is_the_same_event(stack, ingest):
    req = track(message_id="m-1")
    first, again = await ingest.Track(req), await ingest.Track(req)
    assert first.event_id == again.event_id
    assert len(await log_of_record(stack)) == 1  # JetStream dropped the copy (Nats-Msg-Id)


async def test_batch_answers_per_call_appends_the_valid_and_keeps_the_rejected(stack, ingest):
    calls = [
        ingest_pb2.Call(track=track("A")),
        ingest_pb2.Call(track=ingest_pb2.TrackRequest(common=common(), event="No Id")),  # no userId/anonymousId
        ingest_pb2.Call(identify=ingest_pb2.IdentifyRequest(common=common(user_id="u2"), traits_json='{"x": 1}')),
        ingest_pb2.Call(track=ingest_pb2.TrackRequest(common=common(user_id="u3"), event="Bad",
                                                      properties_json="[1, 2]")),  # not an object
        ingest_pb2.Call(page=ingest_pb2.PageRequest(common=common(anonymous_id="a4"), name="P")),
    ]
    resp = await ingest.Batch(ingest_pb2.BatchRequest(calls=calls))
    assert (resp.accepted, resp.rejected) == (3, 2)
    assert [r.index for r in resp.results] == [0, 1, 2, 3, 4]
    ok = [r for r in resp.results if not r.error]
    bad = {r.index: r for r in resp.results if r.error}
    assert set(bad) == {1, 3}
    assert "calls[1].common.user_id" in bad[1].error and "required" in bad[1].error
    assert "calls[3].properties_json" in bad[3].error and "JSON object" in bad[3].error
    assert all(r.event_id and not r.failed_event_id for r in ok)
    assert all(r.failed_event_id and not r.event_id for r in bad.values())

    log = await log_of_record(stack)
    assert [env.event_id for _, env, _ in log] == [r.event_id for r in ok]
    rows = {r["id"]: r for r in await failed_rows(stack)}
    assert set(rows) == {r.failed_event_id for r in bad.values()}
    for r in bad.values():
        row = rows[r.failed_event_id]
        assert row["kind"] == "rejected" and row["consumer"] == "ingest.grpc"
        assert row["reason"] == r.error and row["replayed_at"] is None
        assert row["source_id"] == "token:tests" and row["content_type"] == "application/json"
        data = json.loads(bytes(row["data"]))
        assert data["type"] == "track"
    assert json.loads(bytes(rows[bad[3].failed_event_id]["data"]))["properties"] == [1, 2]
    assert json.loads(bytes(rows[bad[1].failed_event_id]["data"]))["event"] == "No Id"


async def test_an_oversized_batch_is_refused_whole_kept_and_nothing_appended(stack, ingest):
    big = {"blob": "x" * 30_000}  # each call is under the 32 KB limit; 20 of them exceed 500 KB
    calls = [ingest_pb2.Call(track=track(f"E{i}", properties=big)) for i in range(20)]
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await ingest.Batch(ingest_pb2.BatchRequest(calls=calls))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "512000" in e.value.details() and "calls" in e.value.details()
    assert "kept as failed event" in e.value.details()
    [row] = await failed_rows(stack)
    assert row["kind"] == "rejected" and "512000" in row["reason"]
    assert row["content_type"] == "application/vnd.cdp.ingest.batch+protobuf"
    assert len(ingest_pb2.BatchRequest.FromString(bytes(row["data"])).calls) == 20  # the original bytes
    assert await log_of_record(stack) == []


async def test_a_batch_of_too_many_calls_is_refused_whole(stack, ingest):
    calls = [ingest_pb2.Call(track=ingest_pb2.TrackRequest(common=ingest_pb2.EventCommon(user_id="u"), event="E"))
             for _ in range(2501)]
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await ingest.Batch(ingest_pb2.BatchRequest(calls=calls))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "2501 calls" in e.value.details() and "2500" in e.value.details()
    assert len(await failed_rows(stack, kind="rejected")) == 1
    assert await log_of_record(stack) == []
    # exactly at the limit is fine
    resp = await ingest.Batch(ingest_pb2.BatchRequest(calls=calls[:2500]))
    assert resp.accepted == 2500


async def test_an_empty_call_in_a_batch_names_it(stack, ingest):
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await ingest.Batch(ingest_pb2.BatchRequest(calls=[ingest_pb2.Call(track=track()), ingest_pb2.Call()]))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "calls[1]" in e.value.details()
    assert await log_of_record(stack) == []


async def test_import_events_streams_several_messages(stack):
    ingest = ingest_pb2_grpc.IngestServiceStub(stack.channel("ingest"))

    async def requests():
        for chunk in range(4):
            calls = [ingest_pb2.Call(track=track(f"Imported {chunk}-{i}", message_id=f"imp-{chunk}-{i}"))
                     for i in range(25)]
            if chunk == 2:
                calls[5] = ingest_pb2.Call(track=ingest_pb2.TrackRequest(common=common(), event="No Id"))
            yield ingest_pb2.ImportEventsRequest(calls=calls)

    resp = await ingest.ImportEvents(requests())  # the channel's token goes on client streams too
    assert (resp.accepted, resp.rejected) == (99, 1)
    [r] = resp.rejections
    assert "calls[55]" in r.error and r.failed_event_id  # numbered across the whole stream
    log = await log_of_record(stack)
    assert len(log) == 99
    assert {ev.message_id for _, _, ev in log} == {f"imp-{c}-{i}" for c in range(4) for i in range(25)} - {"imp-2-5"}
    [row] = await failed_rows(stack)
    assert row["id"] == r.failed_event_id and row["consumer"] == "ingest.import"
    assert r.index == 55


async def test_import_events_with_a_write_key_and_an_unknown_key(stack, sources):
    ingest = ingest_pb2_grpc.IngestServiceStub(stack.channel("ingest"))
    made = await sources.CreateSource(ingest_pb2.CreateSourceRequest(name="bulk", kind="crm"))

    async def requests(key):
        yield ingest_pb2.ImportEventsRequest(write_key=key, calls=[ingest_pb2.Call(track=track())])
        yield ingest_pb2.ImportEventsRequest(calls=[ingest_pb2.Call(track=track())])  # the first key holds

    resp = await ingest.ImportEvents(requests(made.write_key))
    assert resp.accepted == 2
    assert {ev.source_id for _, _, ev in await log_of_record(stack)} == {made.source.source_id}
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await ingest.ImportEvents(requests("wk_nope"))
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert len(await log_of_record(stack)) == 2


async def test_a_write_key_sets_the_source_of_the_events(stack, ingest, sources):
    web = await sources.CreateSource(ingest_pb2.CreateSourceRequest(name="website", kind="web"))
    pos = await sources.CreateSource(ingest_pb2.CreateSourceRequest(name="shop-pos", kind="pos"))
    by_meta = await ingest.Track(track("Meta"), metadata=[("x-cdp-write-key", web.write_key)])
    by_body = await ingest.Batch(ingest_pb2.BatchRequest(calls=[ingest_pb2.Call(track=track("Body"))],
                                                         write_key=pos.write_key))
    # the request's write key wins over the metadata's
    both = await ingest.Batch(ingest_pb2.BatchRequest(calls=[ingest_pb2.Call(track=track("Both"))],
                                                      write_key=pos.write_key),
                              metadata=[("x-cdp-write-key", web.write_key)])
    log = {env.event_id: ev for _, env, ev in await log_of_record(stack)}
    assert (log[by_meta.event_id].source_id, log[by_meta.event_id].source_kind) == (web.source.source_id, "web")
    assert (log[by_body.results[0].event_id].source_id, log[by_body.results[0].event_id].source_kind) == (
        pos.source.source_id, "pos")
    assert log[both.results[0].event_id].source_id == pos.source.source_id
    # the same message id from two sources is two events
    a = await ingest.Track(track(message_id="same"), metadata=[("x-cdp-write-key", web.write_key)])
    b = await ingest.Track(track(message_id="same"), metadata=[("x-cdp-write-key", pos.write_key)])
    assert a.event_id != b.event_id


async def test_an_unknown_write_key_is_unauthenticated(stack, ingest):
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await ingest.Track(track(), metadata=[("x-cdp-write-key", "wk_nope")])
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "write key" in e.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await ingest.Batch(ingest_pb2.BatchRequest(calls=[ingest_pb2.Call(track=track())], write_key="wk_nope"))
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await log_of_record(stack) == []


async def test_a_disabled_source_is_permission_denied(stack, ingest, sources):
    src = await sources.CreateSource(ingest_pb2.CreateSourceRequest(name="app", kind="app"))
    await sources.DisableSource(ingest_pb2.DisableSourceRequest(name="app"))
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await ingest.Track(track(), metadata=[("x-cdp-write-key", src.write_key)])
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'app'" in e.value.details() and "disabled" in e.value.details()
    assert await log_of_record(stack) == []


async def test_calls_refused_for_their_source_are_kept_as_failed_events(stack, ingest, sources):
    """Issue 4 item 8: unknown or disabled source -> kept with the reason and the bytes."""
    src = await sources.CreateSource(ingest_pb2.CreateSourceRequest(name="app", kind="app"))
    await sources.DisableSource(ingest_pb2.DisableSourceRequest(name="app"))
    for key in (src.write_key, "wk_unknown"):
        with pytest.raises(grpc.aio.AioRpcError):
            await ingest.Batch(ingest_pb2.BatchRequest(calls=[ingest_pb2.Call(track=track())], write_key=key))
    disabled, unknown = await failed_rows(stack, kind="rejected")
    assert disabled["source_id"] == src.source.source_id and "'app' is disabled" in disabled["reason"]
    assert unknown["source_id"] is None and "unknown write key" in unknown["reason"]
    for row in (disabled, unknown):  # the request's calls as Segment JSON, so they can be replayed
        kept = json.loads(bytes(row["data"]))
        assert row["content_type"] == "application/json" and [c["type"] for c in kept["batch"]] == ["track"]
    assert kept["writeKey"] == "wk_unknown"  # an unknown key is kept, for a replay once it exists
    assert await log_of_record(stack) == []


async def test_a_source_rate_limit_answers_resource_exhausted(stack, ingest, sources):
    src = await sources.CreateSource(ingest_pb2.CreateSourceRequest(name="limited", kind="server",
                                                                    rate_limit_per_s=5))
    assert src.source.rate_limit_per_s == 5
    md = [("x-cdp-write-key", src.write_key)]
    # the bucket holds 2 s of the rate: 10 calls pass at once, the 11th does not
    ok = await ingest.Batch(ingest_pb2.BatchRequest(calls=[ingest_pb2.Call(track=track()) for _ in range(10)]),
                            metadata=md)
    assert ok.accepted == 10
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await ingest.Track(track(), metadata=md)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "retry after 1 s" in e.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await ingest.Batch(ingest_pb2.BatchRequest(calls=[ingest_pb2.Call(track=track()) for _ in range(5)]),
                           metadata=md)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(await log_of_record(stack)) == 10  # nothing of the refused calls was appended
    # other sources and token callers are not limited by this source's bucket
    assert (await ingest.Track(track())).event_id


async def test_the_default_rate_limit_applies_to_write_key_sources(fresh_nats_url, database_server_url, auth_secret):
    """CDP_INGEST_RATE_LIMIT_PER_S is the rate of every source that sets none."""
    st = Stack(fresh_nats_url, database_server_url, auth_secret, "rate_" + os.urandom(4).hex(),
               env={"CDP_INGEST_RATE_LIMIT_PER_S": "2"})
    await st.start(INGEST)
    try:
        ingest = ingest_pb2_grpc.IngestServiceStub(st.channel("ingest"))
        sources = ingest_pb2_grpc.SourceServiceStub(st.channel("ingest"))
        src = await sources.CreateSource(ingest_pb2.CreateSourceRequest(name="default-rate", kind="web"))
        md = [("x-cdp-write-key", src.write_key)]
        calls = [ingest_pb2.Call(track=track()) for _ in range(4)]
        assert (await ingest.Batch(ingest_pb2.BatchRequest(calls=calls), metadata=md)).accepted == 4
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await ingest.Batch(ingest_pb2.BatchRequest(calls=calls), metadata=md)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # callers without a write key (trusted servers with a token) are not limited
        assert (await ingest.Batch(ingest_pb2.BatchRequest(calls=calls * 5))).accepted == 20
    finally:
        await st.stop()
