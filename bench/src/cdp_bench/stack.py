"""The stack a benchmark runs against: infrastructure plus services as separate processes.

Infrastructure: the servers CDP_NATS_URL / CDP_DATABASE_URL name when they are set,
otherwise a NATS server and a PostgreSQL server started (cdp_core.embedded) in a
temporary folder that is removed afterwards.

Services: each one its own process (`python -m cdp_<service>`, as in production), with a
fresh database of its own (a unique prefix per run), a free gRPC port, a random auth
secret and CDP_LOG_LEVEL=warning so that logging does not dominate what is measured.

    async with bench_stack(["ingest"]) as stack:
        stub = IngestServiceStub(stack.channel("ingest"))

On exit the services get SIGTERM (graceful shutdown), their databases are dropped, and
embedded servers are stopped. On a server named by CDP_NATS_URL the services declare and
append to the ordinary CDP_* streams: point it at a disposable server only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import string
import subprocess
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import grpc

from cdp_core import embedded
from cdp_core.auth import issue_token
from cdp_core.grpc_server import channel
from cdp_core.processes import spawn_service, wait_serving
from cdp_core.settings import env_key, with_database

STOP_TIMEOUT_S = 30.0
_ALPHABET = string.ascii_letters + string.digits


def random_secret(n: int = 48) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


@dataclass
class Infra:
    nats_url: str
    database_url: str
    embedded_nats: bool
    embedded_postgres: bool
    managed: list[embedded.Managed] = field(default_factory=list)


@dataclass
class ServiceProcess:
    name: str
    proc: subprocess.Popen
    port: int
    log: Path
    database_url: str

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class BenchStack:
    infra: Infra
    secret: str
    token: str
    prefix: str
    root: Path
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    _channels: list[grpc.aio.Channel] = field(default_factory=list)

    def address(self, name: str) -> str:
        return self.services[name].address

    def channel(self, name: str) -> grpc.aio.Channel:
        """A client channel to a service, carrying the admin token (closed on exit)."""
        ch = channel(self.address(name), self.token)
        self._channels.append(ch)
        return ch

    def describe(self) -> dict:
        return {
            "nats": "embedded" if self.infra.embedded_nats else "external (CDP_NATS_URL)",
            "postgres": "embedded" if self.infra.embedded_postgres else "external (CDP_DATABASE_URL)",
            "services": sorted(self.services),
        }


def start_infra(root: Path) -> Infra:
    nats_url = os.environ.get("CDP_NATS_URL", "")
    db_url = os.environ.get("CDP_DATABASE_URL", "")
    infra = Infra(nats_url, db_url, embedded_nats=not nats_url, embedded_postgres=not db_url)
    try:
        if not nats_url:
            m = embedded.start_nats(root / "nats")
            infra.managed.append(m)
            infra.nats_url = m.url
        if not db_url:
            # Production settings (fsync on): a benchmark measures what a deployment would see.
            m = embedded.start_postgres(root / "pg")
            infra.managed.append(m)
            infra.database_url = m.url
    except BaseException:
        stop_infra(infra)
        raise
    return infra


def stop_infra(infra: Infra) -> None:
    for m in reversed(infra.managed):
        embedded.stop(m)


@contextlib.asynccontextmanager
async def infrastructure(prefix: str = "cdp-bench-", *, keep_root: bool = False) -> AsyncIterator[tuple[Infra, Path]]:
    """The servers (start_infra) in a new temporary work folder; on exit they are stopped and
    the folder removed (unless `keep_root`)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    infra = await asyncio.to_thread(start_infra, root)
    try:
        yield infra, root
    finally:
        await asyncio.to_thread(stop_infra, infra)
        if not keep_root:
            shutil.rmtree(root, ignore_errors=True)


def _terminate(procs: Sequence[subprocess.Popen]) -> None:
    """SIGTERM (graceful shutdown), then SIGKILL whatever is still running after the timeout."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait()


async def _drop_databases(server_url: str, urls: list[str]) -> None:
    from urllib.parse import urlsplit

    admin = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        for url in urls:
            name = urlsplit(url).path.lstrip("/")
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def bench_stack(services: Sequence[str], *, keep_logs: bool = False) -> AsyncIterator[BenchStack]:
    """Infrastructure plus `services` as processes, SERVING; torn down on exit."""
    async with infrastructure(keep_root=keep_logs) as (infra, root):
        secret = random_secret()
        prefix = "bench_" + secrets.token_hex(4)
        stack = BenchStack(infra, secret, issue_token(secret, "bench", ["admin"]), prefix, root)
        try:
            for name in services:
                port = embedded.free_port()
                db = with_database(infra.database_url, f"{prefix}_{env_key(name).lower()}")
                log = root / "logs" / f"{name}.log"
                proc = spawn_service(name, service_env(Env(infra, root, secret, None), name, db, port), log)
                stack.services[name] = ServiceProcess(name, proc, port, log, db)
            for sp in stack.services.values():
                try:
                    await wait_serving(sp.address, sp.proc)
                except (RuntimeError, TimeoutError) as e:
                    raise RuntimeError(f"{e}\n--- {sp.log} ---\n{_tail(sp.log)}") from None
            yield stack
        finally:
            for ch in stack._channels:
                with contextlib.suppress(Exception):
                    await ch.close()
            await asyncio.to_thread(_terminate, [sp.proc for sp in reversed(list(stack.services.values()))])
            if not infra.embedded_postgres and stack.services:
                with contextlib.suppress(Exception):
                    await _drop_databases(infra.database_url, [sp.database_url for sp in stack.services.values()])


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


@dataclass
class Env:
    """What a benchmark of one service process holds: the servers, a work folder, the token
    secret and a bus."""

    infra: object
    root: Path
    secret: str
    bus: object


@contextlib.asynccontextmanager
async def bench_env(name: str, streams: Sequence[str]) -> AsyncIterator[Env]:
    """`infrastructure` plus a bus connected as cdp-bench-<name>, with the CDP_<STREAM> streams
    of `streams` declared; the bus is closed before the servers stop."""
    from cdp_core.bus import Bus

    async with infrastructure(f"cdp-bench-{name}-") as (infra, root):
        bus = await Bus.connect(infra.nats_url, name=f"cdp-bench-{name}")
        try:
            for stream in streams:
                await bus.ensure_stream(stream)
            yield Env(infra, root, random_secret(), bus)
        finally:
            with contextlib.suppress(Exception):
                await bus.close()


def service_env(env: Env, service: str, db: str, port: int, extra: dict | None = None) -> dict:
    """The environment of one `python -m cdp_<service>` process on `db`, quiet, on `port`."""
    key = env_key(service)
    return {"CDP_NATS_URL": env.infra.nats_url, "CDP_DATABASE_URL": env.infra.database_url,
            f"CDP_{key}_DATABASE_URL": db, f"CDP_{key}_GRPC_PORT": str(port), "CDP_GRPC_HOST": "127.0.0.1",
            "CDP_HTTP_PORT": str(embedded.free_port()), "CDP_AUTH_SECRET": env.secret, "CDP_LOG_LEVEL": "warning",
            "CDP_SHUTDOWN_GRACE_S": "2", **(extra or {})}


async def drop_database(server: str, name: str) -> None:
    admin = await asyncpg.connect(with_database(server, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def table_sizes(conn) -> dict[str, dict[str, int]]:
    """After VACUUM ANALYZE: bytes of each table of the public schema (heap + indexes + TOAST),
    its heap and its indexes."""
    await conn.execute("VACUUM ANALYZE")
    rows = await conn.fetch(
        "SELECT c.relname, pg_total_relation_size(c.oid) AS total, pg_relation_size(c.oid) AS heap, "
        "pg_indexes_size(c.oid) AS idx "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY total DESC")
    return {r["relname"]: {"bytes": r["total"], "heap": r["heap"], "indexes": r["idx"]} for r in rows}


@dataclass
class Drain:
    """What watching a consumer drain its stream saw (perf_counter times)."""

    t_first: float  # the first committed batch was seen
    seq_first: int  # the highest sequence then
    t_done: float  # the last sequence was reached
    rss_peak: int  # bytes


async def watch_drain(conn, consumer: str, last: int, proc: subprocess.Popen, *, timeout_s: float,
                      log: Path, poll_s: float = 0.05) -> Drain:
    """Polls the service's `cdp_tracking` until `consumer` has applied sequence `last`,
    following the process's peak RSS; raises if it exits or the time runs out."""
    import time

    import psutil

    ps = psutil.Process(proc.pid)
    rss_peak = ps.memory_info().rss
    t_first = seq_first = None
    deadline = time.monotonic() + timeout_s
    while True:
        top = await conn.fetchval("SELECT max(stream_seq) FROM cdp_tracking WHERE consumer = $1", consumer)
        now = time.perf_counter()
        with contextlib.suppress(psutil.Error):
            rss_peak = max(rss_peak, ps.memory_info().rss)
        if top is not None and t_first is None:
            t_first, seq_first = now, top
        if top is not None and top >= last:
            return Drain(t_first, seq_first, now, rss_peak)
        if proc.poll() is not None:
            raise RuntimeError(f"{consumer} exited with {proc.returncode}: see {log}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{consumer} did not reach sequence {last} within {timeout_s}s (at {top})")
        await asyncio.sleep(poll_s)


async def publish_all(bus, msgs: list, chunk: int = 1000) -> float:
    """Publishes prepared messages in batches of `chunk` (every ack awaited); seconds taken."""
    import time

    t = time.perf_counter()
    for i in range(0, len(msgs), chunk):
        await bus.publish_batch(msgs[i:i + chunk])
    return time.perf_counter() - t


@dataclass
class ServiceRun:
    """One service process a benchmark started on a fresh database."""

    proc: subprocess.Popen
    db: str
    log: Path
    t_serving: float  # perf_counter when it answered SERVING
    spy: subprocess.Popen | None = None
    port: int = 0  # its gRPC port

    def stop_spy(self) -> None:
        """Ends the py-spy recording (it writes its file on SIGINT)."""
        if self.spy is not None:
            self.spy.send_signal(signal.SIGINT)
            with contextlib.suppress(Exception):
                self.spy.wait(30)
            self.spy = None


@contextlib.asynccontextmanager
async def service_process(env: Env, service: str, stream: str, *, py_spy: str | None = None
                          ) -> AsyncIterator[ServiceRun]:
    """`python -m cdp_<service>` on a fresh database with its durable consumer on `stream`
    created afresh (so it reads from sequence 1), SERVING when yielded, recorded by py-spy
    into `py_spy` if given; stopped, its database dropped and its consumer deleted after."""
    import sys
    import time

    with contextlib.suppress(Exception):
        await env.bus.js.delete_consumer(stream, service)
    name = f"bench_{secrets.token_hex(4)}_{service}"
    db = with_database(env.infra.database_url, name)
    port = embedded.free_port()
    log = env.root / "logs" / f"{name}.log"
    proc = spawn_service(service, service_env(env, service, db, port), log)
    run = None
    try:
        await wait_serving(f"127.0.0.1:{port}", proc, timeout=120)
        run = ServiceRun(proc, db, log, time.perf_counter(), port=port)
        if py_spy:
            exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            run.spy = subprocess.Popen([exe, "record", "-p", str(proc.pid), "-r", "100", "-f", "raw", "-o", py_spy,
                                        "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield run
    finally:
        if run is not None:
            run.stop_spy()
        await asyncio.to_thread(_terminate, [proc])
        with contextlib.suppress(Exception):
            await drop_database(env.infra.database_url, name)
        with contextlib.suppress(Exception):
            await env.bus.js.delete_consumer(stream, service)


async def replay_service(env: Env, run: ServiceRun, *, timeout_s: float = 1800) -> dict:
    """`cdp replay <service>` against a running benchmark process (its ReplayService): the
    projection rebuilt from sequence 1 into new tables and swapped in. Times StartReplay to
    "done"; events/s = the messages the rebuild applied over that time (the swap included)."""
    import time

    from cdp.common.v1 import replay_pb2, replay_pb2_grpc
    from cdp_core.auth import issue_token
    from cdp_core.grpc_server import channel

    async with channel(f"127.0.0.1:{run.port}", issue_token(env.secret, "bench", ["admin"])) as ch:
        stub = replay_pb2_grpc.ReplayServiceStub(ch)
        t = time.perf_counter()
        await stub.StartReplay(replay_pb2.StartReplayRequest())
        while True:
            status = await stub.GetReplayStatus(replay_pb2.GetReplayStatusRequest())
            if status.state in ("done", "failed"):
                break
            if time.perf_counter() - t > timeout_s:
                raise TimeoutError(f"replay not done after {timeout_s:.0f} s")
            await asyncio.sleep(0.05)
        secs = time.perf_counter() - t
    if status.state != "done":
        raise RuntimeError(f"replay failed: {status.error}")
    return {"replay_events": status.applied, "replay_seconds": secs, "replay_events_per_s": status.applied / secs,
            "replay_paused_s": status.paused_seconds}


@contextlib.contextmanager
def environment(values: dict[str, str]):
    """These environment variables set for the block (services started in it inherit them),
    the previous values (or their absence) restored after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
