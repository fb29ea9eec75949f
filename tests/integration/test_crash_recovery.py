"""SIGKILL the profile process in the middle of a stream: on restart no event is lost
and none is applied twice (tracking rows + one transaction per batch, then ack)."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid

import asyncpg
import pytest

from cdp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from cdp_core import embedded
from cdp_core.processes import spawn_service, wait_serving
from cdp_core.settings import with_database
from cdp_core.testing import eventually
from cdp_core.testing.stack import Stack
from cdp_identity.service import SPEC as IDENTITY
from cdp_ingest.service import SPEC as INGEST

pytestmark = pytest.mark.integration

USERS, PER_USER = 100, 20
TOTAL = USERS * PER_USER


async def test_profile_killed_mid_stream_loses_nothing_and_applies_nothing_twice(
    fresh_nats_url, database_server_url, auth_secret, tmp_path
):
    stack = Stack(fresh_nats_url, database_server_url, auth_secret, "crash_" + os.urandom(4).hex())
    await stack.start(INGEST, IDENTITY)
    profile_db = with_database(database_server_url, f"{stack.prefix}_profile")
    port = embedded.free_port()
    env = {
        "CDP_NATS_URL": fresh_nats_url,
        "CDP_DATABASE_URL": database_server_url,
        "CDP_PROFILE_DATABASE_URL": profile_db,
        "CDP_PROFILE_GRPC_PORT": str(port),
        "CDP_GRPC_HOST": "127.0.0.1",
        "CDP_AUTH_SECRET": auth_secret,
        "CDP_LOG_LEVEL": "warning",
    }
    log = tmp_path / "profile.log"
    proc = spawn_service("profile", env, log)
    procs = [proc]
    try:
        await wait_serving(f"127.0.0.1:{port}", proc)
        ingest = ingest_pb2_grpc.IngestServiceStub(stack.channel("ingest"))
        users = [f"crash-{uuid.uuid4().hex[:8]}-{i}" for i in range(USERS)]

        async def send_all():
            sem = asyncio.Semaphore(32)

            async def one(user: str, n: int):
                async with sem:
                    await ingest.Track(ingest_pb2.TrackRequest(
                        common=ingest_pb2.EventCommon(user_id=user, message_id=f"{user}-{n}"),
                        event="Product Viewed", properties_json=f'{{"n": {n}}}'))

            await asyncio.gather(*(one(u, n) for n in range(PER_USER) for u in users))

        sender = asyncio.create_task(send_all())
        conn = await eventually(lambda: asyncpg.connect(profile_db))
        try:
            async def some_applied():
                try:
                    n = await conn.fetchval("SELECT count(*) FROM profile_events")
                except asyncpg.UndefinedTableError:
                    return None
                return n if n >= TOTAL // 5 else None

            applied_before_kill = await eventually(some_applied, timeout=60, interval=0.01)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            assert applied_before_kill < TOTAL, "the kill must land in the middle of the stream"
            # What the killed process fetched and did not ack comes back after the consumer's
            # ack wait (30 s, most of this test's time): shorten it while no process runs, so it
            # is redelivered to the restarted process at once (which declares its consumer again,
            # with the usual ack wait). Redelivered batches, part of them applied before the kill,
            # are what this test is about.
            await _shorten_ack_wait(fresh_nats_url, 0.5)
            await asyncio.sleep(1.5)

            proc = spawn_service("profile", env, log)
            procs.append(proc)
            await wait_serving(f"127.0.0.1:{port}", proc)
            await sender

            async def all_applied():
                return await conn.fetchval("SELECT count(*) FROM profile_events") == TOTAL

            await eventually(all_applied, timeout=120, interval=0.1)
            # let any redelivery that would double-apply happen before we look
            await eventually(lambda: _no_pending(fresh_nats_url), timeout=60)
            rows = await conn.fetch(
                "SELECT p.profile_id, p.event_count, count(e.event_id) AS n FROM profiles p "
                "JOIN profile_events e USING (profile_id) GROUP BY p.profile_id, p.event_count")
            assert len(rows) == USERS
            assert all(r["event_count"] == r["n"] == PER_USER for r in rows), "an event applied twice or lost"
            assert await conn.fetchval("SELECT count(*) FROM cdp_failed_events") == 0
        finally:
            await conn.close()
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(30)
        await stack.stop()


async def _shorten_ack_wait(nats_url: str, seconds: float) -> None:
    import nats

    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        cfg = (await js.consumer_info("CDP_IDENTITY", "profile")).config
        cfg.ack_wait = seconds
        await js.add_consumer("CDP_IDENTITY", cfg)  # an existing durable: its config updated
        assert (await js.consumer_info("CDP_IDENTITY", "profile")).config.ack_wait == seconds
    finally:
        await nc.close()


async def _no_pending(nats_url: str) -> bool:
    import nats

    nc = await nats.connect(nats_url)
    try:
        info = await nc.jetstream().consumer_info("CDP_IDENTITY", "profile")
        return info.num_pending == 0 and info.num_ack_pending == 0
    finally:
        await nc.close()


async def test_sigterm_drains_and_exits_zero(fresh_nats_url, database_server_url, auth_secret, tmp_path):
    port = embedded.free_port()
    env = {
        "CDP_NATS_URL": fresh_nats_url,
        "CDP_DATABASE_URL": database_server_url,
        "CDP_PROFILE_DATABASE_URL": with_database(database_server_url, "term_" + os.urandom(4).hex()),
        "CDP_PROFILE_GRPC_PORT": str(port),
        "CDP_GRPC_HOST": "127.0.0.1",
        "CDP_AUTH_SECRET": auth_secret,
    }
    log = tmp_path / "profile.log"
    proc = spawn_service("profile", env, log)
    await wait_serving(f"127.0.0.1:{port}", proc)
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 30) == 0
    lines = log.read_text().splitlines()
    events = [line for line in lines if '"event": "shutting down"' in line or '"event": "stopped"' in line]
    assert len(events) == 2, lines[-10:]
