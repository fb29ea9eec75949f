"""One service wired together by `Service`: start, serve, consume, relay, stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import asyncpg
import grpc
import pytest
from google.protobuf.wrappers_pb2 import StringValue
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cdp.common.v1.identifier_pb2 import Identifier
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp_core import embedded, envelope
from cdp_core.auth import issue_token
from cdp_core.bus import Bus
from cdp_core.consumer import Projection, handles
from cdp_core.grpc_server import channel
from cdp_core.service import Service, ServiceSpec, serve
from cdp_core.settings import Settings
from cdp_core.testing import eventually

pytestmark = pytest.mark.component

SERVICE = "cdp.identity.v1.IdentityService"
TRACK = "cdp.ingest.event.track"


class Servicer(identity_pb2_grpc.IdentityServiceServicer):
    async def ResolveIdentifier(self, request, context):
        return identity_pb2.ResolveIdentifierResponse(profile_id="p-" + request.identifier.value)


class Tracks(Projection):
    name = "tracks"
    source = "ingest"
    subjects = ["cdp.ingest.event.>"]

    def __init__(self, gate: asyncio.Event, entered: asyncio.Event):
        super().__init__()
        self.gate, self.entered = gate, entered

    @handles(TRACK)
    async def on_track(self, conn, d, outbox):
        value = d.payload(StringValue).value
        await conn.execute("INSERT INTO seen (value) VALUES ($1)", value)
        outbox.add(
            envelope.make(
                "cdp.ingest.derived.counted",
                StringValue(value=value),
                producer="ingest",
                cause=d.envelope,
                event_id=envelope.derived_id(d.envelope.event_id, "counted"),
            )
        )
        if value == "slow":
            self.entered.set()
            await self.gate.wait()


class Harness:
    def __init__(self, tmp_path, nats_url, db_url, secret):
        self.gate, self.entered = asyncio.Event(), asyncio.Event()
        self.gate.set()
        self.events: list[str] = []
        migrations = tmp_path / "migrations"
        migrations.mkdir()
        (migrations / "0001_seen.sql").write_text("CREATE TABLE seen (value text NOT NULL);")

        async def on_start(rt):
            self.events.append("on_start")

        async def on_stop(rt):
            self.events.append("on_stop")

        self.spec = ServiceSpec(
            name="ingest",
            grpc_services=[SERVICE],
            scopes={f"/{SERVICE}/ResolveIdentifier": "profiles:read"},
            add_servicers=lambda rt, server: identity_pb2_grpc.add_IdentityServiceServicer_to_server(
                Servicer(), server
            ),
            migrations=migrations,
            projections=lambda rt: [Tracks(self.gate, self.entered)],
            on_start=on_start,
            on_stop=on_stop,
        )
        self.settings = Settings.from_env(
            "ingest",
            {
                "CDP_NATS_URL": nats_url,
                "CDP_DATABASE_URL": db_url,
                "CDP_INGEST_DATABASE_URL": db_url,
                "CDP_INGEST_GRPC_PORT": str(embedded.free_port()),
                "CDP_GRPC_HOST": "127.0.0.1",
                "CDP_AUTH_SECRET": secret,
                "CDP_SHUTDOWN_GRACE_S": "1",
            },
        )
        self.token = issue_token(secret, "tests", ["profiles:read"])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.settings.grpc_port}"

    async def health(self) -> int:
        async with channel(self.address) as ch:
            r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=2)
            return r.status

    async def publish(self, *values: str):
        async with _bus(self.settings.nats_url) as b:
            await b.publish_envelopes([envelope.make(TRACK, StringValue(value=v), producer="ingest") for v in values])


@contextlib.asynccontextmanager
async def _bus(url: str):
    b = await Bus.connect(url)
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
def harness(tmp_path, fresh_nats_url, fresh_database_url, auth_secret):
    return Harness(tmp_path, fresh_nats_url, fresh_database_url, auth_secret)


async def test_start_serve_consume_relay_and_graceful_stop(harness):
    svc = Service(harness.spec, harness.settings)
    await svc.start()
    try:
        assert harness.events == ["on_start"]
        assert await harness.health() == health_pb2.HealthCheckResponse.SERVING
        async with channel(harness.address, harness.token) as ch:
            r = await identity_pb2_grpc.IdentityServiceStub(ch).ResolveIdentifier(
                identity_pb2.ResolveIdentifierRequest(identifier=Identifier(type="email", value="x")), timeout=5
            )
        assert r.profile_id == "p-x"
        pool, bus = svc.runtime.pool, svc.runtime.bus
        assert (await bus.js.stream_info("CDP_INGEST")).config.subjects == ["cdp.ingest.>"]
        assert [r.p.name for r in svc.runners] == ["tracks"]

        await harness.publish("a", "b")

        async def consumed_and_relayed():
            info = await bus.js.stream_info("CDP_INGEST")
            return (
                await pool.fetchval("SELECT count(*) FROM seen") == 2
                and await pool.fetchval("SELECT count(*) FROM cdp_outbox") == 0
                and info.state.messages == 4
            )  # 2 events + 2 derived, published by the relay

        await eventually(consumed_and_relayed)

        # a batch in flight when the stop begins
        harness.gate.clear()
        await harness.publish("slow")
        await asyncio.wait_for(harness.entered.wait(), 10)
        stopping = asyncio.create_task(svc.stop())
        await eventually(lambda: _is(harness.health(), health_pb2.HealthCheckResponse.NOT_SERVING))
        assert svc.stopped.is_set() and not svc.finished.is_set()  # waiting for the batch
        harness.gate.set()
        await asyncio.wait_for(stopping, 15)
    finally:
        harness.gate.set()
        await svc.stop()
    assert svc.finished.is_set() and not svc.failed
    assert harness.events == ["on_start", "on_stop"]
    assert all(t.done() for t in svc._tasks)
    # the in-flight batch committed and was acked; its outgoing event was relayed before exit
    conn = await asyncpg.connect(harness.settings.database_url)
    try:
        assert sorted(r[0] for r in await conn.fetch("SELECT value FROM seen")) == ["a", "b", "slow"]
        assert await conn.fetchval("SELECT count(*) FROM cdp_outbox") == 0
    finally:
        await conn.close()
    async with _bus(harness.settings.nats_url) as b:
        assert (await b.js.stream_info("CDP_INGEST")).state.messages == 6
        info = await b.js.consumer_info("CDP_INGEST", "tracks")
        assert info.num_ack_pending == 0 and info.num_pending == 0
    # the gRPC server is gone
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await harness.health()
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    await svc.stop()  # a second stop is a no-op


async def _is(aw, expected) -> bool:
    return (await aw) == expected


async def test_a_dying_background_task_stops_the_service_as_failed(harness):
    svc = Service(harness.spec, harness.settings)
    await svc.start()
    try:
        # break the store under the consumer: a non-transient error escapes its run loop
        await svc.runtime.pool.execute("DROP TABLE cdp_tracking")
        await harness.publish("a")
        await asyncio.wait_for(svc.finished.wait(), 15)
    finally:
        await svc.stop()
    assert svc.failed is True
    assert harness.events == ["on_start", "on_stop"]


@pytest.fixture
def quiet_serve(monkeypatch):
    """serve() configures process-wide logging and shuts tracing down; keep them for the other tests,
    and restore the loop's default signal handling afterwards."""
    monkeypatch.setattr("cdp_core.service.logs.configure", lambda *a, **k: None)
    monkeypatch.setattr("cdp_core.service.telemetry.shutdown", lambda: None)
    yield


def _remove_signal_handlers():
    loop = asyncio.get_event_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)


async def test_serve_exits_0_on_sigterm(harness, quiet_serve):
    task = asyncio.create_task(serve(harness.spec, harness.settings))
    try:
        await eventually(lambda: _is(harness.health(), health_pb2.HealthCheckResponse.SERVING))
        os.kill(os.getpid(), signal.SIGTERM)  # serve installed its handler before starting
        assert await asyncio.wait_for(task, 15) == 0
    finally:
        _remove_signal_handlers()
    assert harness.events == ["on_start", "on_stop"]


async def test_serve_exits_1_when_a_background_task_dies(harness, quiet_serve):
    task = asyncio.create_task(serve(harness.spec, harness.settings))
    try:
        await eventually(lambda: _is(harness.health(), health_pb2.HealthCheckResponse.SERVING))
        conn = await asyncpg.connect(harness.settings.database_url)
        await conn.execute("DROP TABLE cdp_tracking")
        await conn.close()
        await harness.publish("a")
        assert await asyncio.wait_for(task, 15) == 1
    finally:
        _remove_signal_handlers()
        if not task.done():
            task.cancel()
