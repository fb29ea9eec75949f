"""The transactional outbox and its relay.

A projection writes its outgoing events with `OutboxWriter` inside its transaction;
`OutboxRelay` publishes committed rows in batches (awaiting JetStream acks) and deletes
them. Event ids are deterministic, so a row re-published after a crash between publish
and delete is a duplicate JetStream drops (Nats-Msg-Id) and consumers skip.

Two ways rows reach the relay. A consumer runner hands its batch's rows to the relay of
its own process once the transaction has committed (`OutboxWriter.flush(hand_off=True)`,
`OutboxRelay.hand_off`): they are published from memory at once and deleted by id, with no
NOTIFY and no read back. Everything else (gRPC commands, jobs, rows a failed hand-off left,
rows of a process that died) is found by reading the table: on NOTIFY, which `flush`
sends, and every `poll_interval_s`.
"""

from __future__ import annotations

import asyncio
import json

import asyncpg
import nats.errors
from opentelemetry import context as otel_context

from .bus import Bus, Outgoing
from .envelope import Envelope
from .logs import get_logger
from .telemetry import inject_headers

log = get_logger(__name__)
NOTIFY_CHANNEL = "cdp_outbox"


class OutboxWriter:
    """Buffers outgoing envelopes of one transaction; `flush` writes them.

    `discard`: a rebuild's writer (cdp_core.replay): what it would publish is history, so
    nothing is kept. A projection may test `discarding` to skip building such events at all."""

    def __init__(self, *, discard: bool = False) -> None:
        self.pending: list[tuple[str, str, bytes, str]] = []
        self.discarding = discard
        self._trace: tuple[object, str] | None = None  # (OpenTelemetry context, its headers as JSON)
        self.written: list[tuple[int, Outgoing]] = []  # flush(hand_off=True): (row id, message), for the relay

    def add(self, env: Envelope) -> None:
        if self.discarding:
            return
        self.pending.append((env.type, env.event_id, env.SerializeToString(), self._headers()))

    def _headers(self) -> str:
        """The trace headers of the current context, encoded once per context (a batch's
        events are added under one span)."""
        ctx = otel_context.get_current()
        if self._trace is None or self._trace[0] is not ctx:
            self._trace = (ctx, json.dumps(inject_headers()))
        return self._trace[1]

    def mark(self) -> int:
        return len(self.pending)

    def rollback_to(self, mark: int) -> None:
        del self.pending[mark:]

    async def flush(self, conn: asyncpg.Connection, *, hand_off: bool = False) -> int:
        """Writes the pending rows in the caller's transaction. `hand_off`: the caller gives
        them to its process's relay after the commit (`written`, `OutboxRelay.hand_off`), so
        no relay is notified; otherwise every relay is (NOTIFY at commit)."""
        if not self.pending:
            return 0
        rows = self.pending
        if hand_off:
            ids = await conn.fetch(
                "INSERT INTO cdp_outbox (subject, msg_id, data, headers) "
                "SELECT s, m, d, h::jsonb FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[]) AS x(s, m, d, h) "
                "RETURNING id", *(list(c) for c in zip(*rows, strict=True)))
            headers: dict[str, dict] = {}
            self.written.extend(
                (r[0], Outgoing(s, d, m, headers[h] if h in headers else headers.setdefault(h, json.loads(h))))
                for r, (s, m, d, h) in zip(ids, rows, strict=True))
        else:
            await conn.copy_records_to_table(
                "cdp_outbox", records=rows, columns=["subject", "msg_id", "data", "headers"]
            )
            await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
        self.pending = []
        return len(rows)


class OutboxRelay:
    """Publishes committed outbox rows. Several replicas may run: SKIP LOCKED shares rows."""

    def __init__(self, pool: asyncpg.Pool, bus: Bus, *, batch_size: int = 1000, poll_interval_s: float = 1.0):
        self.pool, self.bus = pool, bus
        self.batch_size, self.poll_interval_s = batch_size, poll_interval_s
        self._wake = asyncio.Event()
        self._stopping = False
        self.published = 0
        self._handed: list[tuple[int, Outgoing]] = []  # committed rows handed over, not yet published
        self._notified = False

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def hand_off(self, written: list[tuple[int, Outgoing]]) -> None:
        """Committed rows of this process (`OutboxWriter.written`): published next, from memory."""
        if written:
            self._handed.extend(written)
            self._wake.set()

    async def run(self) -> None:
        listener = await self.pool.acquire()

        def notified(*_) -> None:
            self._notified = True
            self._wake.set()

        await listener.add_listener(NOTIFY_CHANNEL, notified)
        loop = asyncio.get_running_loop()
        read = True  # the table is read at start, on NOTIFY, after a full read, and every poll_interval_s
        last_read = loop.time()
        try:
            while True:
                stopping = self._stopping  # seen before the read: that read drains all committed before stop()
                self._wake.clear()  # before reading: a NOTIFY during the read must wake the next wait
                if self._handed:
                    await self.relay_handed()
                    if loop.time() - last_read < self.poll_interval_s:
                        continue
                    read = True  # hand-offs back to back: the table is read all the same, every poll_interval_s
                if read or stopping or self._notified:
                    self._notified = False
                    last_read = loop.time()
                    try:
                        n = await self.relay_once()
                    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                        log.warning("outbox relay retrying", error=type(e).__name__, detail=str(e)[:200])
                        await asyncio.sleep(self.poll_interval_s)
                        continue
                    read = n == self.batch_size
                    if read:
                        continue  # more waiting
                if stopping:
                    return  # drained
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
                except TimeoutError:
                    read = True
        finally:
            await listener.remove_listener(NOTIFY_CHANNEL, notified)
            await self.pool.release(listener)

    async def relay_handed(self) -> int:
        """Publishes the rows handed over, then deletes them (a failure leaves them to the
        table reads, which find them on the next poll)."""
        batch, self._handed = self._handed[:self.batch_size], self._handed[self.batch_size:]
        try:
            await self.bus.publish_batch([m for _, m in batch])
            async with self.pool.acquire() as conn:
                await conn.execute("DELETE FROM cdp_outbox WHERE id = ANY($1::bigint[])", [i for i, _ in batch])
        except (TimeoutError, OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError,
                nats.errors.Error) as e:
            log.warning("outbox hand-off not relayed; left to the table reads", error=type(e).__name__,
                        detail=str(e)[:200], rows=len(batch))
            return 0
        self.published += len(batch)
        return len(batch)

    async def relay_once(self) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, subject, msg_id, data, headers FROM cdp_outbox WHERE id <> ALL($2::bigint[]) "
                "ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                self.batch_size, [i for i, _ in self._handed],  # those handed over are published from memory
            )
            if not rows:
                return 0
            await self.bus.publish_batch(
                [Outgoing(r["subject"], bytes(r["data"]), r["msg_id"], json.loads(r["headers"])) for r in rows]
            )
            await conn.execute("DELETE FROM cdp_outbox WHERE id = ANY($1::bigint[])", [r["id"] for r in rows])
        self.published += len(rows)
        return len(rows)
