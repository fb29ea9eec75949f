"""`cdp dev up`, status, profile get, demo and down, as an operator runs them.

The stack runs in a temporary directory against the session's PostgreSQL (each service
on a database of its own, dropped afterwards) and a NATS server without CDP streams, with
every gRPC port and the HTTP port on free ports: it never collides with the DESIGN.md
defaults or a developer's running stack.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import psutil
import pytest

from cdp_core.embedded import free_port
from cdp_core.settings import SERVICES, database_name, env_key, with_database

pytestmark = pytest.mark.component


def cdp_command() -> list[str]:
    script = Path(sys.executable).parent / "cdp"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cdp_cli.main"]


@pytest.fixture
async def stack_env(fresh_nats_url, database_server_url, tmp_path):
    run_id = uuid.uuid4().hex[:10]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_")}
    env.update({
        "CDP_NATS_URL": fresh_nats_url,
        "CDP_DATABASE_URL": database_server_url,
        "CDP_HTTP_PORT": str(free_port()),
        "CDP_LOG_LEVEL": "info",
    })
    databases = []
    for name in SERVICES:
        databases.append(f"t_{run_id}_{database_name(name)}")
        env[f"CDP_{env_key(name)}_DATABASE_URL"] = with_database(database_server_url, databases[-1])
        env[f"CDP_{env_key(name)}_GRPC_PORT"] = str(free_port())
    yield env
    admin = await asyncpg.connect(database_server_url)
    try:
        for db in databases:
            await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    finally:
        await admin.close()


def test_dev_stack_end_to_end(stack_env, tmp_path):
    def cdp(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*cdp_command(), *args], cwd=tmp_path, env=stack_env, capture_output=True, text=True,
                              timeout=timeout)

    state = tmp_path / ".cdp"
    try:
        up = cdp("dev", "up", timeout=150)
        assert up.returncode == 0, f"stdout:\n{up.stdout}\nstderr:\n{up.stderr}"
        record = json.loads((state / "stack.json").read_text())
        assert record["nats"] is None and record["postgres"] is None  # external: given by the environment
        services = {s["name"]: s for s in record["services"]}
        assert services, "no service started"
        for name, s in services.items():
            assert s["port"] == int(stack_env[f"CDP_{env_key(name)}_GRPC_PORT"])
            assert (state / "logs" / f"{name}.log").exists()
        for private in ("secret", "token", "stack.json"):
            assert stat.S_IMODE((state / private).stat().st_mode) == 0o600
        assert (state / "token").read_text().strip() in up.stdout.replace("\n", "")

        again = cdp("dev", "up")
        assert again.returncode == 0 and "already running" in again.stdout

        status = cdp("dev", "status", "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        st = json.loads(status.stdout)
        assert st["running"] is True
        by_name = {c["name"]: c for c in st["components"]}
        for name in services:
            assert by_name[name]["running"] and by_name[name]["health"] == "SERVING"
        assert by_name["nats"]["external"] and by_name["nats"]["running"]

        missing = cdp("profile", "get", "--user-id", "nobody", "--json")
        assert missing.returncode == 1
        assert "no profile found for user_id=nobody" in missing.stderr
        assert missing.stdout == ""

        demo = cdp("demo", "--sample", "--json", timeout=90)
        assert demo.returncode == 0, f"stdout:\n{demo.stdout}\nstderr:\n{demo.stderr}"
        profile = json.loads(demo.stdout)
        assert profile["computed"]["event_count"] >= 4
        assert profile["traits"]["first_name"] == "Ada" and profile["traits"]["plan"] == "pro"
        types = {i["type"] for i in profile["identifiers"]}
        assert {"user_id", "anonymous_id"} <= types
        user_id = next(i["value"] for i in profile["identifiers"] if i["type"] == "user_id")

        again = cdp("profile", "get", "--user-id", user_id, "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["profile_id"] == profile["profile_id"]
        human = cdp("demo", "--sample")
        assert human.returncode == 0, human.stderr
        assert "event_count" in human.stdout and "Order Completed" in human.stderr

        down = cdp("dev", "down")
        assert down.returncode == 0, down.stdout + down.stderr
        assert not (state / "stack.json").exists()
        for s in services.values():
            assert not _alive(s["pid"]), f"{s['name']} (pid {s['pid']}) still running after down"
    finally:
        if (state / "stack.json").exists():
            cdp("dev", "down")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
