"""Retention of identity's seen event ids (`seen_events`).

JetStream drops a retried message inside its duplicate window (CDP_DUPLICATE_WINDOW_S);
beyond it, identity's `seen_events` makes a client retry a no-op. Those rows are kept
CDP_IDENTITY_DEDUP_RETENTION_DAYS (default 30) and then pruned, at start-up and every
hour, in small batches so the projection's inserts are never held up. A retry that comes
back after the retention period is applied again: choose the retention longer than any
client's retry horizon.
"""

from __future__ import annotations

import asyncio

import asyncpg

from cdp_core.logs import get_logger

log = get_logger(__name__)

RETENTION_OPTION = "CDP_IDENTITY_DEDUP_RETENTION_DAYS"
DEFAULT_RETENTION_DAYS = "30"
PRUNE_INTERVAL_S = 3600.0
PRUNE_BATCH = 10_000


def retention_days(value: str) -> float:
    """The retention in days; refuses anything not positive (0 would disable dedup)."""
    try:
        days = float(value)
    except ValueError:
        raise ValueError(f"{RETENTION_OPTION} must be a number of days") from None
    if not days > 0:
        raise ValueError(f"{RETENTION_OPTION} must be positive")
    return days


async def prune_seen_events(pool: asyncpg.Pool, days: float, *, batch: int = PRUNE_BATCH) -> int:
    """Deletes seen event ids older than `days`; returns how many were deleted."""
    total = 0
    while True:
        n = await _delete_batch(pool, days, batch)
        total += n
        if n < batch:
            return total


async def _delete_batch(pool: asyncpg.Pool, days: float, batch: int) -> int:
    return await pool.fetchval(
        "WITH old AS (SELECT event_id FROM seen_events WHERE seen_at < now() - make_interval(secs => $1) "
        "LIMIT $2 FOR UPDATE SKIP LOCKED), "
        "gone AS (DELETE FROM seen_events s USING old WHERE s.event_id = old.event_id RETURNING 1) "
        "SELECT count(*) FROM gone",
        days * 86400.0, batch)


async def run_pruning(pool: asyncpg.Pool, days: float, stop: asyncio.Event,
                      interval_s: float = PRUNE_INTERVAL_S) -> None:
    """Prunes now, then every `interval_s` until `stop` is set. A failed round is logged
    and retried at the next one (pruning late is harmless)."""
    while not stop.is_set():
        try:
            n = await prune_seen_events(pool, days)
            if n:
                log.info("seen event ids pruned", deleted=n, retention_days=days)
        except Exception as e:  # noqa: BLE001 - a failed round must not stop the service; the next one retries
            log.warning("pruning seen event ids failed; retrying later", error=type(e).__name__, detail=str(e)[:200])
        try:
            await asyncio.wait_for(stop.wait(), interval_s)
        except TimeoutError:
            pass
