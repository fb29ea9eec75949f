"""`cdp replay SERVICE` against the real services."""

from __future__ import annotations

import json

import pytest

from cdp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_cli.testing import run_cdp
from cdp_core.testing import eventually

pytestmark = pytest.mark.component


async def test_replay_rebuilds_and_reports(stack):
    ingest = ingest_pb2_grpc.IngestServiceStub(stack.channel("ingest"))
    profiles = profile_pb2_grpc.ProfileServiceStub(stack.channel("profile"))
    for i in range(5):
        await ingest.Track(ingest_pb2.TrackRequest(common=ingest_pb2.EventCommon(user_id="u-replay", message_id=f"m{i}"),
                                                   event="Product Viewed", properties_json=json.dumps({"n": i})))

    async def five():
        stream = profiles.ExportProfiles(profile_pb2.ExportProfilesRequest())
        return sum([p.event_count async for p in stream]) == 5

    await eventually(five)
    r = await run_cdp("replay", "profile")
    assert "profile: done, 5 messages applied" in r.stdout and "paused" in r.stdout
    assert "replay started" in r.stderr
    status = await run_cdp("replay", "profile", "--status")
    assert status.stdout.startswith("profile: done")
    bad = await run_cdp("replay", "ingest", code=2)
    assert "Invalid value" in bad.stderr
