"""Retention of identity's seen event ids (CDP_IDENTITY_DEDUP_RETENTION_DAYS): old rows are
pruned at start-up and every hour; recent ones stay and keep deduplicating."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

import cdp_identity
from cdp_core import embedded
from cdp_core.settings import Settings
from cdp_core.store import open_store
from cdp_core.testing import eventually
from cdp_core.testing.stack import Stack
from cdp_identity.retention import prune_seen_events, retention_days, run_pruning
from cdp_identity.service import SPEC as IDENTITY

pytestmark = pytest.mark.component
MIGRATIONS = Path(cdp_identity.__file__).parent / "migrations"


@pytest.fixture
async def pool(fresh_database_url):
    p = await open_store(fresh_database_url, "identity", MIGRATIONS)
    try:
        yield p
    finally:
        await p.close()


async def seed(pool, ages_days: dict[str, float]) -> None:
    await pool.executemany(
        "INSERT INTO seen_events (event_id, seen_at) VALUES ($1, now() - make_interval(secs => $2))",
        [(k, d * 86400.0) for k, d in ages_days.items()])


async def test_the_projection_insert_stamps_seen_at(pool):
    await pool.execute("INSERT INTO seen_events VALUES ($1) ON CONFLICT DO NOTHING", "e1")  # as the projection does
    assert await pool.fetchval("SELECT now() - seen_at < interval '1 minute' FROM seen_events WHERE event_id = 'e1'")


async def test_only_rows_older_than_the_retention_are_pruned(pool):
    await seed(pool, {"old": 31, "older": 400, "recent": 29, "new": 0})
    assert await prune_seen_events(pool, 30) == 2
    assert {r[0] for r in await pool.fetch("SELECT event_id FROM seen_events")} == {"recent", "new"}
    assert await prune_seen_events(pool, 30) == 0


async def test_pruning_goes_in_batches(pool):
    await seed(pool, {f"e{i}": 40 for i in range(25)} | {"keep": 1})
    assert await prune_seen_events(pool, 30, batch=10) == 25
    assert await pool.fetchval("SELECT count(*) FROM seen_events") == 1


async def test_run_pruning_prunes_at_once_and_stops_when_told(pool):
    await seed(pool, {"old": 2, "recent": 0.5})
    stop = asyncio.Event()
    task = asyncio.create_task(run_pruning(pool, 1, stop, interval_s=3600))
    await eventually(lambda: _gone(pool, "old"))
    stop.set()
    await asyncio.wait_for(task, 5)
    assert await pool.fetchval("SELECT count(*) FROM seen_events") == 1


async def _gone(pool, event_id) -> bool:
    return not await pool.fetchval("SELECT count(*) FROM seen_events WHERE event_id = $1", event_id)


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan"])
def test_a_retention_that_is_not_positive_is_refused(value):
    with pytest.raises(ValueError, match="CDP_IDENTITY_DEDUP_RETENTION_DAYS"):
        retention_days(value)


def test_retention_days_accepts_fractions():
    assert retention_days("30") == 30 and retention_days("0.5") == 0.5


class EnvStack(Stack):
    def __init__(self, *args, env, **kw):
        super().__init__(*args, **kw)
        self.env = env

    def settings(self, name: str) -> Settings:
        base = super().settings(name).environ
        return Settings.from_env(name, {**base, "CDP_HTTP_PORT": str(embedded.free_port()), **self.env})


async def test_the_identity_service_prunes_at_start_up(fresh_nats_url, database_server_url, auth_secret):
    st = EnvStack(fresh_nats_url, database_server_url, auth_secret, "ret_" + os.urandom(4).hex(),
                  env={"CDP_IDENTITY_DEDUP_RETENTION_DAYS": "7"})
    await st.start(IDENTITY)  # creates and migrates the database
    pool = st.services["identity"].runtime.pool
    await seed(pool, {"old": 8, "recent": 6})
    await st.stop()
    st2 = EnvStack(fresh_nats_url, database_server_url, auth_secret, st.prefix,
                   env={"CDP_IDENTITY_DEDUP_RETENTION_DAYS": "7"})
    await st2.start(IDENTITY)  # same database
    try:
        pool = st2.services["identity"].runtime.pool
        await eventually(lambda: _gone(pool, "old"))
        assert not await _gone(pool, "recent")
    finally:
        await st2.stop()
