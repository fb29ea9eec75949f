"""Fixtures that run CDP services in-process against real NATS and PostgreSQL."""

from __future__ import annotations

import asyncio
import os

import pytest
from cdp_ingest.service import SPEC as INGEST
from cdp_identity.service import SPEC as IDENTITY
from cdp_profile.service import SPEC as PROFILE

from cdp_core import embedded
from cdp_core.auth import issue_token
from cdp_core.grpc_server import channel
from cdp_core.service import Service
from cdp_core.settings import Settings, with_database


class Stack:
    """ingest + identity + profile in this process, each with its own database."""

    def __init__(self, nats_url: str, db_server: str, secret: str, prefix: str):
        self.nats_url, self.db_server, self.secret, self.prefix = nats_url, db_server, secret, prefix
        self.services: dict[str, Service] = {}
        self.token = issue_token(secret, "tests", ["admin"])

    def settings(self, name: str) -> Settings:
        env = {
            "CDP_NATS_URL": self.nats_url,
            "CDP_DATABASE_URL": self.db_server,
            f"CDP_{name.upper()}_DATABASE_URL": with_database(self.db_server, f"{self.prefix}_{name}"),
            f"CDP_{name.upper()}_GRPC_PORT": str(embedded.free_port()),
            "CDP_AUTH_SECRET": self.secret,
            "CDP_GRPC_HOST": "127.0.0.1",
            "CDP_SHUTDOWN_GRACE_S": "1",
        }
        return Settings.from_env(name, env)

    async def start(self, *specs) -> None:
        for spec in specs:
            svc = Service(spec, self.settings(spec.name))
            await svc.start()
            self.services[spec.name] = svc

    async def stop(self) -> None:
        for svc in reversed(list(self.services.values())):
            await svc.stop()

    def channel(self, name: str):
        return channel(f"127.0.0.1:{self.services[name].grpc.port}", self.token)


@pytest.fixture
async def stack(fresh_nats_url, database_server_url, auth_secret):
    s = Stack(fresh_nats_url, database_server_url, auth_secret, "it_" + os.urandom(4).hex())
    await s.start(INGEST, IDENTITY, PROFILE)
    try:
        yield s
    finally:
        await s.stop()
