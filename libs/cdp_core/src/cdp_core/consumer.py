"""The consumer pattern of DESIGN.md, written once.

A service gives a `Projection` (handlers per event type); `ConsumerRunner` does the rest:

1. pull a batch from a durable pull consumer;
2. in ONE PostgreSQL transaction: insert a tracking row per message (consumer name,
   stream sequence), skipping messages already tracked; apply the projection's handler to
   each new message; write outgoing events to the outbox; record unprocessable messages
   in cdp_failed_events;
3. commit, then ack each message (explicit acks: replicas share the durable consumer),
   and `term` the failed ones so they are not redelivered; the batch's acks and terms are
   written to NATS as one command (`Bus.settle`), and batches are pulled with `Bus.fetch`.

Guarantees: a crash anywhere before the commit rolls everything back and the messages
are redelivered; a crash after the commit but before the ack redelivers messages whose
tracking rows make them no-ops. So every message takes effect exactly once.

A handler raising a transient error (connection lost, serialization failure, deadlock,
`Retry`) makes the whole batch roll back and be redelivered after a delay. Any other
exception marks the message as poison: the batch is re-applied with a savepoint per
message so the others still commit, and the poison message goes to failed events with
the reason and its original bytes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg
import nats.errors
from google.protobuf.message import Message
from nats.aio.msg import Msg
from opentelemetry import trace

from . import envelope as envelope_mod
from .bus import Bus, stream_name
from .errors import PoisonMessage
from .logs import get_logger
from .outbox import OutboxRelay, OutboxWriter
from .telemetry import extract_context, tracer

log = get_logger(__name__)
MAX_SPAN_LINKS = 128  # a batch span links to the traces of its first messages


class Retry(Exception):
    """Raised by a handler that cannot proceed yet: the batch is redelivered later."""


TRANSIENT = (
    Retry,
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.TooManyConnectionsError,
    asyncpg.CannotConnectNowError,
    asyncpg.LockNotAvailableError,
)


@dataclass
class Delivery:
    """One message as a handler sees it."""

    envelope: envelope_mod.Envelope
    subject: str
    stream_seq: int
    headers: dict[str, str]
    rejection: str | None = None
    _parsed: Message | None = field(default=None, repr=False, compare=False)  # the payload, parsed once

    def reject(self, reason: str) -> None:
        """Keeps this message in failed events with the reason (`cdp failed list|replay`)
        instead of applying it; the rest of the batch is applied."""
        self.rejection = reason

    def payload(self, cls: type[Message]) -> Message:
        p = self._parsed
        if type(p) is not cls:
            p = self._parsed = envelope_mod.unpack(self.envelope, cls)
        return p




def handles(*event_types: str, batch: bool = False):
    """Marks a Projection method as the handler of these event types (subjects).

    A batch handler gets a list of consecutive deliveries of its types, in log order,
    and can apply them with set-based SQL; a plain one gets one delivery at a time.
    """

    def mark(fn):
        fn._cdp_handles = event_types
        fn._cdp_batch = batch
        return fn

    return mark


class Projection:
    """A named reader of one stream. Subclasses set `name`, `source` (the producing
    service) and `subjects`, and mark handler methods with @handles("cdp.x.y")."""

    name: str = ""
    source: str = ""
    subjects: list[str] = []
    # Messages fetched and applied per transaction (CDP_CONSUMER_BATCH_SIZE overrides it):
    # larger batches spread each batch's fixed cost (statements, round trips) thinner.
    batch_size: int = 256

    def __init__(self) -> None:
        self._handlers: dict[str, tuple[Callable, bool]] = {}
        for attr in dir(type(self)):
            fn = getattr(type(self), attr)
            for t in getattr(fn, "_cdp_handles", ()):
                self._handlers[t] = (getattr(self, attr), fn._cdp_batch)

    @property
    def event_types(self) -> list[str]:
        return sorted(self._handlers)

    async def handle_batch(self, conn: asyncpg.Connection, ds: list[Delivery], outbox: OutboxWriter) -> int:
        """Applies the deliveries in order; returns how many had a handler (the others are
        tracked and skipped). Consecutive deliveries for one batch handler go to it together."""
        await self.before_batch(conn, ds)
        handled = i = 0
        while i < len(ds):
            h, is_batch = self._handlers.get(ds[i].envelope.type, (None, False))
            if h is None:
                i += 1
                continue
            if not is_batch:
                await h(conn, ds[i], outbox)
                handled, i = handled + 1, i + 1
                continue
            j = i + 1
            while j < len(ds) and self._handlers.get(ds[j].envelope.type, (None, False))[0] == h:
                j += 1
            await h(conn, ds[i:j], outbox)
            handled, i = handled + j - i, j
        return handled

    async def before_batch(self, conn: asyncpg.Connection, ds: list[Delivery]) -> None:
        """Called in the batch's transaction before its handlers: a projection whose handlers
        lock rows or advisory keys takes every lock the batch needs here, at once and in
        order (cdp_core.locks), so that a batch mixing several handlers does not lock in
        rounds, which can deadlock with another consumer of the same store."""

    async def handle(self, conn: asyncpg.Connection, d: Delivery, outbox: OutboxWriter) -> bool:
        """Applies one message; False when no handler takes its type (tracked, skipped)."""
        return await self.handle_batch(conn, [d], outbox) == 1

    async def stopped(self, pool: asyncpg.Pool) -> None:
        """Called when a runner of this projection stops (shutdown, a pause, the end of a
        rebuild): a projection that holds anything in memory to write later writes it here."""


@dataclass
class BatchResult:
    applied: int = 0
    duplicates: int = 0
    ignored: int = 0
    failed: list[tuple[Msg, str]] = field(default_factory=list)


class ConsumerRunner:
    def __init__(self, bus: Bus, pool: asyncpg.Pool, projection: Projection, *, batch_size: int = 256,
                 fetch_timeout_s: float = 1.0, retry_delay_s: float = 1.0, durable: str | None = None,
                 discard_outbox: bool = False, relay: OutboxRelay | None = None):
        """`durable`: the JetStream consumer to read with (default: the projection's name; a
        rebuild reads the log again with its own). Tracking rows are always the projection's.
        `discard_outbox`: a rebuild's runner, whose outgoing events are history (never written).
        `relay`: the process's outbox relay, handed each batch's rows once committed.

        The runner keeps one connection of `pool` while `run` runs (given back, and taken anew,
        after a batch that failed), so a batch pays no acquire and no reset."""
        if not projection.name or not projection.source:
            raise ValueError("a Projection needs a name and a source")
        self.bus, self.pool, self.p = bus, pool, projection
        self.durable = durable or projection.name
        self.stream = stream_name(projection.source)
        self.batch_size, self.fetch_timeout_s, self.retry_delay_s = batch_size, fetch_timeout_s, retry_delay_s
        self.discard_outbox = discard_outbox
        self.relay = relay
        self._conn: asyncpg.Connection | None = None
        self._holding = False  # while `run` runs
        self._stopping = asyncio.Event()
        self.processed = 0
        self.batches = 0

    def stop(self) -> None:
        """Stop pulling; the batch in flight finishes and `run` returns."""
        self._stopping.set()

    async def declare(self) -> None:
        subjects = self.p.subjects or [f"cdp.{self.p.source}.>"]
        await self.bus.ensure_consumer(self.stream, self.durable, subjects)

    async def run(self) -> None:
        """Fetch, apply, ack, in log order. The next batch is fetched while the current one is
        applied (its transaction and acks), so the database and NATS round trips overlap; the
        batches are still applied one after the other. On stop, a batch fetched ahead is
        nak'ed (redelivered at once to whoever consumes next)."""
        await self.declare()
        sub = await self.bus.js.pull_subscribe_bind(self.durable, self.stream)
        ahead: asyncio.Task | None = None
        self._holding = True
        try:
            while not self._stopping.is_set():
                task, ahead = ahead or asyncio.create_task(self._fetch(sub)), None
                msgs = await task
                if msgs is None:
                    return
                if msgs and not self._stopping.is_set():
                    ahead = asyncio.create_task(self._fetch(sub))
                    await self.process(msgs)
                elif msgs:
                    await self._give_back(msgs)
        finally:
            if ahead is not None:
                msgs = await ahead
                if msgs:
                    await self._give_back(msgs)
            try:
                await sub.unsubscribe()
            except Exception:  # connection already closing
                pass
            self._holding = False
            await self._drop_connection()
            try:
                await self.p.stopped(self.pool)
            except Exception as e:
                if self.discard_outbox:
                    raise  # a rebuild missing what its projection held must not be swapped in
                # live: what it would have written is computed again from the log when needed
                log.warning("projection could not write back on stop", consumer=self.p.name, error=repr(e)[:200])

    async def _fetch(self, sub) -> list[Msg] | None:
        """The next messages ([] when none came in time); None when the connection is closed."""
        try:
            return await self.bus.fetch(sub, self.batch_size, self.fetch_timeout_s)
        except nats.errors.ConnectionClosedError:
            return None
        except (nats.errors.Error, OSError) as e:
            log.warning("fetch failed; retrying", consumer=self.p.name, error=type(e).__name__)
            await asyncio.sleep(self.retry_delay_s)
            return []

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await self.pool.acquire()
        return self._conn

    async def _drop_connection(self) -> None:
        """Gives the connection back to the pool (which resets it, or drops it if broken)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await self.pool.release(conn)

    async def _give_back(self, msgs: list[Msg]) -> None:
        for m in msgs:
            await _quietly(m.nak())

    async def replay(self, conn: asyncpg.Connection, row: asyncpg.Record) -> None:
        """Applies a failed message again, after a fix, in the caller's transaction (see
        cdp_core.failed, which marks it replayed in the same transaction)."""
        headers = row["headers"]
        d = Delivery(envelope_mod.decode(bytes(row["data"])), row["subject"], row["stream_seq"],
                     json.loads(headers) if isinstance(headers, str) else dict(headers or {}))
        outbox = OutboxWriter()
        if not await self.p.handle(conn, d, outbox):
            raise ValueError(f"{self.p.name} has no handler for {d.envelope.type}")
        if d.rejection is not None:
            raise ValueError(d.rejection)
        await outbox.flush(conn)

    async def process(self, msgs: list[Msg]) -> BatchResult:
        started = time.perf_counter()
        seqs = [m.metadata.sequence.stream for m in msgs]
        with tracer().start_as_current_span(
            f"consume {self.p.name}", attributes={"cdp.consumer": self.p.name, "cdp.batch_size": len(msgs)}
        ):
            try:
                try:
                    result = await self._apply(msgs, isolate=False)
                except TRANSIENT:
                    raise
                except Exception:  # a poison message somewhere: find it, keep the rest
                    result = await self._apply(msgs, isolate=True)
            except TRANSIENT as e:
                log.warning("batch will be redelivered", consumer=self.p.name, error=type(e).__name__,
                            detail=str(e)[:200], first_seq=seqs[0], last_seq=seqs[-1])
                for m in msgs:
                    await _quietly(m.nak(delay=self.retry_delay_s))
                return BatchResult()
            failed_ids = {id(m) for m, _ in result.failed}
            await _quietly(self.bus.settle([m for m in msgs if id(m) not in failed_ids],
                                           [m for m, _ in result.failed]))
        self.processed += len(msgs)
        self.batches += 1
        log.info(
            "batch consumed",
            consumer=self.p.name,
            messages=len(msgs),
            applied=result.applied,
            duplicates=result.duplicates,
            ignored=result.ignored,
            failed=len(result.failed),
            first_seq=seqs[0],
            last_seq=seqs[-1],
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return result

    async def _apply(self, msgs: list[Msg], *, isolate: bool) -> BatchResult:
        result = BatchResult()
        outbox = OutboxWriter(discard=self.discard_outbox)
        failures: list[tuple[Msg, str, str | None]] = []
        if self._holding:
            try:
                await self._apply_in(await self._connection(), msgs, isolate, result, outbox, failures)
            except BaseException:
                await self._drop_connection()
                raise
        else:  # a batch applied outside `run` (tests, tools): a connection for the batch alone
            async with self.pool.acquire() as conn:
                await self._apply_in(conn, msgs, isolate, result, outbox, failures)
        if self.relay is not None:
            self.relay.hand_off(outbox.written)
        result.failed = [(m, reason) for m, reason, _ in failures]
        return result

    async def _apply_in(self, conn: asyncpg.Connection, msgs: list[Msg], isolate: bool, result: BatchResult,
                        outbox: OutboxWriter, failures: list[tuple[Msg, str, str | None]]) -> None:
        async with conn.transaction():
            new = {
                r[0]
                for r in await conn.fetch(
                    "INSERT INTO cdp_tracking (consumer, stream_seq) SELECT $1, unnest($2::bigint[]) "
                    "ON CONFLICT DO NOTHING RETURNING stream_seq",
                    self.p.name,
                    [m.metadata.sequence.stream for m in msgs],
                )
            }
            todo: list[tuple[Msg, Delivery]] = []
            for m in msgs:
                if m.metadata.sequence.stream not in new:
                    result.duplicates += 1
                    continue
                try:
                    d = Delivery(envelope_mod.decode(m.data), m.subject, m.metadata.sequence.stream, dict(m.headers or {}))
                except PoisonMessage as e:
                    failures.append((m, str(e), None))
                    continue
                todo.append((m, d))
            if not isolate:
                links = [trace.Link(trace.get_current_span(extract_context(d.headers)).get_span_context())
                         for _, d in todo[:MAX_SPAN_LINKS]]
                with tracer().start_as_current_span(f"apply {self.p.name}", links=links,
                                                    attributes={"cdp.messages": len(todo)}):
                    result.applied = await self.p.handle_batch(conn, [d for _, d in todo], outbox)
                result.ignored = len(todo) - result.applied
                for m, d in todo:
                    if d.rejection is not None:  # handled, but kept in failed events: not applied
                        failures.append((m, d.rejection[:2000], d.envelope.event_id))
                        result.applied -= 1
            else:
                for m, d in todo:
                    mark = outbox.mark()
                    with tracer().start_as_current_span(
                        f"handle {d.envelope.type}",
                        context=extract_context(d.headers),
                        kind=trace.SpanKind.CONSUMER,
                        attributes={"cdp.event_id": d.envelope.event_id, "cdp.stream_seq": d.stream_seq},
                    ):
                        try:
                            async with conn.transaction():
                                handled = await self.p.handle(conn, d, outbox)
                        except TRANSIENT:
                            raise
                        except Exception as e:
                            outbox.rollback_to(mark)
                            failures.append((m, f"{type(e).__name__}: {e}"[:2000], d.envelope.event_id))
                            log.error("message failed", consumer=self.p.name, stream_seq=d.stream_seq,
                                      event_type=d.envelope.type, error=type(e).__name__)
                            continue
                    if d.rejection is not None:
                        failures.append((m, d.rejection[:2000], d.envelope.event_id))
                    elif handled:
                        result.applied += 1
                    else:
                        result.ignored += 1
            if failures:
                await conn.executemany(
                    "INSERT INTO cdp_failed_events (consumer, stream, stream_seq, subject, event_id, reason, data, headers)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb) ON CONFLICT (consumer, stream_seq) DO NOTHING",
                    [
                        (self.p.name, self.stream, m.metadata.sequence.stream, m.subject, eid, reason, m.data,
                         _json(m.headers))
                        for m, reason, eid in failures
                    ],
                )
            await outbox.flush(conn, hand_off=self.relay is not None)


def _json(headers) -> str:
    return json.dumps(dict(headers or {}))


async def _quietly(aw) -> None:
    try:
        await aw
    except (nats.errors.Error, OSError) as e:  # the ack is lost: the message is redelivered, tracking skips it
        log.warning("ack failed", error=type(e).__name__)
