"""The JetStream bus against a real NATS server."""

from __future__ import annotations

import uuid

import nats.errors
import pytest
from google.protobuf.wrappers_pb2 import StringValue
from nats.js import api

from cdp_core import envelope, telemetry
from cdp_core.bus import DUPLICATE_WINDOW_S, MAX_PAYLOAD, Outgoing

pytestmark = pytest.mark.component


def _out(subject="cdp.ingest.event.track", data=b"x", msg_id=None, **headers):
    return Outgoing(subject, data, msg_id or str(uuid.uuid4()), dict(headers))


async def _count(bus, stream="CDP_INGEST") -> int:
    return (await bus.js.stream_info(stream)).state.messages


async def test_ensure_stream_is_idempotent(bus):
    first = await bus.ensure_stream("ingest")
    await bus.publish_batch([_out()])
    second = await bus.ensure_stream("ingest")
    assert first.config.name == second.config.name == "CDP_INGEST"
    assert second.config.subjects == ["cdp.ingest.>"]
    assert second.config.storage == api.StorageType.FILE
    assert second.config.retention == api.RetentionPolicy.LIMITS
    assert second.config.duplicate_window == DUPLICATE_WINDOW_S
    assert not second.config.max_age  # the log keeps all history
    assert second.config == first.config
    assert await _count(bus) == 1  # re-declaring kept the stored message
    assert [s async for s in _stream_names(bus)] == ["CDP_INGEST"]


async def _stream_names(bus):
    for info in await bus.js.streams_info():
        yield info.config.name


async def test_ensure_stream_updates_a_changed_config(bus):
    short = await bus.ensure_stream("identity", max_age_s=3600)
    assert short.config.max_age == 3600
    assert short.config.duplicate_window <= 3600  # the server refuses a window beyond max_age
    info = await bus.ensure_stream("identity")
    assert not info.config.max_age
    assert (await bus.js.stream_info("CDP_IDENTITY")).config.subjects == ["cdp.identity.>"]


async def test_channel_gateway_stream(bus):
    info = await bus.ensure_stream("channel-gateway")
    assert info.config.name == "CDP_CHANNEL_GATEWAY"
    assert info.config.subjects == ["cdp.channel-gateway.>"]


async def test_publish_batch_returns_when_every_message_is_stored(bus):
    await bus.ensure_stream("ingest")
    msgs = [_out(data=f"m{i}".encode()) for i in range(300)]
    acks = await bus.publish_batch(msgs)
    assert len(acks) == 300
    assert all(a.stream == "CDP_INGEST" and not a.duplicate for a in acks)
    assert sorted(a.seq for a in acks) == list(range(1, 301))
    assert await _count(bus) == 300  # no polling: stored when publish_batch returns
    assert await bus.publish_batch([]) == []


async def test_msg_id_deduplicates(bus):
    await bus.ensure_stream("ingest")
    (first,) = await bus.publish_batch([_out(msg_id="evt-1", data=b"one")])
    (again,) = await bus.publish_batch([_out(msg_id="evt-1", data=b"one")])
    assert not first.duplicate
    assert again.duplicate is True
    assert again.seq == first.seq
    assert await _count(bus) == 1
    # the same id twice inside one batch is stored once as well
    acks = await bus.publish_batch([_out(msg_id="evt-2"), _out(msg_id="evt-2")])
    assert [a.duplicate for a in acks].count(True) == 1
    assert await _count(bus) == 2


async def test_published_messages_carry_msg_id_and_traceparent(bus):
    telemetry.configure("tests")
    await bus.ensure_stream("ingest")
    with telemetry.tracer().start_as_current_span("publish") as span:
        env = envelope.make("cdp.ingest.event.track", StringValue(value="v"), producer="ingest")
        (ack,) = await bus.publish_envelopes([env])
    msg = await bus.js.get_msg("CDP_INGEST", ack.seq)
    assert msg.headers["Nats-Msg-Id"] == env.event_id
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert msg.headers["traceparent"].split("-")[1] == trace_id
    assert msg.subject == "cdp.ingest.event.track"
    assert envelope.decode(msg.data) == env


async def test_message_headers_are_kept(bus):
    await bus.ensure_stream("ingest")
    (ack,) = await bus.publish_batch([_out(msg_id="m", **{"x-source": "crm"})])
    msg = await bus.js.get_msg("CDP_INGEST", ack.seq)
    assert msg.headers["x-source"] == "crm"


async def test_oversize_payload_is_rejected(bus):
    await bus.ensure_stream("ingest")
    with pytest.raises(ValueError, match="limit"):
        await bus.publish_batch([_out(data=b"x" * (MAX_PAYLOAD + 1))])
    assert await _count(bus) == 0


async def test_a_batch_with_one_oversize_message_publishes_nothing(bus):
    await bus.ensure_stream("ingest")
    with pytest.raises(ValueError):
        await bus.publish_batch([_out(data=b"ok", msg_id="first"), _out(data=b"x" * (MAX_PAYLOAD + 1))])
    (marker,) = await bus.publish_batch([_out(msg_id="marker")])
    assert marker.seq == 1  # nothing of the failed batch was stored before it
    assert await _count(bus) == 1


async def test_the_limit_counts_the_headers(bus):
    """The server's max_payload counts headers too; beyond it the server closes the connection."""
    await bus.ensure_stream("ingest")
    with pytest.raises(ValueError, match="limit"):
        await bus.publish_batch([_out(data=b"x" * MAX_PAYLOAD, msg_id="big")])
    (near,) = await bus.publish_batch([_out(data=b"x" * (MAX_PAYLOAD - 200), msg_id="near")])
    assert not near.duplicate
    msg = await bus.js.get_msg("CDP_INGEST", near.seq)
    assert len(msg.data) == MAX_PAYLOAD - 200
    assert bus.nc.is_connected


async def test_publishing_outside_every_stream_fails(bus):
    await bus.ensure_stream("ingest")
    with pytest.raises(nats.errors.Error):
        await bus.publish_batch([_out(subject="cdp.nowhere.x")])


async def test_ensure_consumer_is_idempotent(bus):
    await bus.ensure_stream("ingest")
    a = await bus.ensure_consumer("CDP_INGEST", "reader", ["cdp.ingest.event.>"])
    b = await bus.ensure_consumer("CDP_INGEST", "reader", ["cdp.ingest.event.>"])
    assert a.name == b.name == "reader"
    assert b.config.durable_name == "reader"
    assert b.config.ack_policy == api.AckPolicy.EXPLICIT
    assert b.config.deliver_policy == api.DeliverPolicy.ALL
    assert b.config.filter_subject == "cdp.ingest.event.>"
    infos = await bus.js.consumers_info("CDP_INGEST")
    assert [c.name for c in infos] == ["reader"]


async def test_ensure_consumer_with_several_subjects(bus):
    await bus.ensure_stream("ingest")
    info = await bus.ensure_consumer("CDP_INGEST", "multi", ["cdp.ingest.event.track", "cdp.ingest.event.page"])
    again = await bus.ensure_consumer("CDP_INGEST", "multi", ["cdp.ingest.event.track", "cdp.ingest.event.page"])
    assert (
        info.config.filter_subjects
        == again.config.filter_subjects
        == ["cdp.ingest.event.track", "cdp.ingest.event.page"]
    )


async def _pull_sub(bus, durable="reader", ack_wait_s=30):
    await bus.ensure_stream("ingest")
    await bus.ensure_consumer("CDP_INGEST", durable, ["cdp.ingest.>"], ack_wait_s=ack_wait_s)
    return await bus.js.pull_subscribe_bind(durable, "CDP_INGEST")


async def test_fetch_takes_what_is_there_then_waits_for_more(bus):
    import asyncio
    import time

    sub = await _pull_sub(bus)
    assert await bus.fetch(sub, 10, 0.2) == []  # nothing in the stream: [] after the timeout
    await bus.publish_batch([_out(data=b"%d" % i) for i in range(25)])
    first = await bus.fetch(sub, 10, 1.0)
    rest = await bus.fetch(sub, 100, 1.0)  # fewer than asked: returns without waiting out the timeout
    assert [m.data for m in first + rest] == [b"%d" % i for i in range(25)]
    assert [m.metadata.sequence.stream for m in first + rest] == list(range(1, 26))
    await bus.settle(first + rest)

    async def later():
        await asyncio.sleep(0.3)
        await bus.publish_batch([_out(data=b"late")])

    task = asyncio.create_task(later())
    started = time.monotonic()
    got = await bus.fetch(sub, 100, 5.0)  # a waiting request: the message comes while it waits
    assert [m.data for m in got] == [b"late"] and time.monotonic() - started < 4.0
    await task
    await bus.settle(got)


async def test_a_waiting_fetch_returns_soon_after_its_first_message_while_more_keep_coming(bus, monkeypatch):
    """A steady stream never pauses for PULL_LINGER_S: the fetch still returns PULL_GATHER_S
    after its first message, not when the batch is full (which would hold the first message
    back for as long as the batch takes to fill)."""
    import asyncio

    from cdp_core import bus as bus_module

    monkeypatch.setattr(bus_module, "PULL_LINGER_S", 1.0)  # gaps never end this fetch
    monkeypatch.setattr(bus_module, "PULL_GATHER_S", 0.05)
    sub = await _pull_sub(bus)

    async def trickle():
        for i in range(200):  # one message every 10 ms for two seconds
            await bus.publish_batch([_out(data=b"%d" % i)])
            await asyncio.sleep(0.01)

    task = asyncio.create_task(trickle())
    try:
        got = await bus.fetch(sub, 10_000, 10.0)
        assert got and not task.done()  # it returned while messages were still coming
        assert len(got) < 200
    finally:
        await task
    rest = []
    while len(got) + len(rest) < 200:
        more = await bus.fetch(sub, 10_000, 2.0)
        assert more
        rest += more
    assert [m.data for m in got + rest] == [b"%d" % i for i in range(200)]
    await bus.settle(got + rest)


async def test_settle_acks_and_terms_so_nothing_is_redelivered(bus):
    sub = await _pull_sub(bus, ack_wait_s=1)
    await bus.publish_batch([_out(data=b"%d" % i) for i in range(6)])
    msgs = await bus.fetch(sub, 6, 1.0)
    assert len(msgs) == 6
    await bus.settle(msgs[:4], msgs[4:])
    with pytest.raises(nats.errors.Error):  # already settled: refused, as Msg.ack() refuses it
        await bus.settle(msgs[:1])
    import asyncio

    await asyncio.sleep(1.5)  # past ack_wait: anything not settled would come back now
    assert await bus.fetch(sub, 10, 0.5) == []
    info = await bus.js.consumer_info("CDP_INGEST", "reader")
    assert info.num_ack_pending == 0 and info.num_redelivered == 0
    assert info.ack_floor.stream_seq == 6


async def test_unsettled_messages_come_back(bus):
    sub = await _pull_sub(bus, ack_wait_s=1)
    await bus.publish_batch([_out(data=b"%d" % i) for i in range(3)])
    msgs = await bus.fetch(sub, 3, 1.0)
    await bus.settle(msgs[:1])
    import asyncio

    await asyncio.sleep(1.5)
    again = await bus.fetch(sub, 10, 1.0)
    assert sorted(m.data for m in again) == [b"1", b"2"]
    await bus.settle(again)
