"""The transactional outbox and its relay.

A projection writes its outgoing events with `OutboxWriter` inside its transaction;
`OutboxRelay` publishes committed rows in batches (awaiting JetStream acks) and deletes
them. Event ids are deterministic, so a row re-published after a crash between publish
and delete is a duplicate JetStream drops (Nats-Msg-Id) and consumers skip.
"""

from __future__ import annotations

import asyncio
import json

import asyncpg
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

    async def flush(self, conn: asyncpg.Connection) -> int:
        if not self.pending:
            return 0
        await conn.copy_records_to_table(
            "cdp_outbox", records=self.pending, columns=["subject", "msg_id", "data", "headers"]
        )
        await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
        n = len(self.pending)
        self.pending = []
        return n


class OutboxRelay:
    """Publishes committed outbox rows. Several replicas may run: SKIP LOCKED shares rows."""

    def __init__(self, pool: asyncpg.Pool, bus: Bus, *, batch_size: int = 1000, poll_interval_s: float = 1.0):
        self.pool, self.bus = pool, bus
        self.batch_size, self.poll_interval_s = batch_size, poll_interval_s
        self._wake = asyncio.Event()
        self._stopping = False
        self.published = 0

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        listener = await self.pool.acquire()
        wake = lambda *_: self._wake.set()  # noqa: E731
        await listener.add_listener(NOTIFY_CHANNEL, wake)
        try:
            while True:
                stopping = self._stopping  # seen before the read: that read drains all committed before stop()
                self._wake.clear()  # before reading: a NOTIFY during the read must wake the next wait
                try:
                    n = await self.relay_once()
                except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                    log.warning("outbox relay retrying", error=type(e).__name__, detail=str(e)[:200])
                    await asyncio.sleep(self.poll_interval_s)
                    continue
                if n == self.batch_size:
                    continue  # more waiting
                if stopping:
                    return  # drained
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
                except TimeoutError:
                    pass
        finally:
            await listener.remove_listener(NOTIFY_CHANNEL, wake)
            await self.pool.release(listener)

    async def relay_once(self) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, subject, msg_id, data, headers FROM cdp_outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                self.batch_size,
            )
            if not rows:
                return 0
            await self.bus.publish_batch(
                [Outgoing(r["subject"], bytes(r["data"]), r["msg_id"], json.loads(r["headers"])) for r in rows]
            )
            await conn.execute("DELETE FROM cdp_outbox WHERE id = ANY($1::bigint[])", [r["id"] for r in rows])
        self.published += len(rows)
        return len(rows)
