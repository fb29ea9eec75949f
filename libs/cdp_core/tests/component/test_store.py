"""The store: database creation and numbered migrations, against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from cdp_core.settings import with_database
from cdp_core.store import CORE_MIGRATIONS, create_pool, database_of, ensure_database, migrate, open_store

pytestmark = pytest.mark.component


async def _drop(server_url: str, name: str) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _exists(server_url: str, name: str) -> bool:
    admin = await asyncpg.connect(server_url)
    try:
        return bool(await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await admin.close()


def test_database_of():
    assert database_of("postgresql://u@h:5432/cdp_ingest") == "cdp_ingest"
    assert database_of("postgresql://u@h:5432") == "postgres"


async def test_ensure_database_creates_a_missing_database(database_server_url):
    name = "t_ensure_" + uuid.uuid4().hex[:12]
    url = with_database(database_server_url, name)
    assert not await _exists(database_server_url, name)
    try:
        await ensure_database(url)
        assert await _exists(database_server_url, name)
        await ensure_database(url)  # present: nothing to do
        conn = await asyncpg.connect(url)
        assert await conn.fetchval("SELECT current_database()") == name
        await conn.close()
    finally:
        await _drop(database_server_url, name)


async def test_ensure_database_concurrently(database_server_url):
    """Replicas starting together all succeed and end up with one database."""
    name = "t_race_" + uuid.uuid4().hex[:12]
    url = with_database(database_server_url, name)
    try:
        await asyncio.gather(*(ensure_database(url) for _ in range(5)))
        assert await _exists(database_server_url, name)
    finally:
        await _drop(database_server_url, name)


@pytest.mark.parametrize("name", ["Bad-Name", "1abc", "x;drop"])
async def test_ensure_database_rejects_unsafe_names(database_server_url, name):
    with pytest.raises(ValueError, match="database name"):
        await ensure_database(with_database(database_server_url, name))


def _write(folder, files: dict[str, str]):
    folder.mkdir(exist_ok=True)
    for name, sql in files.items():
        (folder / name).write_text(sql)
    return folder


async def test_migrate_applies_in_order_once(fresh_database_url, tmp_path):
    folder = _write(
        tmp_path / "m",
        {
            "0002_add_column.sql": "ALTER TABLE widgets ADD COLUMN colour text NOT NULL DEFAULT 'blue';",
            "0001_widgets.sql": "CREATE TABLE widgets (id int PRIMARY KEY);\nINSERT INTO widgets VALUES (1);",
        },
    )
    pool = await create_pool(fresh_database_url, min_size=1, max_size=2)
    try:
        assert await migrate(pool, "widgets", folder) == [1, 2]  # 0002 needs 0001: order matters
        assert await pool.fetchval("SELECT colour FROM widgets WHERE id = 1") == "blue"
        assert await migrate(pool, "widgets", folder) == []
        _write(folder, {"0003_more.sql": "INSERT INTO widgets VALUES (2);"})
        assert await migrate(pool, "widgets", folder) == [3]
        assert await pool.fetchval("SELECT count(*) FROM widgets") == 2
        rows = await pool.fetch("SELECT version FROM cdp_schema_migrations WHERE component = 'widgets' ORDER BY 1")
        assert [r["version"] for r in rows] == [1, 2, 3]
        # another component's versions are its own
        other = _write(tmp_path / "o", {"0001_other.sql": "CREATE TABLE other (id int);"})
        assert await migrate(pool, "other", other) == [1]
    finally:
        await pool.close()


async def test_concurrent_migrations_apply_once(fresh_database_url, tmp_path):
    """Replicas starting together on a fresh database: each migration runs once, none fails."""
    folder = _write(tmp_path / "m", {"0001_t.sql": "CREATE TABLE t (id int); INSERT INTO t VALUES (1);"})
    pools = [await create_pool(fresh_database_url, min_size=1, max_size=1) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(p, "race", folder) for p in pools))
        assert sorted(results) == [[], [], [], [1]]
        assert await pools[0].fetchval("SELECT count(*) FROM t") == 1
    finally:
        for p in pools:
            await p.close()


@pytest.mark.parametrize("bad", ["1_short.sql", "0001-dash.sql", "0001_Upper.sql", "init.sql"])
async def test_bad_migration_file_name_is_rejected(fresh_database_url, tmp_path, bad):
    folder = _write(tmp_path / "m", {"0001_ok.sql": "CREATE TABLE ok (id int);", bad: "SELECT 1;"})
    pool = await create_pool(fresh_database_url, min_size=1, max_size=1)
    try:
        with pytest.raises(ValueError, match="NNNN_name.sql"):
            await migrate(pool, "bad", folder)
        # nothing applied, and the advisory lock was released
        assert not await pool.fetchval("SELECT count(*) FROM cdp_schema_migrations WHERE component = 'bad'")
        assert not await pool.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
    finally:
        await pool.close()


async def test_duplicate_migration_numbers_are_rejected(fresh_database_url, tmp_path):
    folder = _write(tmp_path / "m", {"0001_a.sql": "SELECT 1;", "0001_b.sql": "SELECT 1;"})
    pool = await create_pool(fresh_database_url, min_size=1, max_size=1)
    try:
        with pytest.raises(ValueError, match="duplicate"):
            await migrate(pool, "dup", folder)
    finally:
        await pool.close()


async def test_failing_migration_rolls_back_and_is_not_recorded(fresh_database_url, tmp_path):
    folder = _write(
        tmp_path / "m",
        {
            "0001_good.sql": "CREATE TABLE good (id int);",
            "0002_bad.sql": "CREATE TABLE half (id int);\nINSERT INTO half VALUES (1);\nSELECT * FROM no_such_table;",
        },
    )
    pool = await create_pool(fresh_database_url, min_size=1, max_size=1)
    try:
        with pytest.raises(asyncpg.UndefinedTableError):
            await migrate(pool, "c", folder)
        assert await pool.fetchval("SELECT to_regclass('good') IS NOT NULL")  # 0001 committed
        assert await pool.fetchval("SELECT to_regclass('half') IS NULL")  # 0002 rolled back entirely
        versions = [r[0] for r in await pool.fetch("SELECT version FROM cdp_schema_migrations WHERE component = 'c'")]
        assert versions == [1]
        assert not await pool.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        # after the fix, the next start applies it
        (folder / "0002_bad.sql").write_text("CREATE TABLE half (id int);")
        assert await migrate(pool, "c", folder) == [2]
    finally:
        await pool.close()


async def test_open_store_applies_core_then_service_migrations(database_server_url, tmp_path):
    name = "t_open_" + uuid.uuid4().hex[:12]
    folder = _write(tmp_path / "m", {"0001_svc.sql": "CREATE TABLE svc_things (id int);"})
    pool = await open_store(with_database(database_server_url, name), "svc", folder, min_size=1, max_size=2)
    try:
        tables = {r[0] for r in await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"cdp_tracking", "cdp_outbox", "cdp_failed_events", "cdp_schema_migrations", "svc_things"} <= tables
        rows = await pool.fetch("SELECT component, version FROM cdp_schema_migrations ORDER BY applied_at, component")
        assert [(r[0], r[1]) for r in rows] == [("cdp_core", 1), ("cdp_core", 2), ("svc", 1)]
        assert sorted(p.name for p in CORE_MIGRATIONS.glob("*.sql"))[0] == "0001_core.sql"
    finally:
        await pool.close()
        await _drop(database_server_url, name)
