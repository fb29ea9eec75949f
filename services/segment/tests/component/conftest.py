"""A database with the segment service's migrations, and the full stack for service tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cdp_core.store import open_store
from cdp_core.testing.stack import Stack


@pytest.fixture
async def seg_pool(fresh_database_url):
    import cdp_segment

    migrations = Path(cdp_segment.__file__).parent / "migrations"
    pool = await open_store(fresh_database_url, "segment", migrations, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def stack(fresh_nats_url, database_server_url, auth_secret):
    from cdp_identity.service import SPEC as IDENTITY
    from cdp_ingest.service import SPEC as INGEST
    from cdp_profile.service import SPEC as PROFILE
    from cdp_segment.service import SPEC as SEGMENT

    s = Stack(fresh_nats_url, database_server_url, auth_secret, "sg_" + os.urandom(4).hex(),
              env={"CDP_SEGMENT_SCHEDULER_INTERVAL_S": "0.2"})
    try:
        await s.start(INGEST, IDENTITY, PROFILE, SEGMENT)
        yield s
    finally:
        await s.stop()
