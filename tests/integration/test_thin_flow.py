"""The walking skeleton: Track/Identify over gRPC -> CDP_INGEST -> identity -> profile."""

from __future__ import annotations

import json
import uuid

import grpc
import pytest

from cdp.common.v1 import identifier_pb2
from cdp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_core.testing import eventually

pytestmark = pytest.mark.integration


def common(**kw) -> ingest_pb2.EventCommon:
    kw.setdefault("message_id", str(uuid.uuid4()))
    return ingest_pb2.EventCommon(**kw)


async def get_profile(stub, type_: str, value: str) -> profile_pb2.Profile:
    req = profile_pb2.GetProfileRequest(identifier=identifier_pb2.Identifier(type=type_, value=value))
    return (await stub.GetProfile(req)).profile


async def test_events_become_one_profile_found_by_any_identifier(stack):
    ingest = ingest_pb2_grpc.IngestServiceStub(stack.channel("ingest"))
    profiles = profile_pb2_grpc.ProfileServiceStub(stack.channel("profile"))
    anon, user = "anon-" + uuid.uuid4().hex, "user-" + uuid.uuid4().hex
    await ingest.Track(ingest_pb2.TrackRequest(common=common(anonymous_id=anon), event="Product Viewed",
                                               properties_json=json.dumps({"sku": "A1"})))
    await ingest.Identify(ingest_pb2.IdentifyRequest(
        common=common(anonymous_id=anon, user_id=user),
        traits_json=json.dumps({"email": " Ada@Example.COM ", "plan": "pro"})))
    await ingest.Track(ingest_pb2.TrackRequest(common=common(user_id=user), event="Order Completed",
                                               properties_json=json.dumps({"revenue": 42.5})))

    async def three_events():
        p = await get_profile(profiles, "user_id", user)
        return p if p.event_count == 3 else None

    p = await eventually(three_events)
    by_anon = await get_profile(profiles, "anonymous_id", anon)
    by_email = await get_profile(profiles, "email", "ada@example.com")
    assert by_anon.profile_id == by_email.profile_id == p.profile_id
    assert {(i.type, i.value) for i in p.identifiers} == {
        ("anonymous_id", anon), ("user_id", user), ("email", "ada@example.com")}
    traits = {t.name: json.loads(t.value_json) for t in p.traits}
    assert traits == {"email": " Ada@Example.COM ", "plan": "pro"}


async def test_a_retried_message_is_applied_once(stack):
    ingest = ingest_pb2_grpc.IngestServiceStub(stack.channel("ingest"))
    profiles = profile_pb2_grpc.ProfileServiceStub(stack.channel("profile"))
    user = "user-" + uuid.uuid4().hex
    c = common(user_id=user)
    first = await ingest.Track(ingest_pb2.TrackRequest(common=c, event="Signed Up"))
    again = await ingest.Track(ingest_pb2.TrackRequest(common=c, event="Signed Up"))
    assert first.event_id == again.event_id
    await ingest.Track(ingest_pb2.TrackRequest(common=common(user_id=user), event="Marker"))

    async def marker_seen():
        p = await get_profile(profiles, "user_id", user)
        return p if p.event_count >= 2 else None

    p = await eventually(marker_seen)
    assert p.event_count == 2


async def test_two_profiles_merge_when_an_event_links_them(stack):
    ingest = ingest_pb2_grpc.IngestServiceStub(stack.channel("ingest"))
    profiles = profile_pb2_grpc.ProfileServiceStub(stack.channel("profile"))
    a, b = "anon-" + uuid.uuid4().hex, "user-" + uuid.uuid4().hex
    await ingest.Track(ingest_pb2.TrackRequest(common=common(anonymous_id=a), event="Viewed"))
    await ingest.Identify(ingest_pb2.IdentifyRequest(common=common(user_id=b), traits_json='{"name": "B"}'))
    await eventually(lambda: get_profile(profiles, "user_id", b))
    first_a = await eventually(lambda: get_profile(profiles, "anonymous_id", a))
    await ingest.Track(ingest_pb2.TrackRequest(common=common(anonymous_id=a, user_id=b), event="Linked"))

    async def merged():
        pa = await get_profile(profiles, "anonymous_id", a)
        pb = await get_profile(profiles, "user_id", b)
        return pa if pa.profile_id == pb.profile_id and pa.event_count == 3 else None

    p = await eventually(merged)
    assert p.profile_id == first_a.profile_id  # the older profile survives
    assert len(p.merged_profile_ids) == 1
    assert {t.name for t in p.traits} == {"name"}


async def test_bad_input_is_rejected_naming_the_field(stack):
    ingest = ingest_pb2_grpc.IngestServiceStub(stack.channel("ingest"))
    cases = [
        (ingest_pb2.TrackRequest(common=common(), event="X"), "common.user_id"),
        (ingest_pb2.TrackRequest(common=common(user_id="u"), event=""), "event"),
        (ingest_pb2.TrackRequest(common=common(user_id="u"), event="X", properties_json="[1]"), "properties_json"),
        (ingest_pb2.TrackRequest(common=common(user_id="u"), event="X", properties_json="{"), "properties_json"),
        (ingest_pb2.TrackRequest(common=common(user_id="u"), event="X",
                                 properties_json=json.dumps({"k": "x" * 40_000})), "32768"),
        (ingest_pb2.TrackRequest(common=common(user_id="u", identifiers=[identifier_pb2.Identifier(
            type="Shoe Size", value="42")]), event="X"), "common.identifiers[0].type"),
        (ingest_pb2.TrackRequest(common=common(user_id="u", identifiers=[identifier_pb2.Identifier(
            type="email", value=" ")]), event="X"), "common.identifiers[0].value"),
        (ingest_pb2.TrackRequest(common=common(user_id="u" * 513), event="X"), "512"),
    ]
    for req, needle in cases:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await ingest.Track(req)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert needle in e.value.details()


async def test_auth_is_enforced(stack):
    from cdp_core.auth import issue_token
    from cdp_core.grpc_server import channel

    address = stack.address("ingest")
    req = ingest_pb2.TrackRequest(common=common(user_id="u"), event="X")
    for token, code in [
        (None, grpc.StatusCode.UNAUTHENTICATED),
        ("not-a-jwt", grpc.StatusCode.UNAUTHENTICATED),
        (issue_token("another-secret-of-at-least-32-bytes!", "x", ["admin"]), grpc.StatusCode.UNAUTHENTICATED),
        (issue_token(stack.secret, "reader", ["profiles:read"]), grpc.StatusCode.PERMISSION_DENIED),
    ]:
        stub = ingest_pb2_grpc.IngestServiceStub(channel(address, token))
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.Track(req)
        assert e.value.code() == code
    writer = ingest_pb2_grpc.IngestServiceStub(channel(address, issue_token(stack.secret, "w", ["events:write"])))
    assert (await writer.Track(req)).event_id
