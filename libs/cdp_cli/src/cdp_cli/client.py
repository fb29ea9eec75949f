"""Everything the commands share to reach a stack: the `.cdp/` folder, the secret and
the admin token kept there, service addresses, gRPC stubs with a bearer token, the gRPC
health check, and the mapping of gRPC errors to clear command-line errors.

One way to do each thing: every command goes through these functions.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click
import grpc

from cdp_core import processes
from cdp_core.grpc_server import channel
from cdp_core.settings import DEFAULT_HTTP_PORT, SERVICES, env_key

STATE_DIR = ".cdp"
SECRET_FILE = "secret"
TOKEN_FILE = "token"
STACK_FILE = "stack.json"
RPC_TIMEOUT_S = 10.0
UP_HINT = "is the stack running? try `cdp dev up`"


class CliError(click.ClickException):
    """A failure reported on stderr as `error: <message>`, exit code 1."""

    exit_code = 1

    def show(self, file=None) -> None:  # noqa: D102 - click's hook
        click.echo(f"error: {self.format_message()}", err=True, file=file)


# --- the .cdp folder ---------------------------------------------------------------


def state_dir() -> Path:
    """`.cdp/` in the current directory (not created here)."""
    return Path.cwd() / STATE_DIR


def ensure_state_dir() -> Path:
    d = state_dir()
    d.mkdir(mode=0o700, exist_ok=True)
    (d / "logs").mkdir(exist_ok=True)
    return d


def write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only (0600), replacing any previous one."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _read_text(path: Path) -> str | None:
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        return None
    return value or None


def read_stack() -> dict | None:
    """The record `cdp dev up` wrote in .cdp/stack.json, or None."""
    path = state_dir() / STACK_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        raise CliError(f"{path} is not valid JSON ({e}); remove it if no stack is running") from None


# --- secret and token --------------------------------------------------------------


def read_secret() -> str | None:
    """CDP_AUTH_SECRET from the environment, else .cdp/secret."""
    return os.environ.get("CDP_AUTH_SECRET") or _read_text(state_dir() / SECRET_FILE)


def ensure_secret() -> tuple[str, str]:
    """The secret and where it came from; generates .cdp/secret (0600) on first use."""
    if os.environ.get("CDP_AUTH_SECRET"):
        return os.environ["CDP_AUTH_SECRET"], "env CDP_AUTH_SECRET"
    path = ensure_state_dir() / SECRET_FILE
    existing = _read_text(path)
    if existing:
        return existing, str(path)
    value = secrets.token_urlsafe(48)
    write_private(path, value + "\n")
    return value, str(path)


def require_secret() -> str:
    secret = read_secret()
    if not secret:
        raise CliError(f"no secret: set CDP_AUTH_SECRET or run `cdp dev up` (which keeps one in {STATE_DIR}/{SECRET_FILE})")
    return secret


def resolve_token(explicit: str | None = None) -> str:
    """--token, else env CDP_TOKEN, else .cdp/token."""
    token = explicit or os.environ.get("CDP_TOKEN") or _read_text(state_dir() / TOKEN_FILE)
    if not token:
        raise CliError(
            f"no token: pass --token, set CDP_TOKEN, or run `cdp dev up` (which writes {STATE_DIR}/{TOKEN_FILE})"
        )
    return token


# --- addresses ---------------------------------------------------------------------


def service_port(name: str) -> int:
    """CDP_<SERVICE>_GRPC_PORT, else the port recorded by `cdp dev up`, else the default."""
    value = os.environ.get(f"CDP_{env_key(name)}_GRPC_PORT")
    if value:
        try:
            return int(value)
        except ValueError:
            raise CliError(f"CDP_{env_key(name)}_GRPC_PORT={value!r} is not a port number") from None
    try:
        stack = read_stack()
    except CliError:
        stack = None
    for svc in (stack or {}).get("services", []):
        if svc.get("name") == name and svc.get("port"):
            return int(svc["port"])
    return SERVICES[name]


def service_addr(name: str) -> str:
    """CDP_<SERVICE>_ADDR (host:port), else 127.0.0.1:<service_port(name)>."""
    return os.environ.get(f"CDP_{env_key(name)}_ADDR") or f"127.0.0.1:{service_port(name)}"


def http_url() -> str:
    """The ingest HTTP edge: CDP_HTTP_URL (e.g. http://host:8088), else http://127.0.0.1: +
    CDP_HTTP_PORT, else the http_port recorded by `cdp dev up`, else 8088."""
    if os.environ.get("CDP_HTTP_URL"):
        return os.environ["CDP_HTTP_URL"].rstrip("/")
    value = os.environ.get("CDP_HTTP_PORT")
    if value:
        try:
            return f"http://127.0.0.1:{int(value)}"
        except ValueError:
            raise CliError(f"CDP_HTTP_PORT={value!r} is not a port number") from None
    try:
        port = (read_stack() or {}).get("http_port")
    except CliError:
        port = None
    return f"http://127.0.0.1:{int(port) if port else DEFAULT_HTTP_PORT}"


def redact_url(url: str) -> str:
    """The URL without its password, for display."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


# --- gRPC --------------------------------------------------------------------------


@asynccontextmanager
async def stub(service: str, stub_class: type, token: str) -> AsyncIterator[Any]:
    """A stub of `service` (a SERVICES name) on its address, sending the bearer token."""
    ch = channel(service_addr(service), token)
    try:
        yield stub_class(ch)
    finally:
        await ch.close()


def rpc_error(service: str, err: grpc.aio.AioRpcError | grpc.RpcError, *, what: str | None = None) -> CliError:
    """A CliError that says what went wrong in words an operator can act on."""
    code = err.code()
    details = err.details() or ""
    addr = service_addr(service)
    if code == grpc.StatusCode.NOT_FOUND:
        return CliError(what or f"not found ({details})")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return CliError(f"cannot reach the {service} service at {addr}: {UP_HINT}")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return CliError(
            f"the {service} service rejected the token ({details}); issue a new one with "
            "`cdp token issue --scope admin` or restart the stack with `cdp dev up`"
        )
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return CliError(f"the token lacks a scope the {service} service needs ({details})")
    return CliError(f"{service} service at {addr} answered {code.name}: {details}")


def health(addr: str, timeout: float = 1.0) -> str:
    """The grpc.health.v1 status of the server at addr (see cdp_core.processes.health)."""
    return processes.health(addr, timeout)
