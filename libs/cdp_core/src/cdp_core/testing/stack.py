"""Services run in this process (each with its own database) for tests and benchmarks."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from cdp_core import embedded
from cdp_core.auth import issue_token
from cdp_core.grpc_server import channel
from cdp_core.service import Service, ServiceSpec
from cdp_core.settings import Settings, env_key, with_database


class Stack:
    def __init__(self, nats_url: str, db_server: str, secret: str, prefix: str, *, env: dict[str, str] | None = None):
        self.nats_url, self.db_server, self.secret, self.prefix = nats_url, db_server, secret, prefix
        self.env = env or {}  # extra CDP_* settings for every service
        self.services: dict[str, Service] = {}
        self.token = issue_token(secret, "tests", ["admin"])

    def settings(self, name: str) -> Settings:
        key = env_key(name)
        env = {
            "CDP_NATS_URL": self.nats_url,
            "CDP_DATABASE_URL": self.db_server,
            f"CDP_{key}_DATABASE_URL": with_database(self.db_server, f"{self.prefix}_{key.lower()}"),
            f"CDP_{key}_GRPC_PORT": str(embedded.free_port()),
            "CDP_AUTH_SECRET": self.secret,
            "CDP_GRPC_HOST": "127.0.0.1",
            "CDP_HTTP_PORT": str(embedded.free_port()),
            "CDP_SHUTDOWN_GRACE_S": "1",
            **self.env,
        }
        return Settings.from_env(name, env)

    async def start(self, *specs: ServiceSpec) -> None:
        for spec in specs:
            svc = Service(spec, self.settings(spec.name))
            await svc.start()
            self.services[spec.name] = svc

    async def stop(self) -> None:
        for svc in reversed(list(self.services.values())):
            await svc.stop()

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.services[name].grpc.port}"

    def channel(self, name: str, token: str | None = None):
        return channel(self.address(name), token or self.token)

    async def replay(self, name: str, timeout: float = 120):
        """Rebuilds a service's projection from the log (ReplayService) and waits for the swap;
        the final ReplayStatus (state "done" or "failed")."""
        from cdp.common.v1 import replay_pb2, replay_pb2_grpc
        from cdp_core.testing import eventually

        stub = replay_pb2_grpc.ReplayServiceStub(self.channel(name))
        await stub.StartReplay(replay_pb2.StartReplayRequest())

        async def finished():
            s = await stub.GetReplayStatus(replay_pb2.GetReplayStatusRequest())
            return s if s.state in ("done", "failed") else None

        return await eventually(finished, timeout=timeout)


class _Pinned:
    """A stream structlog writes to as given (it looks sys.stdout up anew at each line when
    handed the very object it imported as stdout)."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


@contextmanager
def pinned_logs() -> Iterator[None]:
    """In-process services log to whatever sys.stdout is when they write; click's CliRunner
    swaps it while a command runs (in another thread), so their lines would land in the
    command's output. Inside this block they go to the stream of now (pytest's capture)."""
    config = structlog.get_config()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(_Pinned(sys.stdout)))
    try:
        yield
    finally:
        structlog.configure(**config)
