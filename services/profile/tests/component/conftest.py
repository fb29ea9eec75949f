"""Ingest, identity and profile run in this process against real NATS and PostgreSQL."""

from __future__ import annotations

import os

import pytest

from cdp_core.testing.stack import Stack


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
