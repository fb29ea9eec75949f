"""Shared helpers of the cdp CLI tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No CDP_* variable from the caller's shell, and a fresh current directory."""
    for key in list(os.environ):
        if key.startswith("CDP_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
async def stack(fresh_nats_url, database_server_url, auth_secret, clean_env, monkeypatch):
    """Ingest, identity and profile in this process; `cdp` finds them (CDP_*_ADDR, CDP_TOKEN)."""
    from cdp_core.testing.stack import Stack, pinned_logs
    from cdp_identity.service import SPEC as IDENTITY
    from cdp_ingest.service import SPEC as INGEST
    from cdp_profile.service import SPEC as PROFILE

    with pinned_logs():
        s = Stack(fresh_nats_url, database_server_url, auth_secret, "cli_" + os.urandom(4).hex())
        try:
            await s.start(INGEST, IDENTITY, PROFILE)
            for name in ("ingest", "identity", "profile"):
                monkeypatch.setenv(f"CDP_{name.upper()}_ADDR", s.address(name))
            monkeypatch.setenv("CDP_TOKEN", s.token)
            yield s
        finally:
            await s.stop()
