"""Background work of the segment service, one task each, every step one transaction:

- time: profiles whose due time has passed (seg_due, by index) are evaluated again, so a
  window that closes moves them out (or in) without a full scan;
- backfill: a new or changed definition is evaluated over every profile in chunks, in SQL
  (sqlgen: the batch evaluator), and a deleted one lets its members exit;
- retention: events older than the retention are pruned (they are outside every window by
  then: definition.window bounds every window by the retention).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg

from cdp_core import envelope
from cdp_core.logs import get_logger
from cdp_core.outbox import OutboxWriter

from . import engine, sqlgen

log = get_logger(__name__)
DUE_BATCH = 500  # profiles evaluated again per transaction
BACKFILL_CHUNK = 500  # profiles per backfill transaction (one advisory lock each)
PRUNE_BATCH = 5000
TRANSIENT = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError, OSError, asyncpg.InterfaceError,
             asyncpg.PostgresConnectionError, TimeoutError)


async def run_due(pool: asyncpg.Pool, cache: engine.CatalogCache, limit: int = DUE_BATCH) -> int:
    """Evaluates up to `limit` profiles whose due time has passed; returns how many."""
    now = envelope.now()
    outbox = OutboxWriter()
    async with pool.acquire() as conn, conn.transaction():
        pids = [r[0] for r in await conn.fetch(
            "SELECT profile_id FROM seg_due WHERE due_at <= $1 ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            now, limit)]
        if not pids:
            return 0
        await engine.lock_profiles(conn, pids)
        cat = await cache.current(conn)
        await engine.evaluate_profiles(conn, cat, pids, envelope.now(), outbox, reason="time")
        await outbox.flush(conn)
    return len(pids)


async def enqueue_backfill(conn: asyncpg.Connection, segment_id: str, version: int) -> None:
    await conn.execute(
        "INSERT INTO seg_backfills (segment_id, version) VALUES ($1, $2) ON CONFLICT (segment_id, version) "
        "DO UPDATE SET after_id = '', done = false", segment_id, version)


async def run_backfill_step(pool: asyncpg.Pool, cache: engine.CatalogCache, chunk: int = BACKFILL_CHUNK) -> int:
    """One chunk of one pending backfill; returns the profiles it covered (0: none pending)."""
    outbox = OutboxWriter()
    async with pool.acquire() as conn, conn.transaction():
        job = await conn.fetchrow(
            "SELECT segment_id, version, after_id FROM seg_backfills WHERE NOT done ORDER BY version, segment_id "
            "LIMIT 1 FOR UPDATE SKIP LOCKED")
        if job is None:
            return 0
        sid, version, after = job["segment_id"], job["version"], job["after_id"]
        row = await conn.fetchrow("SELECT name, version, deleted_at FROM seg_segments WHERE segment_id = $1", sid)
        if row is None or (row["deleted_at"] is None and row["version"] != version):
            await conn.execute("UPDATE seg_backfills SET done = true WHERE segment_id = $1 AND version = $2", sid, version)
            return 1  # superseded by a newer version (its own backfill runs)
        if row["deleted_at"] is not None:  # members leave
            pids = [r[0] for r in await conn.fetch(
                "SELECT profile_id FROM seg_memberships WHERE segment_id = $1 AND member AND profile_id > $2 "
                "ORDER BY profile_id LIMIT $3", sid, after, chunk)]
        else:
            pids = [r[0] for r in await conn.fetch(
                "SELECT profile_id FROM seg_profiles WHERE profile_id > $1 AND merged_into IS NULL "
                "ORDER BY profile_id LIMIT $2", after, chunk)]
        await engine.lock_profiles(conn, pids)
        now = envelope.now()
        if row["deleted_at"] is not None:
            n = await exit_all(conn, sid, row["name"], version, pids, now, outbox)
        else:
            cat = await cache.current(conn)
            seg = cat.segments.get(row["name"])
            if seg is None or seg.segment_id != sid:
                await conn.execute("UPDATE seg_backfills SET done = true WHERE segment_id = $1 AND version = $2",
                                   sid, version)
                return 1
            n = await backfill_chunk(conn, cat, seg, pids, now, outbox)
        if len(pids) < chunk:
            await conn.execute("UPDATE seg_backfills SET done = true, after_id = $3 WHERE segment_id = $1 "
                               "AND version = $2", sid, version, pids[-1] if pids else after)
            if row["deleted_at"] is None:
                await conn.execute("UPDATE seg_segments SET backfilled_version = $2 WHERE segment_id = $1 "
                                   "AND version = $2", sid, version)
            log.info("backfill done", segment=row["name"], version=version)
        else:
            await conn.execute("UPDATE seg_backfills SET after_id = $3 WHERE segment_id = $1 AND version = $2",
                               sid, version, pids[-1])
        await outbox.flush(conn)
        log.debug("backfill chunk", segment=row["name"], profiles=len(pids), transitions=n)
        return max(1, len(pids))


async def backfill_chunk(conn: asyncpg.Connection, cat: engine.Catalog, seg: engine.Segment, pids: list[str], now,
                         outbox: OutboxWriter) -> int:
    """The chunk's members by the batch evaluator (SQL); transitions recorded as the stream
    records them; due times of the chunk when the definition depends on time."""
    if not pids:
        return 0
    sql, args = sqlgen.members_query(seg.compiled.tree, now, extra_where="p.profile_id = ANY($1::text[])", start=2)
    want = {r[0] for r in await conn.fetch(sql, pids, *args)}
    current = {r[0]: (r[1], r[2]) for r in await conn.fetch(
        "SELECT profile_id, member, transitions FROM seg_memberships WHERE segment_id = $1 "
        "AND profile_id = ANY($2::text[])", seg.segment_id, pids)}
    rows = []
    for pid in pids:
        member, n = current.get(pid, (False, 0))
        if (pid in want) != member:
            rows.append((pid, pid in want, n + 1))
            engine.emit(outbox, "entered" if pid in want else "exited", seg, seg.segment_id, seg.name, seg.version,
                        pid, n + 1, now, "backfill")
    await engine.write_memberships(conn, seg.segment_id, rows, now)
    if seg.time_dependent:
        states = await engine.load_states(conn, pids, cat.event_names)
        await engine.schedule(conn, cat, pids, states, now)
    return len(rows)


async def exit_all(conn: asyncpg.Connection, sid: str, name: str, version: int, pids: list[str], now,
                   outbox: OutboxWriter) -> int:
    rows = [(r[0], False, r[1] + 1) for r in await conn.fetch(
        "SELECT profile_id, transitions FROM seg_memberships WHERE segment_id = $1 AND member "
        "AND profile_id = ANY($2::text[])", sid, pids)]
    for pid, _, n in rows:
        engine.emit(outbox, "exited", None, sid, name, version, pid, n, now, "deleted")
    await engine.write_memberships(conn, sid, rows, now)
    return len(rows)


async def prune_events(pool: asyncpg.Pool, retention_days: int) -> int:
    horizon = envelope.now() - timedelta(days=retention_days)
    async with pool.acquire() as conn:
        return int((await conn.execute(
            "DELETE FROM seg_events WHERE event_id IN (SELECT event_id FROM seg_events WHERE occurred_at <= $1 "
            "LIMIT $2)", horizon, PRUNE_BATCH)).split()[-1])


class Jobs:
    """The three loops, as tasks; `stop` lets each finish its transaction."""

    def __init__(self, pool: asyncpg.Pool, cache: engine.CatalogCache, retention_days: int, interval_s: float):
        self.pool, self.cache, self.retention_days, self.interval_s = pool, cache, retention_days, interval_s
        self._stop = asyncio.Event()
        self.tasks: list[asyncio.Task] = []
        self.due_evaluated = 0

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._loop("segment-due", self._due), name="segment-due"),
                      asyncio.create_task(self._loop("segment-backfill", self._backfill), name="segment-backfill"),
                      asyncio.create_task(self._loop("segment-retention", self._prune, idle_s=60.0),
                                          name="segment-retention")]

    async def _due(self) -> int:
        n = await run_due(self.pool, self.cache)
        self.due_evaluated += n
        return n

    async def _backfill(self) -> int:
        return await run_backfill_step(self.pool, self.cache)

    async def _prune(self) -> int:
        return await prune_events(self.pool, self.retention_days)

    async def _loop(self, name: str, step, idle_s: float | None = None) -> None:
        while not self._stop.is_set():
            try:
                n = await step()
            except TRANSIENT as e:
                log.warning("background step failed; retrying", job=name, error=type(e).__name__)
                n = 0
            if n == 0:
                try:
                    await asyncio.wait_for(self._stop.wait(), idle_s or self.interval_s)
                except TimeoutError:
                    pass

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)
