"""Rebuilding a service's projection from the log while it keeps serving (`cdp replay <service>`).

1. A fresh schema `cdp_replay` gets the core and service migrations; the tables that hold
   what operators set rather than what the log says (`ServiceSpec.replay_keeps`: identity's
   rules, splits and forget tombstones, profile's trait definitions) are copied into it.
2. Each projection reads its source stream again from sequence 1 through its own durable
   consumer (`<name>_replay`) into those tables; its tracking rows carry the projection's
   name, so after the swap the live consumer skips what the rebuild applied. What the
   rebuild would publish is history: its outbox writer keeps nothing (`discard_outbox`).
3. When the rebuild has caught up, the live consumers and the outbox relay are paused, the
   rebuild catches up with the last messages, the live outbox rows not yet published and
   the failed events are carried over, and, in one transaction, `public` becomes
   `cdp_previous` and `cdp_replay` becomes `public`. The pool's connections are renewed
   (their cached statements name the old tables), the live consumers and the relay start
   again, and the previous tables are dropped. Reads are served throughout; they see the
   old tables until the swap and the new ones after it.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import asyncpg
import structlog

from cdp.common.v1 import replay_pb2, replay_pb2_grpc

from .consumer import ConsumerRunner
from .errors import FailedPrecondition
from .store import CORE_MIGRATIONS, migrate

if TYPE_CHECKING:
    from .service import Service

log = structlog.get_logger("cdp.replay")
SCHEMA = "cdp_replay"
PREVIOUS = "cdp_previous"
POLL_S = 0.2


class Replay:
    """The state of the last rebuild of one service (one at a time)."""

    def __init__(self, service: Service):
        self.service = service
        self.state = "idle"
        self.started_at: datetime | None = None
        self.finished_at: datetime | None = None
        self.error = ""
        self.pending = 0
        self.paused_s = 0.0
        self.runners: list[ConsumerRunner] = []
        self.task: asyncio.Task | None = None

    @property
    def applied(self) -> int:
        return sum(r.processed for r in self.runners)

    def start(self) -> None:
        if self.state in ("replaying", "swapping"):
            raise FailedPrecondition(f"a replay is already {self.state}", field="service")
        if not self.service.runners:
            raise FailedPrecondition("this service reads no stream: nothing to replay", field="service")
        self.state, self.error, self.runners, self.paused_s = "replaying", "", [], 0.0
        self.started_at, self.finished_at = datetime.now(UTC), None
        self.task = asyncio.create_task(self._run(), name="replay")

    async def _run(self) -> None:
        try:
            await self._rebuild()
            self.state = "done"
        except Exception as e:  # reported in the status; the live tables are untouched unless swapped
            log.error("replay failed", error=repr(e)[:500])
            self.state, self.error = "failed", f"{type(e).__name__}: {e}"[:2000]
        finally:
            self.finished_at = datetime.now(UTC)

    async def _rebuild(self) -> None:
        svc = self.service
        rt, spec = svc.runtime, svc.spec
        async with rt.pool.acquire() as conn:
            await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}")
        pool = await asyncpg.create_pool(svc.settings.database_url, min_size=1, max_size=4, command_timeout=600,
                                         server_settings={"search_path": SCHEMA})
        try:
            await migrate(pool, "cdp_core", CORE_MIGRATIONS)
            if spec.migrations is not None:
                await migrate(pool, spec.name, spec.migrations)
            async with pool.acquire() as conn:
                for table in spec.replay_keeps:
                    await conn.execute(f"INSERT INTO {SCHEMA}.{table} SELECT * FROM public.{table}")
            projections = spec.projections(rt)
            for p in projections:
                durable = f"{p.name}_replay"
                await _delete_consumer(rt.bus, p, durable)
                size = int(svc.settings.option("CDP_CONSUMER_BATCH_SIZE", str(p.batch_size)))
                runner = ConsumerRunner(rt.bus, pool, p, batch_size=size, durable=durable, discard_outbox=True)
                await runner.declare()
                self.runners.append(runner)
            tasks = [asyncio.create_task(r.run(), name=f"replay-{r.p.name}") for r in self.runners]
            try:
                await self._caught_up(tasks)
                self.state = "swapping"
                paused = time.perf_counter()
                await svc.pause_consumers()
                try:
                    await self._caught_up(tasks)
                    for r in self.runners:
                        r.stop()
                    await asyncio.gather(*tasks)
                    if spec.replay_finish is not None:
                        await spec.replay_finish(pool)
                    await self._swap()
                finally:
                    await svc.resume_consumers()
                    self.paused_s = time.perf_counter() - paused
            finally:
                for r in self.runners:
                    r.stop()
                await asyncio.gather(*tasks, return_exceptions=True)
                for p in projections:
                    await _delete_consumer(rt.bus, p, f"{p.name}_replay")
        finally:
            await pool.close()
        async with rt.pool.acquire() as conn:
            await conn.execute(f"DROP SCHEMA IF EXISTS {PREVIOUS} CASCADE")
        log.info("replay done", applied=self.applied, paused_s=round(self.paused_s, 3))

    async def _caught_up(self, tasks: list[asyncio.Task]) -> None:
        """Waits until every rebuild consumer has nothing pending (all delivered and acked)."""
        js = self.service.runtime.bus.js
        while True:
            for t in tasks:
                if t.done() and t.exception() is not None:
                    raise t.exception()
            pending = 0
            for r in self.runners:
                info = await js.consumer_info(r.stream, r.durable)
                pending += info.num_pending + info.num_ack_pending
            self.pending = pending
            if pending == 0:
                return
            await asyncio.sleep(POLL_S)

    async def _swap(self) -> None:
        pool = self.service.runtime.pool
        async with pool.acquire() as conn, conn.transaction():
            # the rebuild's outbox is history (not published again) and its failed events are
            # found again: both tables become the live ones, whose rows are not settled yet
            for table in ("cdp_outbox", "cdp_failed_events"):
                await conn.execute(f"DELETE FROM {SCHEMA}.{table}")
                await conn.execute(f"INSERT INTO {SCHEMA}.{table} SELECT * FROM public.{table}")
                await conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{SCHEMA}.{table}', 'id'), "
                    f"GREATEST((SELECT max(id) FROM {SCHEMA}.{table}), 1))")
            await conn.execute(f"DROP SCHEMA IF EXISTS {PREVIOUS} CASCADE")
            await conn.execute(f"ALTER SCHEMA public RENAME TO {PREVIOUS}")
            await conn.execute(f"ALTER SCHEMA {SCHEMA} RENAME TO public")
        await pool.expire_connections()  # cached statements name the previous tables

    def status(self) -> replay_pb2.ReplayStatus:
        s = replay_pb2.ReplayStatus(state=self.state, applied=self.applied, pending=self.pending, error=self.error,
                                    paused_seconds=round(self.paused_s, 6))
        if self.started_at:
            s.started_at.FromDatetime(self.started_at)
        if self.finished_at:
            s.finished_at.FromDatetime(self.finished_at)
        return s


async def _delete_consumer(bus, projection, durable: str) -> None:
    from nats.js.errors import NotFoundError

    from .bus import stream_name

    try:
        await bus.js.delete_consumer(stream_name(projection.source), durable)
    except NotFoundError:
        pass


class ReplayServicer(replay_pb2_grpc.ReplayServiceServicer):
    def __init__(self, replay: Replay):
        self.replay = replay

    async def StartReplay(self, request, context) -> replay_pb2.ReplayStatus:
        self.replay.start()
        return self.replay.status()

    async def GetReplayStatus(self, request, context) -> replay_pb2.ReplayStatus:
        return self.replay.status()
