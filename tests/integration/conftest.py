"""Fixtures that run CDP services in-process against real NATS and PostgreSQL."""

from __future__ import annotations

import os

import pytest

from cdp_core.testing.stack import Stack
from cdp_identity.service import SPEC as IDENTITY
from cdp_ingest.service import SPEC as INGEST
from cdp_profile.service import SPEC as PROFILE


@pytest.fixture
async def stack(fresh_nats_url, database_server_url, auth_secret):
    s = Stack(fresh_nats_url, database_server_url, auth_secret, "it_" + os.urandom(4).hex())
    await s.start(INGEST, IDENTITY, PROFILE)
    try:
        yield s
    finally:
        await s.stop()
