"""Profiles marked for a full computation of their computed traits (`profile_dirty`).

The projection folds computed traits in its own transaction (`projection.fold_computed`,
incremental.py) and marks nothing any more; marks left by an earlier release (which
computed off the hot path) are still taken here, once: at start the recomputer takes the
marked profiles in batches, locks them as the projection does (advisory locks in a fixed
order, so it never interleaves with a batch or a merge on the same profiles), computes them
afresh from all their events (`projection.recompute`: exact, order-independent, with a fresh
incremental state), clears the marks, and ends when none is left (nothing marks any more, so
it does not poll).
"""

from __future__ import annotations

import asyncio

import asyncpg
import structlog

from .declared_store import recompute_declared
from .projection import lock_profiles, recompute

BATCH = 200  # profiles computed per transaction
INTERVAL_S = 1.0  # how long the recomputer waits after an error before trying again
log = structlog.get_logger("cdp.profile.computing")


async def recompute_marked(pool: asyncpg.Pool, batch: int = BATCH) -> int:
    """Computes up to `batch` marked profiles; returns how many marks it cleared."""
    async with pool.acquire() as conn, conn.transaction():
        ids = [r[0] for r in await conn.fetch(
            "SELECT profile_id FROM profile_dirty ORDER BY marked_at, profile_id LIMIT $1", batch)]
        if not ids:
            return 0
        canon = await lock_profiles(conn, set(ids))  # then the marks cannot change under us
        cleared = [r[0] for r in await conn.fetch(
            "DELETE FROM profile_dirty WHERE profile_id = ANY($1::text[]) RETURNING profile_id", ids)]
        live = {p for p in cleared if p not in canon}  # a profile merged away has no traits of its own
        await recompute(conn, live)
        await recompute_declared(conn, live)
        return len(cleared)


async def drain(pool: asyncpg.Pool) -> None:
    """Computes every marked profile (a rebuild does before it is swapped in)."""
    while await recompute_marked(pool):
        pass


class Recomputer:
    def __init__(self, pool: asyncpg.Pool, *, interval_s: float = INTERVAL_S):
        self.pool, self.interval_s = pool, interval_s
        self._stop = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.computed = 0

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="computed-traits")

    async def _run(self) -> None:
        """Until no mark is left (or stop)."""
        while not self._stop.is_set():
            try:
                n = await recompute_marked(self.pool)
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError, OSError, asyncpg.InterfaceError,
                    asyncpg.PostgresConnectionError) as e:
                log.warning("computed traits: retrying", error=type(e).__name__)
                try:
                    await asyncio.wait_for(self._stop.wait(), self.interval_s)
                except TimeoutError:
                    pass
                continue
            self.computed += n
            if n == 0:
                return

    async def stop(self) -> None:
        self._stop.set()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)
