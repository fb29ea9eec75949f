"""The local stack behind `cdp dev up|down|status`.

`up` starts (under .cdp/ in the current directory) NATS and PostgreSQL unless
CDP_NATS_URL / CDP_DATABASE_URL name existing servers, then each available service as its
own detached process, waits for gRPC health, and records everything it started in
.cdp/stack.json. `down` stops exactly what that record names, services first.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import psutil
from rich.console import Console
from rich.table import Table

from cdp_core import auth, embedded, processes
from cdp_core.settings import DEFAULT_HTTP_PORT, SERVICES, env_key

from .client import (
    STACK_FILE,
    TOKEN_FILE,
    CliError,
    ensure_secret,
    ensure_state_dir,
    health,
    read_stack,
    redact_url,
    state_dir,
    write_private,
)

STACK_VERSION = 1
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
TOKEN_SUBJECT = "cdp-dev"


class Interrupted(Exception):
    """SIGINT or SIGTERM while `up` runs."""


@dataclass
class ServiceProc:
    name: str
    module: str
    pid: int
    create_time: float
    port: int
    address: str
    log: str

    def process(self) -> psutil.Process | None:
        """The live process, only if the pid still runs this service (not a reused pid)."""
        try:
            p = psutil.Process(self.pid)
            if abs(p.create_time() - self.create_time) > 1.0 or p.status() == psutil.STATUS_ZOMBIE:
                return None
            if self.module not in " ".join(p.cmdline()):
                return None
            return p
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None

    def running(self) -> bool:
        return self.process() is not None


@dataclass
class Stack:
    nats_url: str
    database_url: str
    nats: embedded.Managed | None  # None: external (CDP_NATS_URL)
    postgres: embedded.Managed | None  # None: external (CDP_DATABASE_URL)
    services: list[ServiceProc]
    http_port: int | None
    secret_source: str
    started_at: str

    def to_json(self) -> dict:
        return {
            "version": STACK_VERSION,
            "started_at": self.started_at,
            "nats_url": self.nats_url,
            "database_url": self.database_url,
            "nats": self.nats.to_json() if self.nats else None,
            "postgres": self.postgres.to_json() if self.postgres else None,
            "services": [asdict(s) for s in self.services],
            "http_port": self.http_port,
            "secret_source": self.secret_source,
        }

    @classmethod
    def from_json(cls, d: dict) -> Stack:
        if d.get("version") != STACK_VERSION:
            raise CliError(f"{stack_path()} has an unknown version {d.get('version')!r}")
        return cls(
            nats_url=d["nats_url"],
            database_url=d["database_url"],
            nats=embedded.Managed.from_json(d["nats"]) if d.get("nats") else None,
            postgres=embedded.Managed.from_json(d["postgres"]) if d.get("postgres") else None,
            services=[ServiceProc(**s) for s in d.get("services", [])],
            http_port=d.get("http_port"),
            secret_source=d.get("secret_source", ""),
            started_at=d.get("started_at", ""),
        )

    def anything_running(self) -> bool:
        return any(m.running() for m in (self.nats, self.postgres) if m) or any(s.running() for s in self.services)

    def save(self) -> None:
        write_private(stack_path(), json.dumps(self.to_json(), indent=2) + "\n")


def stack_path() -> Path:
    return state_dir() / STACK_FILE


def load_stack() -> Stack | None:
    d = read_stack()
    return Stack.from_json(d) if d else None


available_services = processes.available_services


def grpc_port(name: str) -> int:
    value = os.environ.get(f"CDP_{env_key(name)}_GRPC_PORT")
    if not value:
        return SERVICES[name]
    try:
        return int(value)
    except ValueError:
        raise CliError(f"CDP_{env_key(name)}_GRPC_PORT={value!r} is not a port number") from None


def http_port() -> int:
    value = os.environ.get("CDP_HTTP_PORT")
    try:
        return int(value) if value else DEFAULT_HTTP_PORT
    except ValueError:
        raise CliError(f"CDP_HTTP_PORT={value!r} is not a port number") from None


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False


def tail(path: str | Path, n: int = 20) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=0.5):
            return True
    except (OSError, ValueError):
        return False


# --- up ----------------------------------------------------------------------------


def _start_service(name: str, port: int, stack: Stack, secret: str, logs_dir: Path) -> ServiceProc:
    module = processes.module_of(name)
    env = dict(
        {
            "CDP_NATS_URL": stack.nats_url,
            "CDP_DATABASE_URL": stack.database_url,
            "CDP_AUTH_SECRET": secret,
            f"CDP_{env_key(name)}_GRPC_PORT": str(port),
            "CDP_HTTP_PORT": str(stack.http_port or http_port()),
            "CDP_LOG_LEVEL": os.environ.get("CDP_LOG_LEVEL", "info"),
            "CDP_GRPC_HOST": os.environ.get("CDP_GRPC_HOST", "127.0.0.1"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    log = logs_dir / f"{name}.log"
    with open(log, "ab") as out:
        out.write(f"\n=== cdp dev up {datetime.now(UTC).isoformat()} ===\n".encode())
    proc = processes.spawn_service(name, env, log)
    try:
        created = psutil.Process(proc.pid).create_time()
    except psutil.NoSuchProcess:
        created = 0.0
    proc_record = ServiceProc(name, module, proc.pid, created, port, f"127.0.0.1:{port}", str(log))
    proc_record._popen = proc  # type: ignore[attr-defined]  # reaped by wait_ready/stop in this process
    return proc_record


def _exited(s: ServiceProc) -> int | None:
    popen = getattr(s, "_popen", None)
    if popen is not None:
        return popen.poll()
    return None if s.running() else -1


def wait_ready(services: list[ServiceProc], console: Console, timeout: float = READY_TIMEOUT_S) -> None:
    """Wait until every service answers SERVING; CliError naming the first that cannot."""
    pending = {s.name: s for s in services}
    deadline = time.monotonic() + timeout
    with console.status("") as status:
        while pending:
            status.update(f"waiting for {', '.join(pending)} to report SERVING…")
            for name, s in list(pending.items()):
                code = _exited(s)
                if code is not None:
                    raise CliError(f"{name} exited with code {code} before it was ready; last lines of {s.log}:\n"
                                   f"{tail(s.log)}")
                if health(s.address, timeout=0.5) == "SERVING":
                    console.print(f"[green]✓[/green] {name} serving on {s.address}")
                    del pending[name]
            if pending and time.monotonic() > deadline:
                names = ", ".join(pending)
                logs = "\n".join(f"--- {s.log}\n{tail(s.log)}" for s in pending.values())
                raise CliError(f"{names} not SERVING within {timeout:.0f}s; last log lines:\n{logs}")
            if pending:
                time.sleep(0.25)


def _raise_interrupted(signum, frame):  # noqa: ARG001
    raise Interrupted(signal.Signals(signum).name)


def _ignore_signals() -> None:
    """Let a teardown finish (it is bounded by its own timeouts) whatever is pressed."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


def up(console: Console, *, foreground: bool) -> int:
    existing = load_stack()
    if existing and existing.anything_running():
        console.print(f"A stack is already running (recorded in {stack_path()}); not starting another.")
        print_status(console, existing)
        return 0
    if existing:
        console.print(f"[dim]Removing stale {stack_path()} (nothing in it is running).[/dim]")
        stack_path().unlink(missing_ok=True)

    services = available_services()
    ports = {name: grpc_port(name) for name in services}
    busy = [f"{name} port {port}" for name, port in ports.items() if port_in_use(port)]
    if "ingest" in services and port_in_use(http_port()):
        busy.append(f"HTTP edge port {http_port()}")
    if busy:
        raise CliError(f"in use: {', '.join(busy)}; stop what holds them or set CDP_<SERVICE>_GRPC_PORT / "
                       "CDP_HTTP_PORT")

    for var in ("CDP_NATS_URL", "CDP_DATABASE_URL"):
        if os.environ.get(var) and not reachable(os.environ[var]):
            raise CliError(f"{var}={redact_url(os.environ[var])} is not reachable; start that server or unset {var} "
                           "to have `cdp dev up` start its own")

    d = ensure_state_dir()
    secret, secret_source = ensure_secret()
    stack = Stack(
        nats_url=os.environ.get("CDP_NATS_URL", ""),
        database_url=os.environ.get("CDP_DATABASE_URL", ""),
        nats=None,
        postgres=None,
        services=[],
        http_port=http_port() if "ingest" in services else None,
        secret_source=secret_source,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            if not stack.nats_url:
                with console.status("starting NATS…"):
                    stack.nats = embedded.start_nats(d / "nats")
                stack.nats_url = stack.nats.url
                stack.save()
                console.print(f"[green]✓[/green] NATS on {stack.nats_url} (pid {stack.nats.pid})")
            if not stack.database_url:
                with console.status("starting PostgreSQL…"):
                    stack.postgres = embedded.start_postgres(d / "postgres")
                stack.database_url = stack.postgres.url
                stack.save()
                console.print(f"[green]✓[/green] PostgreSQL on {stack.database_url} (pid {stack.postgres.pid})")
            if not services:
                console.print("[yellow]No service is installed yet (no cdp_<service>.__main__); "
                              "started the infrastructure only.[/yellow]")
            for name in services:
                stack.services.append(_start_service(name, ports[name], stack, secret, d / "logs"))
                stack.save()
            wait_ready(stack.services, console)
        except (CliError, Interrupted, Exception) as e:
            console.print(f"[red]cdp dev up failed:[/red] {e if not isinstance(e, CliError) else 'see below'}")
            _ignore_signals()
            with console.status("stopping what was started…"):
                teardown(stack, console, quiet=True)
            if isinstance(e, Interrupted):
                return 130
            if isinstance(e, CliError):
                raise
            raise CliError(f"{type(e).__name__}: {e}") from e

        token = auth.issue_token(secret, TOKEN_SUBJECT, ["admin"])
        write_private(d / TOKEN_FILE, token + "\n")
        print_endpoints(console, stack, token)
        if not foreground:
            return 0
        console.print("Running in the foreground; press Ctrl-C to stop the stack.")
        reported: set[str] = set()
        try:
            while True:
                time.sleep(1.0)
                for s in stack.services:
                    if s.name not in reported and _exited(s) is not None:
                        reported.add(s.name)
                        console.print(f"[red]{s.name} exited[/red]; last lines of {s.log}:\n{tail(s.log)}")
        except Interrupted:
            pass
        except KeyboardInterrupt:
            pass
        _ignore_signals()
        console.print("Stopping the stack…")
        teardown(stack, console)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def print_endpoints(console: Console, stack: Stack, token: str) -> None:
    t = Table(title="CDP stack", title_justify="left")
    t.add_column("component", style="cyan")
    t.add_column("endpoint")
    t.add_column("pid", justify="right")
    t.add_row("nats", stack.nats_url, str(stack.nats.pid) if stack.nats else "external")
    t.add_row("postgres", redact_url(stack.database_url), str(stack.postgres.pid) if stack.postgres else "external")
    for s in stack.services:
        t.add_row(s.name, s.address, str(s.pid))
    if stack.http_port:
        t.add_row("http edge", f"http://127.0.0.1:{stack.http_port}", "(ingest)")
    console.print(t)
    console.print(f"Logs in {state_dir() / 'logs'}; record in {stack_path()}.")
    console.print(f"Admin token (also in {state_dir() / TOKEN_FILE}):")
    console.print(token, soft_wrap=True, highlight=False)


# --- down --------------------------------------------------------------------------


def stop_services(services: list[ServiceProc], timeout: float = STOP_TIMEOUT_S) -> list[str]:
    """SIGTERM every live service, wait for all to exit, SIGKILL what outlives timeout.
    Returns the names of the services that had to be killed."""
    procs: dict[psutil.Process, ServiceProc] = {}
    for s in services:
        p = s.process()
        if p is None:
            continue
        try:
            p.send_signal(signal.SIGTERM)
            procs[p] = s
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(list(procs), timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    for s in services:  # reap the ones this process started
        popen = getattr(s, "_popen", None)
        if popen is not None:
            try:
                popen.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
    return [procs[p].name for p in alive]


def teardown(stack: Stack, console: Console, *, quiet: bool = False) -> None:
    """Stop the services, then PostgreSQL, then NATS; remove stack.json."""
    killed = stop_services(stack.services)
    for name in killed:
        console.print(f"[yellow]{name} did not exit within {STOP_TIMEOUT_S:.0f}s of SIGTERM; killed it[/yellow]")
    if not quiet:
        for s in stack.services:
            console.print(f"[green]✓[/green] stopped {s.name}")
    for m in (stack.postgres, stack.nats):
        if m is None:
            continue
        was_running = embedded.stop(m)
        if not quiet and was_running:
            console.print(f"[green]✓[/green] stopped {m.name}")
    stack_path().unlink(missing_ok=True)


def down(console: Console) -> int:
    stack = load_stack()
    if stack is None:
        console.print(f"No stack recorded in {stack_path()}; nothing to stop.")
        return 0
    teardown(stack, console)
    console.print("Stack stopped.")
    return 0


# --- status ------------------------------------------------------------------------


def status_record(stack: Stack | None) -> dict:
    components: list[dict] = []
    if stack is None:
        return {"state_dir": str(state_dir()), "stack": None, "running": False, "components": components}
    for name, m, url in (("nats", stack.nats, stack.nats_url), ("postgres", stack.postgres, stack.database_url)):
        if m is None:
            ok = reachable(url)
            components.append({"name": name, "kind": "infra", "external": True, "pid": None, "running": ok,
                               "endpoint": redact_url(url)})
        else:
            components.append({"name": name, "kind": "infra", "external": False, "pid": m.pid,
                               "running": m.running(), "endpoint": redact_url(url), "log": m.log})
    for s in stack.services:
        alive = s.running()
        components.append({"name": s.name, "kind": "service", "external": False, "pid": s.pid, "running": alive,
                           "endpoint": s.address, "health": health(s.address) if alive else "UNREACHABLE",
                           "log": s.log})
    if stack.http_port:
        components.append({"name": "http", "kind": "edge", "external": False, "pid": None,
                           "running": port_in_use(stack.http_port),
                           "endpoint": f"http://127.0.0.1:{stack.http_port}"})
    # The HTTP edge is informational: whether ingest serves HTTP is ingest's business.
    healthy = all(c["running"] and c.get("health", "SERVING") == "SERVING" for c in components if c["kind"] != "edge")
    return {"state_dir": str(state_dir()), "stack": str(stack_path()), "started_at": stack.started_at,
            "running": healthy, "components": components}


def print_status(console: Console, stack: Stack | None, record: dict | None = None) -> None:
    record = record or status_record(stack)
    if stack is None:
        console.print(f"No stack recorded in {stack_path()}. Start one with `cdp dev up`.")
        return
    t = Table(title=f"CDP stack (started {record['started_at']})", title_justify="left")
    for col in ("component", "pid", "state", "endpoint", "health"):
        t.add_column(col)
    for c in record["components"]:
        state = "[green]running[/green]" if c["running"] else "[red]stopped[/red]"
        if c["kind"] == "edge":
            state = "[green]listening[/green]" if c["running"] else "[yellow]not listening[/yellow]"
        elif c["external"]:
            state = "[green]reachable[/green]" if c["running"] else "[red]unreachable[/red]"
        health_text = c.get("health", "")
        if health_text:
            health_text = f"[green]{health_text}[/green]" if health_text == "SERVING" else f"[red]{health_text}[/red]"
        pid = "external" if c["external"] else (str(c["pid"]) if c["pid"] else "")
        t.add_row(c["name"], pid, state, c["endpoint"], health_text)
    console.print(t)
    if not record["running"]:
        console.print("[yellow]Some components are down: see .cdp/logs/, then `cdp dev down` and `cdp dev up`."
                      "[/yellow]")
