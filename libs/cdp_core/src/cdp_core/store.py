"""The store: an asyncpg pool on the service's own database, created if missing, and
numbered SQL migrations (cdp_core's first, then the service's), applied once each under
an advisory lock so replicas starting together do not race.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from .logs import get_logger
from .settings import with_database

log = get_logger(__name__)
CORE_MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_RE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_MIGRATION_LOCK = 0x6364705F6D6967  # "cdp_mig"


def database_of(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or "postgres"


async def ensure_database(url: str) -> None:
    """Create the database `url` names when it does not exist (connecting to `postgres`)."""
    name = database_of(url)
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"database name {name!r} must match [a-z_][a-z0-9_]*")
    try:
        conn = await asyncpg.connect(url)
        await conn.close()
        return
    except asyncpg.InvalidCatalogNameError:
        pass
    admin = await asyncpg.connect(with_database(url, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
        pass  # created meanwhile by a replica starting together (UniqueViolation: a concurrent CREATE)
    finally:
        await admin.close()


async def create_pool(url: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, command_timeout=60)


def _migrations(folder: Path) -> list[tuple[int, Path]]:
    found = []
    for p in sorted(folder.glob("*.sql")):
        m = _MIGRATION_RE.match(p.name)
        if not m:
            raise ValueError(f"migration file {p} must be named NNNN_name.sql")
        found.append((int(m.group(1)), p))
    versions = [v for v, _ in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration numbers in {folder}")
    return found


async def migrate(pool: asyncpg.Pool, component: str, folder: Path) -> list[int]:
    """Apply the not yet applied migrations of `folder`, each in its own transaction."""
    applied_now = []
    async with pool.acquire() as conn:
        # lock first: concurrent CREATE TABLE IF NOT EXISTS can fail with a unique violation
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS cdp_schema_migrations (
                       component text NOT NULL, version int NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now(),
                       PRIMARY KEY (component, version))"""
            )
            done = {
                r["version"]
                for r in await conn.fetch("SELECT version FROM cdp_schema_migrations WHERE component = $1", component)
            }
            for version, path in _migrations(folder):
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute(
                        "INSERT INTO cdp_schema_migrations (component, version) VALUES ($1, $2)", component, version
                    )
                applied_now.append(version)
                log.info("migration applied", component=component, version=version, file=path.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied_now


async def open_store(url: str, component: str, migrations: Path | None, **pool_kw) -> asyncpg.Pool:
    """Ensure the database exists, connect, and apply core then service migrations."""
    await ensure_database(url)
    pool = await create_pool(url, **pool_kw)
    await migrate(pool, "cdp_core", CORE_MIGRATIONS)
    if migrations is not None:
        await migrate(pool, component, migrations)
    return pool
