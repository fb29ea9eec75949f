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
    """The services whose `python -m cdp_<service>` entry point is installed, in DESIGN.md order."""
    found = []
    for name in SERVICES:
        try:
            if importlib.util.find_spec(module_of(name)) and importlib.util.find_spec(module_of(name) + ".__main__"):
                found.append(name)
        except (ImportError, ValueError):
            continue
    return found


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


def health(address: str, timeout: float = 1.0) -> str:
    """The grpc.health.v1 status of the whole server (service ""): SERVING, NOT_SERVING,
    SERVICE_UNKNOWN, UNKNOWN, or UNREACHABLE."""
    with grpc.insecure_channel(address) as ch:
        try:
            resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError:
            return "UNREACHABLE"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)


async def wait_serving(address: str, proc: subprocess.Popen | None = None, timeout: float = 90.0) -> None:
    """Polls gRPC health until SERVING; raises if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with code {proc.returncode} before serving on {address}")
        if await asyncio.to_thread(health, address, 0.5) == "SERVING":
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{address} not SERVING within {timeout}s")
