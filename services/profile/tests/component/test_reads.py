"""ProfileService reads through the real path (ingest -> identity -> profile, real NATS and
PostgreSQL): the timeline (order, paging while events arrive, filters), GetProfile with a
field mask and merged ids, BatchGetProfiles, SearchProfiles, ExportProfiles, forgetting."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from cdp.common.v1 import identifier_pb2
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_core import envelope
from cdp_core.testing import eventually
from cdp_core.testing.stack import Stack

pytestmark = pytest.mark.component
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def ident(t: str, v: str) -> identifier_pb2.Identifier:
    return identifier_pb2.Identifier(type=t, value=v)


class World:
    def __init__(self, stack: Stack):
        self.ingest = ingest_pb2_grpc.IngestServiceStub(stack.channel("ingest"))
        self.profiles = profile_pb2_grpc.ProfileServiceStub(stack.channel("profile"))
        self.identity = identity_pb2_grpc.IdentityServiceStub(stack.channel("identity"))

    @staticmethod
    def common(at: datetime | None, context: dict | None = None, **ids) -> ingest_pb2.EventCommon:
        c = ingest_pb2.EventCommon(message_id=str(uuid.uuid4()), context_json=json.dumps(context) if context else "",
                                   **ids)
        if at is not None:
            c.timestamp.CopyFrom(envelope.ts(at))
        return c

    async def track(self, event: str, at: datetime | None = None, props: dict | None = None, **ids) -> str:
        r = await self.ingest.Track(ingest_pb2.TrackRequest(common=self.common(at, **ids), event=event,
                                                            properties_json=json.dumps(props or {})))
        return r.event_id

    async def identify(self, traits: dict, at: datetime | None = None, **ids) -> str:
        r = await self.ingest.Identify(ingest_pb2.IdentifyRequest(common=self.common(at, **ids),
                                                                  traits_json=json.dumps(traits)))
        return r.event_id

    async def page(self, name: str, at: datetime, **ids) -> str:
        r = await self.ingest.Page(ingest_pb2.PageRequest(common=self.common(at, **ids), name=name))
        return r.event_id

    async def profile(self, t: str, v: str, events: int, **kw) -> profile_pb2.GetProfileResponse:
        async def get():
            try:
                r = await self.profiles.GetProfile(profile_pb2.GetProfileRequest(identifier=ident(t, v), **kw))
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND:
                    return None
                raise
            return r if r.profile.event_count == events else None
        return await eventually(get)

    async def timeline(self, **kw) -> profile_pb2.GetTimelineResponse:
        return await self.profiles.GetTimeline(profile_pb2.GetTimelineRequest(**kw))

    async def all_pages(self, page_size: int, **kw) -> list[profile_pb2.TimelineEvent]:
        events, token = [], ""
        while True:
            r = await self.timeline(page_size=page_size, page_token=token, **kw)
            events.extend(r.events)
            token = r.next_page_token
            if not token:
                return events


async def refused(call, request, code=grpc.StatusCode.INVALID_ARGUMENT) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call(request)
    assert e.value.code() == code, e.value.details()
    return e.value.details()


async def test_timeline_is_newest_first_and_pages_stay_stable_while_events_arrive(stack):
    w = World(stack)
    user = "u-" + uuid.uuid4().hex[:8]
    ids = {}
    for i in range(20):
        name = "Email Opened" if i % 5 == 0 else "Product Viewed"
        ids[await w.track(name, T0 + timedelta(minutes=i), {"i": i, "sku": f"S{i}"}, user_id=user)] = i
    await w.identify({"email": f"{user}@example.com", "plan": "pro"}, T0 + timedelta(minutes=7, seconds=30),
                     user_id=user)
    await w.page("Home", T0 + timedelta(minutes=3, seconds=30), user_id=user,
                 context={"channel": "Kiosk", "ip": "10.0.0.1"})
    got = await w.profile("user_id", user, 22)
    pid = got.profile.profile_id

    everything = await w.all_pages(100, profile_id=pid)
    assert len(everything) == 22
    keys = [(e.occurred_at.ToDatetime(), e.event_id) for e in everything]
    assert keys == sorted(keys, reverse=True)
    newest = everything[0]
    assert (newest.kind, newest.event, json.loads(newest.properties_json)) == ("track", "Product Viewed",
                                                                               {"i": 19, "sku": "S19"})
    assert newest.source_id and newest.source_kind and newest.received_at.seconds > 0
    assert newest.occurred_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(minutes=19)
    by_kind = {e.kind: e for e in everything}
    assert json.loads(by_kind["identify"].traits_json)["plan"] == "pro"
    assert (by_kind["page"].event, by_kind["page"].channel) == ("Home", "kiosk")  # context.channel
    assert json.loads(by_kind["page"].context_json)["ip"] == "10.0.0.1"
    assert {e.channel for e in everything if e.event == "Email Opened"} == {"email"}

    # page 1, then events arrive: newer ones, and one older than everything; page 2 goes on
    first = await w.timeline(profile_id=pid, page_size=8)
    assert [e.event_id for e in first.events] == [e.event_id for e in everything[:8]] and first.next_page_token
    for i in range(3):
        await w.track("Product Viewed", T0 + timedelta(hours=5, minutes=i), user_id=user)
    old = await w.track("Store Visited", T0 - timedelta(days=3), user_id=user)
    await w.profile("user_id", user, 26)
    rest, token = [], first.next_page_token
    while token:
        r = await w.timeline(profile_id=pid, page_size=8, page_token=token)
        rest.extend(r.events)
        token = r.next_page_token
    assert [e.event_id for e in rest] == [e.event_id for e in everything[8:]] + [old]
    now = await w.all_pages(5, identifier=ident("email", f"{user.upper()}@Example.com"))
    assert len(now) == 26 and len({e.event_id for e in now}) == 26

    # filters
    r = await w.timeline(profile_id=pid, kinds=["identify", "page"])
    assert sorted(e.kind for e in r.events) == ["identify", "page"]
    r = await w.timeline(profile_id=pid, event_names=["Email Opened"])
    assert [json.loads(e.properties_json)["i"] for e in r.events] == [15, 10, 5, 0]
    since, until = envelope.ts(T0 + timedelta(minutes=5)), envelope.ts(T0 + timedelta(minutes=10))
    r = await w.timeline(profile_id=pid, since=since, until=until, kinds=["track"])
    assert [json.loads(e.properties_json)["i"] for e in r.events] == [9, 8, 7, 6, 5]  # until is exclusive
    paged = await w.all_pages(2, profile_id=pid, since=since, until=until)
    assert len(paged) == 6  # the five tracks and the identify at 7:30

    # bad requests name the field
    p = w.profiles.GetTimeline
    assert "page_token" in await refused(p, profile_pb2.GetTimelineRequest(
        profile_id=pid, kinds=["track"], page_token=first.next_page_token))
    assert "page_token" in await refused(p, profile_pb2.GetTimelineRequest(profile_id=pid, page_token="garbage!"))
    assert "kinds[1]" in await refused(p, profile_pb2.GetTimelineRequest(profile_id=pid, kinds=["track", "click"]))
    assert "until" in await refused(p, profile_pb2.GetTimelineRequest(profile_id=pid, since=until, until=since))
    assert "page_size" in await refused(p, profile_pb2.GetTimelineRequest(profile_id=pid, page_size=1001))
    assert "lookup" in await refused(p, profile_pb2.GetTimelineRequest())
    await refused(p, profile_pb2.GetTimelineRequest(profile_id="nobody"), grpc.StatusCode.NOT_FOUND)


async def test_get_profile_with_a_field_mask_and_by_a_merged_id(stack):
    w = World(stack)
    a, b = "a-" + uuid.uuid4().hex[:8], "b-" + uuid.uuid4().hex[:8]
    await w.track("Product Viewed", T0, anonymous_id=a)
    first_a = (await w.profile("anonymous_id", a, 1)).profile.profile_id
    await w.identify({"plan": "pro", "city": "Madrid"}, T0 + timedelta(minutes=1), user_id=b)
    first_b = (await w.profile("user_id", b, 1)).profile.profile_id
    await w.track("Signed In", T0 + timedelta(minutes=2), anonymous_id=a, user_id=b)
    merged = await w.profile("user_id", b, 3)
    assert merged.profile.profile_id == first_a and list(merged.profile.merged_profile_ids) == [first_b]

    r = await w.profiles.GetProfile(profile_pb2.GetProfileRequest(profile_id=first_b))
    assert r.profile.profile_id == first_a and r.merged_profile_id == first_b  # the survivor, and it says so
    r = await w.profiles.GetProfile(profile_pb2.GetProfileRequest(profile_id=first_a))
    assert r.merged_profile_id == ""

    mask = {"paths": ["traits.plan", "event_count"]}
    r = await w.profiles.GetProfile(profile_pb2.GetProfileRequest(identifier=ident("user_id", b), field_mask=mask))
    assert r.profile.profile_id == first_a and r.profile.event_count == 3
    assert [t.name for t in r.profile.traits] == ["plan"]
    assert not r.profile.identifiers and not r.profile.merged_profile_ids and not r.profile.HasField("first_seen")
    r = await w.profiles.GetProfile(profile_pb2.GetProfileRequest(profile_id=first_a,
                                                                  field_mask={"paths": ["identifiers", "traits"]}))
    assert {(i.type, i.value) for i in r.profile.identifiers} == {("anonymous_id", a), ("user_id", b)}
    assert [t.name for t in r.profile.traits] == ["city", "plan"] and r.profile.event_count == 0

    details = await refused(w.profiles.GetProfile, profile_pb2.GetProfileRequest(
        profile_id=first_a, field_mask={"paths": ["traits", "bogus", "identifiers.type"]}))
    assert details.startswith("field_mask.paths:") and "'bogus'" in details and "'identifiers.type'" in details
    assert "traits'" not in details.split(";")[0]  # a known field is not named as unknown

    t = await w.timeline(profile_id=first_b)
    assert t.profile_id == first_a and t.merged_profile_id == first_b and len(t.events) == 3


async def test_batch_get_reports_missing_lookups_in_order(stack):
    w = World(stack)
    users = [f"u-{uuid.uuid4().hex[:6]}-{i}" for i in range(3)]
    for i, u in enumerate(users):
        await w.identify({"n": i}, T0, user_id=u)
    pids = [(await w.profile("user_id", u, 1)).profile.profile_id for u in users]
    lookups = [profile_pb2.ProfileLookup(profile_id=pids[0]),
               profile_pb2.ProfileLookup(identifier=ident("user_id", users[1])),
               profile_pb2.ProfileLookup(profile_id="no-such-profile"),
               profile_pb2.ProfileLookup(identifier=ident("email", "nobody@example.com")),
               profile_pb2.ProfileLookup(identifier=ident("user_id", users[2])),
               profile_pb2.ProfileLookup(profile_id=pids[0])]
    r = await w.profiles.BatchGetProfiles(profile_pb2.BatchGetProfilesRequest(
        lookups=lookups, field_mask={"paths": ["traits"]}))
    assert [x.found for x in r.results] == [True, True, False, False, True, True]
    assert [x.lookup for x in r.results] == lookups
    assert [x.profile.profile_id for x in r.results] == [pids[0], pids[1], "", "", pids[2], pids[0]]
    assert json.loads(r.results[4].profile.traits[0].value_json) == 2 and not r.results[4].profile.identifiers

    b = w.profiles.BatchGetProfiles
    too_many = [profile_pb2.ProfileLookup(profile_id=f"p{i}") for i in range(1001)]
    assert "lookups: at most 1000" in await refused(b, profile_pb2.BatchGetProfilesRequest(lookups=too_many))
    bad = [lookups[0], profile_pb2.ProfileLookup(identifier=ident("Shoe Size", "42"))]
    assert "lookups[1].identifier.type" in await refused(b, profile_pb2.BatchGetProfilesRequest(lookups=bad))
    assert "lookups[0].lookup" in await refused(b, profile_pb2.BatchGetProfilesRequest(
        lookups=[profile_pb2.ProfileLookup()]))
    assert "field_mask.paths" in await refused(b, profile_pb2.BatchGetProfilesRequest(
        lookups=lookups, field_mask={"paths": ["nope"]}))
    assert not (await b(profile_pb2.BatchGetProfilesRequest())).results


async def test_search_filters_and_pages_by_profile_id(stack):
    w = World(stack)
    tag = uuid.uuid4().hex[:6]
    people = [
        {"plan": "pro", "age": 31, "email": f"ada.{tag}@Example.com", "vip": True},
        {"plan": "free", "age": 45, "email": f"bob.{tag}@other.org"},
        {"plan": "pro", "age": 19.5, "email": f"cy.{tag}@example.com", "tags": ["a"]},
        {"plan": "pro", "age": "unknown", "email": f"di.{tag}@example.com"},
        {"plan": "Pro", "email": f"eve.{tag}@EXAMPLE.COM"},
    ]
    users = [f"s-{tag}-{i}" for i in range(len(people))]
    for u, traits in zip(users, people, strict=True):
        await w.identify(traits, T0, user_id=u)
    pids = {u: (await w.profile("user_id", u, 1)).profile.profile_id for u in users}

    async def search(*filters, page_size=0, field_mask=None) -> list[str]:
        found, token = [], ""
        while True:
            r = await w.profiles.SearchProfiles(profile_pb2.SearchProfilesRequest(
                filters=list(filters), page_size=page_size, page_token=token, field_mask=field_mask))
            found.extend(p.profile_id for p in r.profiles)
            token = r.next_page_token
            if not token:
                return found

    def who(*i: int) -> list[str]:
        return sorted(pids[users[k]] for k in i)

    F = profile_pb2.TraitFilter
    assert await search(F(name="plan", equals_json='"pro"')) == who(0, 2, 3)
    assert await search(F(name="age", equals_json="31.0")) == who(0)  # JSON equality
    assert await search(F(name="vip", exists=True)) == who(0)
    assert await search(F(name="age", exists=False)) == who(4)
    assert await search(F(name="email", contains="@EXAMPLE.com")) == who(0, 2, 3, 4)
    assert await search(F(name="email", starts_with="BOB.")) == who(1)
    assert await search(F(name="email", contains="%")) == []  # LIKE wildcards are plain text
    assert await search(F(name="age", number=profile_pb2.NumberRange(gte=19.5, lt=45))) == who(0, 2)
    assert await search(F(name="age", number=profile_pb2.NumberRange(gt=19.5))) == who(0, 1)  # "unknown": no number
    assert await search(F(name="plan", equals_json='"pro"'), F(name="age", number={"lt": 40})) == who(0, 2)
    assert await search(F(name="plan", equals_json='"pro"'), page_size=1) == who(0, 2, 3)  # paged by id
    assert await search(F(name="tags", equals_json='["a"]')) == who(2)
    r = await w.profiles.SearchProfiles(profile_pb2.SearchProfilesRequest(
        filters=[F(name="plan", equals_json='"free"')], field_mask={"paths": ["traits.age"]}))
    assert [(t.name, t.value_json) for t in r.profiles[0].traits] == [("age", "45")]

    s = w.profiles.SearchProfiles
    page = await s(profile_pb2.SearchProfilesRequest(filters=[F(name="plan", equals_json='"pro"')], page_size=1))
    assert "page_token" in await refused(s, profile_pb2.SearchProfilesRequest(
        filters=[F(name="plan", equals_json='"free"')], page_token=page.next_page_token))
    assert "filters[1].equals_json" in await refused(s, profile_pb2.SearchProfilesRequest(
        filters=[F(name="plan", exists=True), F(name="plan", equals_json="pro")]))
    assert "filters[0].condition" in await refused(s, profile_pb2.SearchProfilesRequest(filters=[F(name="plan")]))
    assert "filters[0].name" in await refused(s, profile_pb2.SearchProfilesRequest(filters=[F(exists=True)]))
    assert "filters[0].number" in await refused(s, profile_pb2.SearchProfilesRequest(
        filters=[F(name="age", number={})]))
    assert "filters: at most 20" in await refused(s, profile_pb2.SearchProfilesRequest(
        filters=[F(name="x", exists=True)] * 21))
    assert "page_size" in await refused(s, profile_pb2.SearchProfilesRequest(page_size=5000))


async def test_export_streams_live_profiles_and_forgetting_deletes_the_timeline(stack):
    w = World(stack)
    a, b, c = (f"{k}-{uuid.uuid4().hex[:6]}" for k in "abc")
    await w.identify({"plan": "pro"}, T0, user_id=a)
    await w.track("Viewed", T0, anonymous_id=b)
    await w.profile("anonymous_id", b, 1)
    await w.track("Linked", T0 + timedelta(minutes=1), anonymous_id=b, user_id=a)  # merges a and b
    await w.identify({"plan": "free"}, T0, user_id=c)
    survivor = (await w.profile("user_id", a, 3)).profile
    other = (await w.profile("user_id", c, 1)).profile

    exported = [p async for p in w.profiles.ExportProfiles(profile_pb2.ExportProfilesRequest())]
    assert [p.profile_id for p in exported] == sorted([survivor.profile_id, other.profile_id])
    got = {p.profile_id: p for p in exported}[survivor.profile_id]
    got.computed_json = survivor.computed_json = ""  # computed traits trail the events (computing.py)
    assert got == survivor
    masked = [p async for p in w.profiles.ExportProfiles(profile_pb2.ExportProfilesRequest(
        field_mask={"paths": ["identifiers"]}))]
    assert all(p.identifiers and not p.traits and not p.event_count for p in masked)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        async for _ in w.profiles.ExportProfiles(profile_pb2.ExportProfilesRequest(field_mask={"paths": ["x"]})):
            pass
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    await w.identity.ForgetProfile(identity_pb2.ForgetProfileRequest(
        profile=identity_pb2.ProfileRef(profile_id=survivor.profile_id), reason="test"))

    async def gone():
        try:
            await w.timeline(profile_id=survivor.profile_id)
        except grpc.aio.AioRpcError as err:
            return err.code() == grpc.StatusCode.NOT_FOUND
        return False
    await eventually(gone)
    exported = [p.profile_id async for p in w.profiles.ExportProfiles(profile_pb2.ExportProfilesRequest())]
    assert exported == [other.profile_id]
