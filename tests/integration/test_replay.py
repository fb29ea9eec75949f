"""`cdp replay <service>`: the projection is rebuilt from sequence 1 into new tables and
swapped in while the service keeps serving; the rebuilt projection equals the live one (a
hash of the export), and events arriving after the swap are applied once."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import uuid

import grpc
import pytest
from google.protobuf.json_format import MessageToDict

from cdp.common.v1 import identifier_pb2, replay_pb2, replay_pb2_grpc
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_core.testing import eventually

pytestmark = pytest.mark.integration


def calls(run: str, n: int, seed: int) -> list[ingest_pb2.Call]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        p = rng.randrange(30)
        c = ingest_pb2.EventCommon(message_id=f"{run}-{i}", anonymous_id=f"a-{run}-{p}-{rng.randrange(2)}")
        if rng.random() < 0.3:
            c.user_id = f"u-{run}-{p}"
            out.append(ingest_pb2.Call(identify=ingest_pb2.IdentifyRequest(common=c, traits_json=json.dumps(
                {"email": f"p{p}-{run}@example.com", "firstName": f"P{p}", "plan": rng.choice(["free", "pro"])}))))
        else:
            props = {"order_id": f"o{i}", "total": rng.randrange(10, 90),
                     "products": [{"sku": f"S{rng.randrange(5)}", "price": 10, "quantity": 1}]}
            out.append(ingest_pb2.Call(track=ingest_pb2.TrackRequest(
                common=c, event=rng.choice(["Product Viewed", "Order Completed"]), properties_json=json.dumps(props))))
    return out


async def profile_hash(stack) -> tuple[str, int]:
    from cdp_profile.computing import drain

    await drain(stack.services["profile"].runtime.pool)  # computed traits trail the events: settle them
    stub = profile_pb2_grpc.ProfileServiceStub(stack.channel("profile"))
    rows = [json.dumps(MessageToDict(p), sort_keys=True) async for p in stub.ExportProfiles(
        profile_pb2.ExportProfilesRequest())]
    return hashlib.sha256("\n".join(sorted(rows)).encode()).hexdigest(), len(rows)


async def graph_hash(stack) -> str:
    stub = identity_pb2_grpc.IdentityServiceStub(stack.channel("identity"))
    rows = [json.dumps(MessageToDict(e), sort_keys=True) async for e in stub.ExportGraph(
        identity_pb2.ExportGraphRequest())]
    return hashlib.sha256("\n".join(sorted(rows)).encode()).hexdigest()


async def total_events(stack) -> int:
    stub = profile_pb2_grpc.ProfileServiceStub(stack.channel("profile"))
    return sum([p.event_count async for p in stub.ExportProfiles(profile_pb2.ExportProfilesRequest())])


async def replay(stack, service: str) -> replay_pb2.ReplayStatus:
    status = await stack.replay(service)
    assert status.state == "done", status.error
    return status


async def test_replays_rebuild_identity_and_profile_equal_to_the_live_ones(stack):
    run = uuid.uuid4().hex[:6]
    ingest = ingest_pb2_grpc.IngestServiceStub(stack.channel("ingest"))
    profiles = profile_pb2_grpc.ProfileServiceStub(stack.channel("profile"))
    sent = calls(run, 400, 1)
    assert (await ingest.Batch(ingest_pb2.BatchRequest(calls=sent))).accepted == len(sent)
    await eventually(lambda: _equals(total_events(stack), len(sent)), timeout=60)
    live_profiles, n = await profile_hash(stack)
    live_graph = await graph_hash(stack)
    assert n > 10

    # the service keeps answering while it rebuilds
    some = identifier_pb2.Identifier(type="user_id", value=f"u-{run}-{sent[0].identify.common.user_id[-1:] or '0'}")
    reads = asyncio.create_task(_keep_reading(profiles, some))
    status = await replay(stack, "profile")
    read_errors = await _stop(reads)
    assert status.applied >= len(sent) and status.paused_seconds < 30
    assert read_errors == []
    assert (await profile_hash(stack))[0] == live_profiles

    await replay(stack, "identity")
    assert await graph_hash(stack) == live_graph
    assert (await profile_hash(stack))[0] == live_profiles  # nothing re-published downstream

    # after the swaps new events are applied once
    more = calls(run + "b", 50, 2)
    await ingest.Batch(ingest_pb2.BatchRequest(calls=more))
    await eventually(lambda: _equals(total_events(stack), len(sent) + len(more)), timeout=60)


async def test_a_service_without_a_stream_refuses_a_replay(stack):
    stub = replay_pb2_grpc.ReplayServiceStub(stack.channel("ingest"))
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.StartReplay(replay_pb2.StartReplayRequest())
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def _equals(aw, expected) -> bool:
    return (await aw) == expected


async def _keep_reading(stub, identifier) -> list[str]:
    errors: list[str] = []
    try:
        while True:
            try:
                await stub.GetProfile(profile_pb2.GetProfileRequest(identifier=identifier))
            except grpc.aio.AioRpcError as e:
                if e.code() != grpc.StatusCode.NOT_FOUND:
                    errors.append(f"{e.code().name}: {e.details()}")
            await asyncio.sleep(0.02)
    except asyncio.CancelledError:
        return errors


async def _stop(task: asyncio.Task) -> list[str]:
    task.cancel()
    return await task
