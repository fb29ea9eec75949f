"""Ingest, identity and profile run in this process against real NATS and PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import cdp_profile
from cdp_core.store import open_store
from cdp_core.testing.stack import Stack


@pytest.fixture
async def profile_pool(fresh_database_url):
    """The profile store's tables in a new database, for a projection driven by the test."""
    pool = await open_store(fresh_database_url, "profile", Path(cdp_profile.__file__).parent / "migrations")
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def stack(fresh_nats_url, database_server_url, auth_secret):
    from cdp_identity.service import SPEC as IDENTITY
    from cdp_ingest.service import SPEC as INGEST
    from cdp_profile.service import SPEC as PROFILE

    s = Stack(fresh_nats_url, database_server_url, auth_secret, "pr_" + os.urandom(4).hex())
    try:
        await s.start(INGEST, IDENTITY, PROFILE)
        yield s
    finally:
        await s.stop()
