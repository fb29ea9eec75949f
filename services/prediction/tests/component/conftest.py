"""The prediction service runs in this process against real NATS and PostgreSQL; the tests
publish identity's events (cdp.identity.*) themselves."""

from __future__ import annotations

import os

import pytest

from cdp_core.testing.stack import Stack

ENV = {"CDP_PREDICTION_DEBOUNCE_S": "0.3", "CDP_PREDICTION_POLL_S": "0.1", "CDP_PREDICTION_MIN_POSITIVES": "5",
       "CDP_PREDICTION_MIN_PROFILES": "100"}


@pytest.fixture
async def stack(fresh_nats_url, database_server_url, auth_secret):
    from cdp_prediction.service import SPEC as PREDICTION

    s = Stack(fresh_nats_url, database_server_url, auth_secret, "pd_" + os.urandom(4).hex(), env=ENV)
    try:
        await s.start(PREDICTION)
        yield s
    finally:
        await s.stop()
