"""The transactional outbox and its relay, against real NATS and PostgreSQL."""

from __future__ import annotations

import asyncio
import json

import nats.errors
import pytest
from google.protobuf.wrappers_pb2 import StringValue

from cdp_core import envelope, telemetry
from cdp_core.bus import Outgoing
from cdp_core.outbox import OutboxRelay, OutboxWriter
from cdp_core.testing import eventually

pytestmark = pytest.mark.component


def _envs(n: int, cause: str = "cause"):
    return [
        envelope.make(
            "cdp.identity.resolved",
            StringValue(value=str(i)),
            producer="identity",
            event_id=envelope.derived_id(cause, str(i)),
        )
        for i in range(n)
    ]


async def _write(pool, envs) -> None:
    w = OutboxWriter()
    for e in envs:
        w.add(e)
    async with pool.acquire() as conn, conn.transaction():
        assert await w.flush(conn) == len(envs)
    assert w.pending == []


async def _stream_msgs(bus, stream="CDP_IDENTITY"):
    info = await bus.js.stream_info(stream)
    return (
        [await bus.js.get_msg(stream, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)]
        if info.state.messages
        else []
    )


async def test_flush_of_nothing_writes_nothing(pool):
    async with pool.acquire() as conn:
        assert await OutboxWriter().flush(conn) == 0
    assert await pool.fetchval("SELECT count(*) FROM cdp_outbox") == 0


async def test_rows_of_a_rolled_back_transaction_are_not_kept(pool):
    w = OutboxWriter()
    w.add(_envs(1)[0])
    with pytest.raises(RuntimeError):
        async with pool.acquire() as conn, conn.transaction():
            await w.flush(conn)
            raise RuntimeError("projection failed")
    assert await pool.fetchval("SELECT count(*) FROM cdp_outbox") == 0


async def test_relay_publishes_rows_with_their_msg_ids_and_deletes_them(bus, pool):
    telemetry.configure("tests")
    await bus.ensure_stream("identity")
    envs = _envs(5)
    with telemetry.tracer().start_as_current_span("projection") as span:
        await _write(pool, envs)
    assert await pool.fetchval("SELECT count(*) FROM cdp_outbox") == 5
    relay = OutboxRelay(pool, bus, batch_size=3)
    assert await relay.relay_once() == 3  # one batch at a time, in order
    assert await relay.relay_once() == 2
    assert await relay.relay_once() == 0
    assert relay.published == 5
    assert await pool.fetchval("SELECT count(*) FROM cdp_outbox") == 0
    msgs = await _stream_msgs(bus)
    assert [m.headers["Nats-Msg-Id"] for m in msgs] == [e.event_id for e in envs]
    assert [envelope.decode(m.data) for m in msgs] == envs
    assert {m.subject for m in msgs} == {"cdp.identity.resolved"}
    # the trace context of the writing transaction travels with the event
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert all(m.headers["traceparent"].split("-")[1] == trace_id for m in msgs)


async def test_a_crash_between_publish_and_delete_yields_no_duplicate(bus, pool):
    await bus.ensure_stream("identity")
    envs = _envs(4)
    await _write(pool, envs)
    # the relay published, then crashed before its DELETE committed: the rows are still there
    rows = await pool.fetch("SELECT subject, msg_id, data, headers FROM cdp_outbox ORDER BY id")
    acks = await bus.publish_batch(
        [Outgoing(r["subject"], bytes(r["data"]), r["msg_id"], json.loads(r["headers"])) for r in rows]
    )
    assert not any(a.duplicate for a in acks)
    # after the restart it publishes them again
    relay = OutboxRelay(pool, bus)
    assert await relay.relay_once() == 4
    assert await pool.fetchval("SELECT count(*) FROM cdp_outbox") == 0
    msgs = await _stream_msgs(bus)
    assert len(msgs) == 4  # JetStream dropped the re-published copies
    assert [m.headers["Nats-Msg-Id"] for m in msgs] == [e.event_id for e in envs]


async def test_a_failed_publish_keeps_the_rows(bus, pool):
    # no stream for the subject: the publish is not acknowledged, the rows stay for a retry
    await _write(pool, _envs(2))
    relay = OutboxRelay(pool, bus)
    with pytest.raises(nats.errors.Error):  # no responders: no stream stores the subject
        await relay.relay_once()
    assert await pool.fetchval("SELECT count(*) FROM cdp_outbox") == 2
    await bus.ensure_stream("identity")
    assert await relay.relay_once() == 2
    assert len(await _stream_msgs(bus)) == 2


async def test_running_relay_publishes_on_notify_and_drains_on_stop(bus, pool):
    await bus.ensure_stream("identity")
    relay = OutboxRelay(pool, bus, poll_interval_s=30)  # only NOTIFY can wake it in time
    task = asyncio.create_task(relay.run())
    try:
        await _write(pool, _envs(3, "first"))

        async def published():
            return (await bus.js.stream_info("CDP_IDENTITY")).state.messages == 3

        await eventually(published, timeout=10)
        await _write(pool, _envs(2, "second"))
        relay.stop()
        await asyncio.wait_for(task, 10)  # drains what is there, then returns
    finally:
        relay.stop()
        if not task.done():
            task.cancel()
    assert (await bus.js.stream_info("CDP_IDENTITY")).state.messages == 5
    assert await pool.fetchval("SELECT count(*) FROM cdp_outbox") == 0


async def _write_handed(pool, envs) -> list:
    w = OutboxWriter()
    for e in envs:
        w.add(e)
    async with pool.acquire() as conn, conn.transaction():
        assert await w.flush(conn, hand_off=True) == len(envs)
    return w.written


async def test_rows_handed_over_are_published_from_memory_without_notify_and_deleted(bus, pool):
    await bus.ensure_stream("identity")
    relay = OutboxRelay(pool, bus, poll_interval_s=30)  # no NOTIFY and no poll in time: only the hand-off
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.2)  # the start-up read of the table is done
        envs = _envs(3, "handed")
        written = await _write_handed(pool, envs)
        assert [m.msg_id for _, m in written] == [e.event_id for e in envs]
        assert sorted(i for i, _ in written) == sorted(
            r[0] for r in await pool.fetch("SELECT id FROM cdp_outbox"))  # the rows' own ids
        relay.hand_off(written)

        async def published():
            return (await bus.js.stream_info("CDP_IDENTITY")).state.messages == 3 and not await pool.fetchval(
                "SELECT count(*) FROM cdp_outbox")

        await eventually(published, timeout=10)
        msgs = await _stream_msgs(bus)
        assert [envelope.decode(m.data) for m in msgs] == envs
    finally:
        relay.stop()
        await asyncio.wait_for(task, 10)


async def test_a_failed_hand_off_leaves_the_rows_to_the_table_reads(bus, pool):
    relay = OutboxRelay(pool, bus, poll_interval_s=0.2)
    written = await _write_handed(pool, _envs(2, "orphans"))
    relay.hand_off(written)
    assert await relay.relay_handed() == 0  # no stream stores the subject yet: not acknowledged
    assert await pool.fetchval("SELECT count(*) FROM cdp_outbox") == 2
    await bus.ensure_stream("identity")
    task = asyncio.create_task(relay.run())
    try:
        async def published():
            return (await bus.js.stream_info("CDP_IDENTITY")).state.messages == 2 and not await pool.fetchval(
                "SELECT count(*) FROM cdp_outbox")

        await eventually(published, timeout=10)
    finally:
        relay.stop()
        await asyncio.wait_for(task, 10)


async def test_the_table_is_still_read_every_poll_while_hand_offs_come_back_to_back(bus, pool):
    await bus.ensure_stream("identity")
    relay = OutboxRelay(pool, bus, poll_interval_s=0.3)
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.1)  # the start-up read is done
        orphan = _envs(1, "orphan")[0]  # a row a crashed process left: no NOTIFY, no hand-off
        await pool.execute("INSERT INTO cdp_outbox (subject, msg_id, data) VALUES ($1, $2, $3)",
                           orphan.type, orphan.event_id, orphan.SerializeToString())
        for i in range(40):  # a hand-off every 50 ms, for 2 s: the wait never times out
            relay.hand_off(await _write_handed(pool, _envs(1, f"busy-{i}")))
            await asyncio.sleep(0.05)
        msgs = await _stream_msgs(bus)
        assert orphan.event_id in {m.headers["Nats-Msg-Id"] for m in msgs}
    finally:
        relay.stop()
        await asyncio.wait_for(task, 10)
