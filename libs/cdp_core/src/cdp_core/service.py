"""One way to run a service: `ServiceSpec` says what the service is, `run_service`
does the rest (settings, logging, tracing, store + migrations, bus + streams, consumers,
outbox relay, gRPC server with health, graceful shutdown).

Shutdown, on SIGTERM or SIGINT: health goes NOT_SERVING, consumers stop pulling and
finish their in-flight batch, the gRPC server finishes in-flight calls (grace period),
the outbox relay drains, connections close, the process exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from cdp.common.v1 import failed_pb2_grpc, replay_pb2_grpc

from . import logs, telemetry
from .bus import Bus
from .consumer import ConsumerRunner, Projection
from .failed import FailedEventServicer, Replayer
from .grpc_server import GrpcServer
from .outbox import OutboxRelay
from .replay import Replay, ReplayServicer
from .settings import Settings
from .store import open_store

log = logs.get_logger(__name__)


@dataclass
class Runtime:
    """What a running service holds; given to the spec's builders."""

    settings: Settings
    pool: asyncpg.Pool
    bus: Bus
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class ServiceSpec:
    name: str
    grpc_services: list[str]  # full names, e.g. "cdp.ingest.v1.IngestService"
    scopes: dict[str, str]  # full method name -> scope
    add_servicers: Callable[[Runtime, Any], None]  # (runtime, grpc.aio.Server)
    migrations: Path | None = None
    consumes: list[str] = field(default_factory=list)  # services whose streams it reads
    projections: Callable[[Runtime], list[Projection]] = lambda rt: []
    produces: bool = True  # owns a stream (and an outbox relay)
    # Replays a rejected call kept in failed events (ingest); consumer failures are
    # replayed by their consumer runner.
    replay_rejected: Callable[[Runtime, Any, Any], Awaitable[None]] | None = None
    on_start: Callable[[Runtime], Awaitable[None]] | None = None
    # Called as soon as health goes NOT_SERVING, beside the gRPC drain (e.g. an HTTP
    # server stops accepting and finishes its requests).
    on_drain: Callable[[Runtime], Awaitable[None]] | None = None
    on_stop: Callable[[Runtime], Awaitable[None]] | None = None
    # Tables holding what operators set rather than what the log says (rules, definitions,
    # forget tombstones): carried over as they are when the projection is rebuilt (replay.py).
    replay_keeps: list[str] = field(default_factory=list)
    # Work the projection leaves to a background task, done on the rebuilt tables before the
    # swap (given the rebuild's pool).
    replay_finish: Callable[[asyncpg.Pool], Awaitable[None]] | None = None


class Service:
    def __init__(self, spec: ServiceSpec, settings: Settings):
        self.spec, self.settings = spec, settings
        self.runtime: Runtime | None = None
        self.grpc: GrpcServer | None = None
        self.runners: list[ConsumerRunner] = []
        self.relay: OutboxRelay | None = None
        self._tasks: list[asyncio.Task] = []
        self.stopped = asyncio.Event()  # stop has begun
        self.finished = asyncio.Event()  # stop has completed
        self.failed = False
        self._background: set[asyncio.Future] = set()
        self.replay: Replay | None = None

    async def start(self) -> None:
        s = self.settings
        pool = await open_store(s.database_url, self.spec.name, self.spec.migrations)
        bus = await Bus.connect(s.nats_url, name=f"cdp-{self.spec.name}")
        for producer in ([self.spec.name] if self.spec.produces else []) + self.spec.consumes:
            await bus.ensure_stream(producer, duplicate_window_s=s.duplicate_window_s if producer == self.spec.name else None)
        rt = self.runtime = Runtime(s, pool, bus)
        self.grpc = GrpcServer(secret=s.auth_secret, scopes=self.spec.scopes, service_names=[
            *self.spec.grpc_services, "cdp.common.v1.FailedEventService", "cdp.common.v1.ReplayService"])
        self.spec.add_servicers(rt, self.grpc.server)
        failed_pb2_grpc.add_FailedEventServiceServicer_to_server(
            FailedEventServicer(pool, self._replayer_for), self.grpc.server)
        self.replay = Replay(self)
        replay_pb2_grpc.add_ReplayServiceServicer_to_server(ReplayServicer(self.replay), self.grpc.server)
        self.grpc.bind(s.grpc_host, s.grpc_port)
        await self.grpc.set_serving(False)
        await self.grpc.start()
        if self.spec.on_start:
            await self.spec.on_start(rt)
        await self._start_consumers(self.spec.projections(rt))
        await self.grpc.set_serving(True)
        log.info("service started", grpc_port=self.grpc.port, consumers=[r.p.name for r in self.runners])

    async def _start_consumers(self, projections) -> None:
        """The outbox relay and one consumer runner per projection, as tasks."""
        rt = self.runtime
        started = []
        if self.spec.produces:
            self.relay = OutboxRelay(rt.pool, rt.bus)
            started.append(asyncio.create_task(self.relay.run(), name="outbox-relay"))
        self.runners = []
        for projection in projections:
            size = int(self.settings.option("CDP_CONSUMER_BATCH_SIZE", str(projection.batch_size)))
            runner = ConsumerRunner(rt.bus, rt.pool, projection, batch_size=size, relay=self.relay)
            await runner.declare()
            self.runners.append(runner)
            started.append(asyncio.create_task(runner.run(), name=f"consumer-{projection.name}"))
        for t in started:
            t.add_done_callback(self._task_done)
        self._tasks = [t for t in self._tasks if not t.done()] + started

    async def pause_consumers(self) -> None:
        """Stops the consumer runners (their batches in flight finish) and the relay."""
        for r in self.runners:
            r.stop()
        if self.relay:
            self.relay.stop()
        running = [t for t in self._tasks if t.get_name().startswith("consumer-") or t.get_name() == "outbox-relay"]
        await asyncio.gather(*running, return_exceptions=True)

    async def resume_consumers(self) -> None:
        if not self.stopped.is_set():
            await self._start_consumers([r.p for r in self.runners])

    def _keep(self, task: asyncio.Future) -> None:
        """Holds a reference to a fire-and-forget task until it is done."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _replayer_for(self, row) -> Replayer | None:
        if row["kind"] == "rejected":
            if self.spec.replay_rejected is None:
                return None
            return lambda conn, r: self.spec.replay_rejected(self.runtime, conn, r)
        for runner in self.runners:
            if runner.p.name == row["consumer"]:
                return runner.replay
        return None

    def _task_done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None and not self.stopped.is_set():
            log.error("background task died; shutting down", task=task.get_name(),
                      error=repr(task.exception())[:300])
            self._keep(asyncio.ensure_future(self.stop(failed=True)))

    async def stop(self, failed: bool = False) -> None:
        if self.stopped.is_set():
            return
        self.stopped.set()
        self.failed = failed
        log.info("shutting down")
        if self.grpc:
            await self.grpc.set_serving(False)
        for r in self.runners:
            r.stop()
        if self.replay is not None and self.replay.task is not None and not self.replay.task.done():
            self.replay.task.cancel()  # an unfinished rebuild is dropped; the live tables are untouched
            await asyncio.gather(self.replay.task, return_exceptions=True)
        consumers = [t for t in self._tasks if t.get_name().startswith("consumer-")]
        drains = [self.grpc.stop(self.settings.shutdown_grace_s)] if self.grpc else []
        if self.spec.on_drain and self.runtime:
            drains.append(self.spec.on_drain(self.runtime))
        await asyncio.gather(*consumers, return_exceptions=True)  # in-flight batches finish
        await asyncio.gather(*drains)  # in-flight calls finish within the grace period
        if self.relay:
            self.relay.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.runtime:
            if self.spec.on_stop:
                await self.spec.on_stop(self.runtime)
            await self.runtime.bus.close()
            await self.runtime.pool.close()
        log.info("stopped")
        self.finished.set()


async def serve(spec: ServiceSpec, settings: Settings | None = None) -> int:
    settings = settings or Settings.from_env(spec.name)
    logs.configure(spec.name, settings.log_level)
    telemetry.configure(spec.name)
    svc = Service(spec, settings)
    loop = asyncio.get_running_loop()
    starting = asyncio.create_task(svc.start())

    def on_signal() -> None:
        if not starting.done():
            starting.cancel()  # e.g. still waiting for NATS or PostgreSQL: nothing to drain
        else:
            svc._keep(asyncio.ensure_future(svc.stop()))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        await starting
    except asyncio.CancelledError:
        log.info("stopped during start-up")
        return 0
    await svc.finished.wait()
    telemetry.shutdown()
    return 1 if svc.failed else 0


def main(spec: ServiceSpec) -> None:
    """Entry point of `python -m cdp_<service>`."""
    try:
        code = asyncio.run(serve(spec))
    except KeyboardInterrupt:
        code = 0
    sys.exit(code)
