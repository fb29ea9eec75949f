"""The consumer pattern of DESIGN.md ("Processing") against real NATS and PostgreSQL:
at-least-once delivery, exactly-once effect."""

from __future__ import annotations

import asyncio
import json
import uuid

import nats.errors
import pytest
from google.protobuf.wrappers_pb2 import StringValue

from cdp.common.v1.identifier_pb2 import Identifier
from cdp_core import envelope
from cdp_core.bus import Outgoing
from cdp_core.consumer import ConsumerRunner, Projection, Retry, handles
from cdp_core.testing import eventually

pytestmark = pytest.mark.component

TRACK = "cdp.ingest.event.track"
IDENTIFY = "cdp.ingest.event.identify"
PAGE = "cdp.ingest.event.page"  # no handler: tracked and skipped


class Counter(Projection):
    """A tiny projection: one row per applied event (no unique key, so a double apply shows),
    a derived outgoing event per identify, and misbehaviour on request."""

    name = "counter"
    source = "ingest"
    subjects = ["cdp.ingest.event.>"]

    def __init__(self) -> None:
        super().__init__()
        self.retries_left = 0
        self.attempts: dict[str, int] = {}
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()

    @handles(TRACK)
    async def on_track(self, conn, d, outbox):
        value = d.payload(StringValue).value
        self.attempts[value] = self.attempts.get(value, 0) + 1
        await conn.execute(
            "INSERT INTO applied (event_id, value, seq) VALUES ($1, $2, $3)", d.envelope.event_id, value, d.stream_seq
        )
        if value == "poison":
            raise ValueError("cannot count poison")
        if value == "retry" and self.retries_left > 0:
            self.retries_left -= 1
            raise Retry("not yet")
        if value == "slow":
            self.entered.set()
            await self.release.wait()

    @handles(IDENTIFY)
    async def on_identify(self, conn, d, outbox):
        ident = d.payload(Identifier)  # a wrong payload type raises PoisonMessage
        await conn.execute(
            "INSERT INTO applied (event_id, value, seq) VALUES ($1, $2, $3)",
            d.envelope.event_id,
            ident.value,
            d.stream_seq,
        )
        outbox.add(
            envelope.make(
                "cdp.identity.resolved",
                ident,
                producer="identity",
                cause=d.envelope,
                event_id=envelope.derived_id(d.envelope.event_id, "resolved"),
            )
        )
        if ident.value == "bad":
            raise ValueError("bad identifier")


@pytest.fixture
async def ctx(bus, pool):
    await bus.ensure_stream("ingest")
    await pool.execute("CREATE TABLE applied (event_id text NOT NULL, value text NOT NULL, seq bigint NOT NULL)")
    return bus, pool


def _env(subject: str, payload) -> envelope.Envelope:
    return envelope.make(subject, payload, producer="ingest")


async def _publish(bus, items) -> list:
    """items: envelopes, or raw bytes (published on the track subject)."""
    out = [
        Outgoing.from_envelope(i) if isinstance(i, envelope.Envelope) else Outgoing(TRACK, i, str(uuid.uuid4()))
        for i in items
    ]
    return await bus.publish_batch(out)


def _tracks(*values: str) -> list[envelope.Envelope]:
    return [_env(TRACK, StringValue(value=v)) for v in values]


async def _fetch(runner: ConsumerRunner, n: int, timeout: float = 5.0):
    await runner.declare()
    sub = await runner.bus.js.pull_subscribe_bind(runner.p.name, runner.stream)
    msgs = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(msgs) < n and asyncio.get_running_loop().time() < deadline:
        try:
            msgs += await sub.fetch(n - len(msgs), timeout=0.5)
        except nats.errors.TimeoutError:
            pass
    await sub.unsubscribe()
    assert len(msgs) == n
    return msgs


async def _applied(pool) -> list[tuple[str, int]]:
    return [
        (r["value"], r["n"])
        for r in await pool.fetch("SELECT value, count(*) AS n FROM applied GROUP BY value ORDER BY value")
    ]


async def _settled(bus, durable: str = "counter", last_seq: int | None = None):
    """Consumer info once every delivered message is acked (or terminated)."""

    async def check():
        info = await bus.js.consumer_info("CDP_INGEST", durable)
        done = info.num_ack_pending == 0 and info.num_pending == 0
        if last_seq is not None:
            done = done and info.ack_floor.stream_seq == last_seq
        return info if done else None

    return await eventually(check, timeout=10)


async def _run(runner: ConsumerRunner) -> asyncio.Task:
    task = asyncio.create_task(runner.run())
    return task


async def _stop(runner: ConsumerRunner, task: asyncio.Task) -> None:
    runner.stop()
    await asyncio.wait_for(task, 10)


async def test_every_message_is_applied_exactly_once_by_competing_consumers(ctx):
    bus, pool = ctx
    values = [f"v{i:03d}" for i in range(120)]
    await _publish(bus, _tracks(*values[:60]))
    # two replicas share the durable consumer
    runners = [ConsumerRunner(bus, pool, Counter(), batch_size=16, fetch_timeout_s=0.2) for _ in range(2)]
    tasks = [await _run(r) for r in runners]
    try:
        await _publish(bus, _tracks(*values[60:]))

        async def all_applied():
            return await pool.fetchval("SELECT count(*) FROM applied") >= 120

        await eventually(all_applied)
        info = await _settled(bus, last_seq=120)
    finally:
        for r, t in zip(runners, tasks, strict=True):
            await _stop(r, t)
    assert await _applied(pool) == [(v, 1) for v in values]
    assert info.num_ack_pending == 0 and info.num_redelivered == 0
    assert sum(r.processed for r in runners) == 120
    seqs = await pool.fetch("SELECT stream_seq FROM cdp_tracking WHERE consumer = 'counter' ORDER BY 1")
    assert [r[0] for r in seqs] == list(range(1, 121))


async def test_redelivered_messages_are_no_ops(ctx):
    bus, pool = ctx
    await _publish(bus, [*_tracks("a", "b", "c"), _env(IDENTIFY, Identifier(type="email", value="x@y.z"))])
    runner = ConsumerRunner(bus, pool, Counter())
    msgs = await _fetch(runner, 4)
    first = await runner.process(msgs)
    assert (first.applied, first.duplicates, first.failed) == (4, 0, [])
    again = await runner.process(msgs)  # the same batch, as after a crash between commit and ack
    assert (again.applied, again.duplicates, again.failed) == (0, 4, [])
    assert await _applied(pool) == [("a", 1), ("b", 1), ("c", 1), ("x@y.z", 1)]
    assert await pool.fetchval("SELECT count(*) FROM cdp_outbox") == 1  # no second outgoing event


async def test_a_reset_consumer_reads_everything_again_without_effect(ctx):
    bus, pool = ctx
    await _publish(bus, _tracks("a", "b", "c"))
    runner = ConsumerRunner(bus, pool, Counter(), fetch_timeout_s=0.2)
    task = await _run(runner)
    await _settled(bus, last_seq=3)
    await _stop(runner, task)
    # the durable consumer is lost (e.g. recreated by an operator): JetStream delivers all again
    await bus.js.delete_consumer("CDP_INGEST", "counter")
    runner = ConsumerRunner(bus, pool, Counter())
    msgs = await _fetch(runner, 3)
    assert [m.metadata.sequence.stream for m in msgs] == [1, 2, 3]
    result = await runner.process(msgs)
    assert (result.applied, result.duplicates) == (0, 3)
    assert await _applied(pool) == [("a", 1), ("b", 1), ("c", 1)]


async def test_poison_messages_go_to_failed_events_and_the_rest_is_applied(ctx):
    bus, pool = ctx
    garbage = b"\xff\x00 not an envelope"
    wrong_type = _env(IDENTIFY, StringValue(value="not an identifier"))
    poison = _tracks("poison")[0]
    items = [
        *_tracks("ok1"),
        garbage,
        *_tracks("ok2"),
        poison,
        wrong_type,
        _env(PAGE, StringValue(value="p")),
        *_tracks("ok3"),
    ]
    acks = await _publish(bus, items)
    runner = ConsumerRunner(bus, pool, Counter(), fetch_timeout_s=0.2)
    task = await _run(runner)
    try:
        info = await _settled(bus, last_seq=acks[-1].seq)
    finally:
        await _stop(runner, task)
    # terminated, not redelivered: nothing pending, nothing redelivered
    assert info.num_ack_pending == 0 and info.num_redelivered == 0 and info.num_pending == 0
    assert info.delivered.stream_seq == acks[-1].seq
    assert await _applied(pool) == [("ok1", 1), ("ok2", 1), ("ok3", 1)]  # poison's own insert rolled back
    rows = await pool.fetch("SELECT * FROM cdp_failed_events ORDER BY stream_seq")
    assert [r["stream_seq"] for r in rows] == [acks[1].seq, acks[3].seq, acks[4].seq]
    g, p, w = rows
    assert g["consumer"] == "counter" and g["stream"] == "CDP_INGEST" and g["subject"] == TRACK
    assert bytes(g["data"]) == garbage and g["event_id"] is None
    assert "Envelope" in g["reason"] or "event_id" in g["reason"]
    assert bytes(p["data"]) == poison.SerializeToString()
    assert p["event_id"] == poison.event_id
    assert p["reason"] == "ValueError: cannot count poison"
    assert w["event_id"] == wrong_type.event_id and w["reason"].startswith("PoisonMessage:")
    assert "cdp.common.v1.Identifier" in w["reason"]
    # every message, failed or ignored, is tracked
    assert await pool.fetchval("SELECT count(*) FROM cdp_tracking") == len(items)


async def test_poison_result_of_one_batch(ctx):
    bus, pool = ctx
    await _publish(bus, [*_tracks("ok1"), b"junk", *_tracks("poison", "ok2"), _env(PAGE, StringValue(value="p"))])
    runner = ConsumerRunner(bus, pool, Counter())
    msgs = await _fetch(runner, 5)
    terminated: list[int] = []

    async def on_term(msg):
        terminated.append(json.loads(msg.data)["stream_seq"])

    sub = await bus.nc.subscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.CDP_INGEST.counter", cb=on_term)
    await bus.nc.flush()
    try:
        result = await runner.process(msgs)
        assert (result.applied, result.ignored, result.duplicates) == (2, 1, 0)
        assert [m.metadata.sequence.stream for m, _ in result.failed] == [2, 3]
        assert result.failed[1][1] == "ValueError: cannot count poison"

        async def both_terminated():
            return sorted(terminated) == [2, 3]

        await eventually(both_terminated)  # terminated, not acked or nak'd
        await _settled(bus, last_seq=5)
    finally:
        await sub.unsubscribe()


async def test_outbox_rows_of_a_poison_message_roll_back_with_its_savepoint(ctx):
    bus, pool = ctx
    good1, bad, good2 = (_env(IDENTIFY, Identifier(type="email", value=v)) for v in ("g1", "bad", "g2"))
    await _publish(bus, [good1, bad, good2])
    runner = ConsumerRunner(bus, pool, Counter())
    result = await runner.process(await _fetch(runner, 3))
    assert result.applied == 2 and len(result.failed) == 1
    outbox = await pool.fetch("SELECT subject, msg_id, data FROM cdp_outbox ORDER BY id")
    assert [r["msg_id"] for r in outbox] == [envelope.derived_id(e.event_id, "resolved") for e in (good1, good2)]
    resolved = envelope.decode(bytes(outbox[0]["data"]))
    assert resolved.causation_id == good1.event_id and resolved.correlation_id == good1.event_id
    assert await _applied(pool) == [("g1", 1), ("g2", 1)]
    assert await pool.fetchval("SELECT event_id FROM cdp_failed_events") == bad.event_id


async def test_a_transient_error_rolls_back_the_batch_and_it_is_applied_later(ctx):
    bus, pool = ctx
    await _publish(bus, _tracks("before", "retry", "after"))
    proj = Counter()
    proj.retries_left = 1
    runner = ConsumerRunner(bus, pool, proj, retry_delay_s=0.2)
    msgs = await _fetch(runner, 3)
    result = await runner.process(msgs)
    assert (result.applied, result.failed) == (0, [])
    # nothing of the batch took effect: no rows, no tracking, no failed events
    assert await _applied(pool) == []
    assert await pool.fetchval("SELECT count(*) FROM cdp_tracking") == 0
    assert await pool.fetchval("SELECT count(*) FROM cdp_failed_events") == 0
    # the batch is redelivered (after the nak delay) and applied
    again = await _fetch(runner, 3)
    assert [m.metadata.num_delivered for m in again] == [2, 2, 2]
    result = await runner.process(again)
    assert result.applied == 3
    assert await _applied(pool) == [("after", 1), ("before", 1), ("retry", 1)]
    assert proj.attempts == {"before": 2, "retry": 2, "after": 1}
    await _settled(bus, last_seq=3)


async def test_a_transient_error_in_the_run_loop_is_retried(ctx):
    bus, pool = ctx
    await _publish(bus, _tracks("a", "retry", "b"))
    proj = Counter()
    proj.retries_left = 2
    runner = ConsumerRunner(bus, pool, proj, fetch_timeout_s=0.2, retry_delay_s=0.1)
    task = await _run(runner)
    try:
        await _settled(bus, last_seq=3)
    finally:
        await _stop(runner, task)
    assert proj.retries_left == 0 and proj.attempts["retry"] == 3
    assert await _applied(pool) == [("a", 1), ("b", 1), ("retry", 1)]
    assert await pool.fetchval("SELECT count(*) FROM cdp_failed_events") == 0


async def test_stop_lets_the_in_flight_batch_finish(ctx):
    bus, pool = ctx
    proj = Counter()
    proj.release.clear()
    runner = ConsumerRunner(bus, pool, proj, fetch_timeout_s=0.2)
    task = await _run(runner)
    try:
        await _publish(bus, _tracks("first", "slow", "last"))
        await asyncio.wait_for(proj.entered.wait(), 10)
        runner.stop()
        done, _ = await asyncio.wait([task], timeout=0.3)
        assert not done  # still inside the batch
        proj.release.set()
        await asyncio.wait_for(task, 10)  # the batch finishes and run returns
    finally:
        proj.release.set()
        runner.stop()
    applied = await _applied(pool)
    assert ("first", 1) in applied and ("slow", 1) in applied  # the batch in flight finished
    # stopped: a new message is not consumed (a batch fetched ahead was given back, not applied)
    await _publish(bus, _tracks("later"))
    await asyncio.sleep(0.3)
    assert await _applied(pool) == applied
    # the next runner applies what is left, each message once
    again = ConsumerRunner(bus, pool, proj, fetch_timeout_s=0.2)
    task = await _run(again)
    try:
        await _settled(bus, last_seq=4)
    finally:
        again.stop()
        await asyncio.wait_for(task, 10)
    assert await _applied(pool) == [("first", 1), ("last", 1), ("later", 1), ("slow", 1)]


class Sessions(Counter):
    """Counts, and notes whether its connection is the one an earlier batch used (a session
    setting that the pool's reset would clear survives)."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[bool] = []

    @handles(TRACK)
    async def on_track(self, conn, d, outbox):
        self.kept.append(await conn.fetchval("SELECT current_setting('application_name')") == "held")
        await conn.execute("SET application_name = 'held'")
        await super().on_track(conn, d, outbox)


async def test_a_running_runner_keeps_its_connection_and_hands_its_outbox_rows_to_the_relay(ctx):
    from cdp_core.outbox import OutboxRelay

    bus, pool = ctx
    await bus.ensure_stream("identity")
    relay = OutboxRelay(pool, bus, poll_interval_s=30)  # only a hand-off publishes in time
    relay_task = asyncio.create_task(relay.run())
    proj = Sessions()
    runner = ConsumerRunner(bus, pool, proj, fetch_timeout_s=0.2, relay=relay)
    task = await _run(runner)
    try:
        await asyncio.sleep(0.2)  # the relay's start-up read of the table is done
        for value in ("a", "b", "c"):  # one batch each
            await _publish(bus, _tracks(value))
            await _settled(bus, last_seq=len(proj.kept) + 1)
        await _publish(bus, [_env(IDENTIFY, Identifier(type="email", value="x@example.com"))])

        async def relayed():
            return (await bus.js.stream_info("CDP_IDENTITY")).state.messages == 1 and not await pool.fetchval(
                "SELECT count(*) FROM cdp_outbox")

        await eventually(relayed, timeout=10)
    finally:
        await _stop(runner, task)
        relay.stop()
        await asyncio.wait_for(relay_task, 10)
    assert proj.kept == [False, True, True]  # one connection, never reset between batches
    # stopped: the connection is back in the pool, which resets it
    assert await pool.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'held'") == 0
