"""Identity's graph through the real services: merges with provenance, splits that profile
follows, forgetting, rules, blocked values, export."""

from __future__ import annotations

import json
import uuid

import grpc
import pytest

from cdp.common.v1 import failed_pb2, failed_pb2_grpc, identifier_pb2
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_core.testing import eventually

pytestmark = pytest.mark.integration


def ident(t: str, v: str) -> identifier_pb2.Identifier:
    return identifier_pb2.Identifier(type=t, value=v)


def ref(t: str, v: str) -> identity_pb2.ProfileRef:
    return identity_pb2.ProfileRef(identifier=ident(t, v))


def common(**kw) -> ingest_pb2.EventCommon:
    kw.setdefault("message_id", str(uuid.uuid4()))
    return ingest_pb2.EventCommon(**kw)


class Client:
    def __init__(self, stack):
        self.ingest = ingest_pb2_grpc.IngestServiceStub(stack.channel("ingest"))
        self.identity = identity_pb2_grpc.IdentityServiceStub(stack.channel("identity"))
        self.profile = profile_pb2_grpc.ProfileServiceStub(stack.channel("profile"))
        self.failed = failed_pb2_grpc.FailedEventServiceStub(stack.channel("identity"))

    async def track(self, event="Page Viewed", **ids):
        await self.ingest.Track(ingest_pb2.TrackRequest(common=common(**ids), event=event))

    async def identify(self, traits: dict, **ids):
        await self.ingest.Identify(ingest_pb2.IdentifyRequest(common=common(**ids), traits_json=json.dumps(traits)))

    async def profile_of(self, t: str, v: str, events: int | None = None):
        async def get():
            try:
                p = (await self.profile.GetProfile(profile_pb2.GetProfileRequest(identifier=ident(t, v)))).profile
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND:
                    return None
                raise
            return p if events is None or p.event_count == events else None
        return await eventually(get)

    async def graph(self, t: str, v: str) -> identity_pb2.IdentityGraph:
        return await self.identity.GetIdentityGraph(identity_pb2.GetIdentityGraphRequest(profile=ref(t, v)))


@pytest.fixture
def uid():
    return uuid.uuid4().hex[:10]


async def test_a_merge_says_why_and_a_split_undoes_it_downstream_too(stack, uid):
    c = Client(stack)
    shared = f"family-{uid}@example.com"
    await c.identify({"email": f"ada-{uid}@example.com"}, anonymous_id=f"a-{uid}")
    await c.track(anonymous_id=f"a-{uid}")
    await c.identify({"email": shared}, anonymous_id=f"b-{uid}")
    await c.track(anonymous_id=f"b-{uid}")
    # a wrong link: Ada's device also carries the family address
    await c.identify({"email": shared}, anonymous_id=f"a-{uid}")
    merged = await c.profile_of("anonymous_id", f"b-{uid}", events=5)
    assert merged.profile_id == (await c.profile_of("anonymous_id", f"a-{uid}")).profile_id

    g = await c.graph("anonymous_id", f"a-{uid}")
    assert len(g.merged_profile_ids) == 1 and g.event_count == 5
    (m,) = g.merges
    assert m.rule == "shared-identifier" and m.confidence == 1.0
    assert (m.identifier.type, m.identifier.value) in {("email", shared), ("anonymous_id", f"a-{uid}")}
    assert "older profile" in m.survivor_reason and m.event_id

    res = await c.identity.SplitProfile(identity_pb2.SplitProfileRequest(
        profile=ref("anonymous_id", f"b-{uid}"), identifiers=[ident("anonymous_id", f"b-{uid}"), ident("email", shared)],
        reason="household address"))
    assert res.events_rebuilt == 5 and len(res.profiles) == 2
    sides = {frozenset((i.type, i.value) for i in p.identifiers) for p in res.profiles}
    assert frozenset({("anonymous_id", f"b-{uid}"), ("email", shared)}) in sides

    # profile follows: two profiles again, each with its own events; the linking event
    # goes with its highest-priority identifier (the email), its anonymous id link dropped
    a = await c.profile_of("anonymous_id", f"a-{uid}", events=2)
    b = await c.profile_of("anonymous_id", f"b-{uid}", events=3)
    assert a.profile_id != b.profile_id
    assert ("email", shared) in {(i.type, i.value) for i in b.identifiers}
    assert ("email", shared) not in {(i.type, i.value) for i in a.identifiers}

    merges = await c.identity.ListMerges(identity_pb2.ListMergesRequest(profile=ref("anonymous_id", f"a-{uid}")))
    assert [x.undone_by_split for x in merges.merges] == [res.split_id]

    # the separation holds: the same link again does not merge them
    await c.identify({"email": shared}, anonymous_id=f"a-{uid}")
    await c.profile_of("anonymous_id", f"b-{uid}", events=4)
    assert (await c.graph("anonymous_id", f"a-{uid}")).profile_id != (await c.graph("email", shared)).profile_id


async def test_a_split_refuses_identifiers_not_on_the_profile_or_all_of_them(stack, uid):
    c = Client(stack)
    await c.identify({"email": f"x-{uid}@example.com"}, user_id=f"u-{uid}")
    await c.profile_of("user_id", f"u-{uid}", events=1)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await c.identity.SplitProfile(identity_pb2.SplitProfileRequest(
            profile=ref("user_id", f"u-{uid}"), identifiers=[ident("email", "someone-else@example.com")]))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "identifiers[0]" in e.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await c.identity.SplitProfile(identity_pb2.SplitProfileRequest(
            profile=ref("user_id", f"u-{uid}"),
            identifiers=[ident("user_id", f"u-{uid}"), ident("email", f"x-{uid}@example.com")]))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "at least one" in e.value.details()
    g = await c.graph("user_id", f"u-{uid}")
    assert len(g.identifiers) == 2  # unchanged


async def test_a_forgotten_person_is_gone_everywhere_and_a_replay_does_not_bring_them_back(stack, uid):
    c = Client(stack)
    await c.identify({"email": f"gone-{uid}@example.com", "firstName": "Gone"}, user_id=f"g-{uid}")
    p = await c.profile_of("user_id", f"g-{uid}", events=1)
    res = await c.identity.ForgetProfile(identity_pb2.ForgetProfileRequest(
        profile=ref("email", f"gone-{uid}@example.com"), reason="GDPR ticket 1"))
    assert list(res.profile_ids) == [p.profile_id] and res.identifiers_forgotten == 2

    async def profile_gone():
        try:
            await c.profile.GetProfile(profile_pb2.GetProfileRequest(profile_id=p.profile_id))
        except grpc.aio.AioRpcError as e:
            return e.code() == grpc.StatusCode.NOT_FOUND
        return False

    await eventually(profile_gone)
    # the same person's events arrive again (a replay, a late batch)
    await c.identify({"email": f"gone-{uid}@example.com"}, user_id=f"g-{uid}")
    await c.identify({"firstName": "Someone"}, user_id=f"other-{uid}")  # a marker that identity moved past
    await c.profile_of("user_id", f"other-{uid}", events=1)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await c.identity.ResolveIdentifier(identity_pb2.ResolveIdentifierRequest(identifier=ident("user_id", f"g-{uid}")))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


async def test_rules_are_validated_and_blocked_values_never_link(stack, uid):
    c = Client(stack)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await c.identity.ApplyRules(identity_pb2.ApplyRulesRequest(yaml="limits: {user_id: 0}"))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "limits.user_id" in e.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await c.identity.ApplyRules(identity_pb2.ApplyRulesRequest(yaml="blocked: [{regex: '('}]"))
    assert "blocked[0].regex" in e.value.details()
    before = await c.identity.GetRules(identity_pb2.GetRulesRequest())
    rules = ("identifier_types: [crm_id]\nblocked:\n  - {type: email, value: shared-" + uid + "@example.com}\n"
             "  - {value: undefined, reason: SDK placeholder}\n")
    applied = await c.identity.ApplyRules(identity_pb2.ApplyRulesRequest(yaml=rules))
    assert applied.version == before.version + 1 and "crm_id" in applied.yaml

    await c.identify({"email": f"shared-{uid}@example.com"}, user_id=f"p1-{uid}")
    await c.identify({"email": f"shared-{uid}@example.com"}, user_id=f"p2-{uid}")
    p1 = await c.profile_of("user_id", f"p1-{uid}", events=1)
    p2 = await c.profile_of("user_id", f"p2-{uid}", events=1)
    assert p1.profile_id != p2.profile_id
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await c.identity.ResolveIdentifier(identity_pb2.ResolveIdentifierRequest(
            identifier=ident("email", f"shared-{uid}@example.com")))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND

    # an event whose only identifier is blocked is kept in failed events with the reason
    await c.track(anonymous_id="undefined")
    await c.identify({}, user_id=f"marker-{uid}")
    await c.profile_of("user_id", f"marker-{uid}", events=1)
    failed = await c.failed.ListFailedEvents(failed_pb2.ListFailedEventsRequest())
    assert any("dropped every identifier" in f.reason and "blocked" in f.reason for f in failed.events)


async def test_the_export_lists_every_live_profile_once(stack, uid):
    c = Client(stack)
    for i in range(3):
        await c.identify({"email": f"e{i}-{uid}@example.com"}, user_id=f"x{i}-{uid}")
    await c.identify({}, user_id=f"x0-{uid}", anonymous_id=f"anon-{uid}")
    await c.profile_of("user_id", f"x0-{uid}", events=2)
    rows = [r async for r in c.identity.ExportGraph(identity_pb2.ExportGraphRequest())]
    assert len({r.profile_id for r in rows}) == len(rows)
    mine = {frozenset((i.type, i.value) for i in r.identifiers) for r in rows
            if any(uid in i.value for i in r.identifiers)}
    assert frozenset({("user_id", f"x0-{uid}"), ("email", f"e0-{uid}@example.com"),
                      ("anonymous_id", f"anon-{uid}")}) in mine
    assert len(mine) == 3
