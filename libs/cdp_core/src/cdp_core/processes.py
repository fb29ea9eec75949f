"""Services as processes: spawn `python -m cdp_<service>` detached, wait for SERVING.

Used by `cdp dev up`, by tests that kill a service, and by benchmarks: one way to
start a service outside the current process, as production does.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .settings import SERVICES


def module_of(service: str) -> str:
    return "cdp_" + service.replace("-", "_")


def available_services() -> list[str]:
    """The services whose package is installed, in DESIGN.md order."""
    return [s for s in SERVICES if importlib.util.find_spec(module_of(s)) is not None]


def spawn_service(service: str, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Start a service as its own detached process (its own session), logging to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **env}
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module_of(service)],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


async def health_status(address: str, timeout: float = 1.0) -> str:
    """'SERVING', 'NOT_SERVING', ... or 'UNREACHABLE'."""
    async with grpc.aio.insecure_channel(address) as ch:
        try:
            resp = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.aio.AioRpcError:
            return "UNREACHABLE"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)


async def wait_serving(address: str, proc: subprocess.Popen | None = None, timeout: float = 90.0) -> None:
    """Polls gRPC health until SERVING; raises if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with code {proc.returncode} before serving on {address}")
        if await health_status(address) == "SERVING":
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{address} not SERVING within {timeout}s")
