"""Fixtures of the cdp_core component tests: a bus on a fresh NATS server and a migrated
store on a fresh database."""

from __future__ import annotations

import pytest

from cdp_core.bus import Bus
from cdp_core.store import open_store


@pytest.fixture
async def bus(fresh_nats_url):
    b = await Bus.connect(fresh_nats_url, name="cdp-core-tests")
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
async def pool(fresh_database_url):
    p = await open_store(fresh_database_url, "tests", None)
    try:
        yield p
    finally:
        await p.close()
