"""Issue 4, item 7: a re-sent event is applied exactly once, inside JetStream's duplicate
window (Nats-Msg-Id: the stream drops the copy) and beyond it (the copy is stored again,
and identity's seen_events makes it a no-op)."""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import pytest

from cdp.common.v1 import identifier_pb2
from cdp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_core import embedded
from cdp_core.settings import Settings
from cdp_core.testing import eventually
from cdp_core.testing.stack import Stack
from cdp_identity.service import SPEC as IDENTITY
from cdp_ingest.service import SPEC as INGEST
from cdp_profile.service import SPEC as PROFILE

pytestmark = pytest.mark.integration

WINDOW_S = 1
USERS, PER_USER = 20, 10
N = USERS * PER_USER
RESEND = N // 10


class DedupStack(Stack):
    """Ingest's stream gets a 1 s duplicate window; every service a free HTTP port."""

    def settings(self, name: str) -> Settings:
        env = {**super().settings(name).environ, "CDP_HTTP_PORT": str(embedded.free_port())}
        if name == "ingest":
            env["CDP_DUPLICATE_WINDOW_S"] = str(WINDOW_S)
        return Settings.from_env(name, env)


def call(user: str, n: int) -> ingest_pb2.Call:
    return ingest_pb2.Call(track=ingest_pb2.TrackRequest(
        common=ingest_pb2.EventCommon(user_id=user, message_id=f"{user}-{n}"),
        event="Product Viewed", properties_json=json.dumps({"n": n})))


async def test_events_resent_inside_and_outside_the_window_are_applied_once(
        fresh_nats_url, database_server_url, auth_secret):
    stack = DedupStack(fresh_nats_url, database_server_url, auth_secret, "dedup_" + os.urandom(4).hex())
    await stack.start(INGEST, IDENTITY, PROFILE)
    try:
        bus = stack.services["ingest"].runtime.bus
        js = bus.js
        # identity and profile declared CDP_INGEST too, after ingest: they kept its window
        assert (await js.stream_info("CDP_INGEST")).config.duplicate_window == WINDOW_S
        assert (await js.stream_info("CDP_IDENTITY")).config.duplicate_window == 7200

        acks = []
        publish = bus.publish_batch

        async def recording(messages):
            got = await publish(messages)
            acks.extend(got)
            return got

        bus.publish_batch = recording
        ingest = ingest_pb2_grpc.IngestServiceStub(stack.channel("ingest"))
        users = [f"dd-{uuid.uuid4().hex[:8]}-{i}" for i in range(USERS)]
        calls = [call(u, n) for u in users for n in range(PER_USER)]
        inside, outside = calls[::10], calls[5::10]  # two different 10 % slices
        assert len(inside) == len(outside) == RESEND

        first = await ingest.Batch(ingest_pb2.BatchRequest(calls=calls))
        again = await ingest.Batch(ingest_pb2.BatchRequest(calls=inside))  # at once: inside the window
        assert first.accepted == N and again.accepted == RESEND
        ids = {r.event_id for r in first.results}
        assert {r.event_id for r in again.results} <= ids  # a retry is the same event
        assert sum(a.duplicate is True for a in acks) == RESEND  # JetStream dropped every copy
        assert (await js.stream_info("CDP_INGEST")).state.messages == N

        await asyncio.sleep(WINDOW_S + 1.5)  # beyond the window (and the server's purge of its ids)
        acks.clear()
        late = await ingest.Batch(ingest_pb2.BatchRequest(calls=outside))
        assert {r.event_id for r in late.results} <= ids
        assert not any(a.duplicate for a in acks)  # stored again: only identity can tell
        assert (await js.stream_info("CDP_INGEST")).state.messages == N + RESEND

        # identity consumed every stored message, and applied each event once
        ipool = stack.services["identity"].runtime.pool

        async def all_consumed():
            return await ipool.fetchval("SELECT count(*) FROM cdp_tracking WHERE consumer = 'identity'") == N + RESEND

        await eventually(all_consumed, timeout=60)
        assert await ipool.fetchval("SELECT count(*) FROM seen_events") == N
        assert not await ipool.fetchval("SELECT count(*) FROM cdp_failed_events")

        async def resolved_count() -> int:
            info = await js.stream_info("CDP_IDENTITY", subjects_filter="cdp.identity.resolved")
            return (info.state.subjects or {}).get("cdp.identity.resolved", 0)

        await eventually(lambda: _equals(resolved_count, N), timeout=30)
        await asyncio.sleep(0.5)  # nothing more arrives
        assert await resolved_count() == N

        profiles = profile_pb2_grpc.ProfileServiceStub(stack.channel("profile"))

        async def counts() -> dict[str, int] | None:
            got = {}
            for u in users:
                p = (await profiles.GetProfile(profile_pb2.GetProfileRequest(
                    identifier=identifier_pb2.Identifier(type="user_id", value=u)))).profile
                got[u] = p.event_count
            return got if sum(got.values()) >= N else None

        got = await eventually(counts, timeout=30)
        assert got == {u: PER_USER for u in users}
    finally:
        await stack.stop()


async def _equals(fn, expected) -> bool:
    return await fn() == expected
