"""Accounts (B2B), StreamProfileChanges and the access request, through the real path
(ingest -> identity -> profile, real NATS and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import time
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
        self.stack = stack
        self.ingest = ingest_pb2_grpc.IngestServiceStub(stack.channel("ingest"))
        self.profiles = profile_pb2_grpc.ProfileServiceStub(stack.channel("profile"))
        self.identity = identity_pb2_grpc.IdentityServiceStub(stack.channel("identity"))

    @staticmethod
    def common(at: datetime, **ids) -> ingest_pb2.EventCommon:
        c = ingest_pb2.EventCommon(message_id=str(uuid.uuid4()), **ids)
        c.timestamp.CopyFrom(envelope.ts(at))
        return c

    async def track(self, event: str, at: datetime, props: dict | None = None, **ids) -> str:
        return (await self.ingest.Track(ingest_pb2.TrackRequest(
            common=self.common(at, **ids), event=event, properties_json=json.dumps(props or {})))).event_id

    async def identify(self, traits: dict, at: datetime, **ids) -> str:
        return (await self.ingest.Identify(ingest_pb2.IdentifyRequest(
            common=self.common(at, **ids), traits_json=json.dumps(traits)))).event_id

    async def group(self, group_id: str, traits: dict, at: datetime, **ids) -> str:
        return (await self.ingest.Group(ingest_pb2.GroupRequest(
            common=self.common(at, **ids), group_id=group_id, traits_json=json.dumps(traits)))).event_id

    async def profile(self, t: str, v: str, events: int) -> profile_pb2.Profile:
        async def get():
            try:
                r = await self.profiles.GetProfile(profile_pb2.GetProfileRequest(identifier=ident(t, v)))
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND:
                    return None
                raise
            return r.profile if r.profile.event_count == events else None
        return await eventually(get)

    async def account(self, account_id: str, **kw) -> profile_pb2.GetAccountResponse:
        return await self.profiles.GetAccount(profile_pb2.GetAccountRequest(account_id=account_id, **kw))

    async def account_when(self, account_id: str, test) -> profile_pb2.GetAccountResponse:
        async def get():
            try:
                r = await self.account(account_id)
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND:
                    return None
                raise
            return r if test(r) else None
        return await eventually(get)


async def test_group_calls_build_accounts_that_follow_merges_and_forgets(stack):
    w = World(stack)
    tag = uuid.uuid4().hex[:6]
    acme, other = f"acme-{tag}", f"initech-{tag}"
    ada, bob, visitor = f"ada-{tag}", f"bob-{tag}", f"anon-{tag}"
    await w.identify({"email": f"{ada}@example.com", "plan": "personal"}, T0, user_id=ada)
    await w.group(acme, {"name": "Acme", "plan": "pro"}, T0 + timedelta(minutes=1), user_id=ada)
    await w.track("Order Completed", T0 + timedelta(minutes=2), {"order_id": f"o1-{tag}", "revenue": 100},
                  user_id=ada)
    await w.group(acme, {"plan": "enterprise", "employees": 50}, T0 + timedelta(minutes=3), user_id=bob)
    await w.group(acme, {"plan": "free", "industry": "anvils"}, T0 - timedelta(days=1), user_id=bob)  # older
    await w.track("Order Completed", T0 + timedelta(minutes=10), {"order_id": f"o2-{tag}", "total": 50.5},
                  user_id=bob)
    await w.track("Order Completed", T0 + timedelta(minutes=11), {"order_id": f"o2-{tag}", "total": 50.5},
                  user_id=bob)  # the same order again: counted once
    await w.track("Dashboard Viewed", T0 + timedelta(minutes=20), user_id=bob)

    r = await w.account_when(acme, lambda r: r.account.user_count == 2 and r.account.revenue_total == 150.5
                             and r.account.last_activity_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(minutes=20))
    a = r.account
    assert {t.name: json.loads(t.value_json) for t in a.traits} == {
        "name": "Acme", "plan": "enterprise", "employees": 50, "industry": "anvils"}
    assert a.order_count == 2
    assert a.first_seen.ToDatetime(tzinfo=UTC) == T0 - timedelta(days=1)
    assert a.last_seen.ToDatetime(tzinfo=UTC) == T0 + timedelta(minutes=3)
    p_ada = await w.profile("user_id", ada, 3)
    p_bob = await w.profile("user_id", bob, 5)
    assert [u.profile_id for u in r.users] == sorted([p_ada.profile_id, p_bob.profile_id])
    bob_user = {u.profile_id: u for u in r.users}[p_bob.profile_id]
    assert bob_user.first_linked_at.ToDatetime(tzinfo=UTC) == T0 - timedelta(days=1)
    assert bob_user.last_linked_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(minutes=3)
    # a group call's traits are the account's, not the person's
    assert {t.name: json.loads(t.value_json) for t in p_ada.traits}["plan"] == "personal"
    assert "employees" not in {t.name for t in p_bob.traits}
    assert list(p_ada.account_ids) == [acme] and list(p_bob.account_ids) == [acme]

    page1 = await w.account(acme, page_size=1)
    assert len(page1.users) == 1 and page1.next_page_token
    page2 = await w.account(acme, page_size=1, page_token=page1.next_page_token)
    assert [u.profile_id for u in [*page1.users, *page2.users]] == [u.profile_id for u in r.users]
    assert not page2.next_page_token

    # a visitor joins another account, then signs in as ada: the memberships follow the merge
    await w.group(other, {"name": "Initech"}, T0 + timedelta(minutes=30), anonymous_id=visitor)
    await w.profile("anonymous_id", visitor, 1)
    await w.track("Signed In", T0 + timedelta(minutes=31), anonymous_id=visitor, user_id=ada)
    merged = await w.profile("user_id", ada, 5)
    assert list(merged.account_ids) == sorted([acme, other])
    r = await w.account_when(other, lambda r: [u.profile_id for u in r.users] == [merged.profile_id])
    assert r.account.user_count == 1
    r = await w.account(acme)
    assert merged.profile_id in {u.profile_id for u in r.users} and r.account.user_count == 2

    # forgetting bob removes him from the account; the account stays
    await w.identity.ForgetProfile(identity_pb2.ForgetProfileRequest(
        profile=identity_pb2.ProfileRef(profile_id=p_bob.profile_id), reason="test"))
    # (revenue comes from the members' computed traits, which trail their events)
    r = await w.account_when(acme, lambda r: r.account.user_count == 1 and r.account.revenue_total == 100)
    assert [u.profile_id for u in r.users] == [merged.profile_id]
    assert r.account.revenue_total == 100 and r.account.order_count == 1
    assert {t.name for t in r.account.traits} == {"name", "plan", "employees", "industry"}

    with pytest.raises(grpc.aio.AioRpcError) as e:
        await w.account("no-such-account-" + tag)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "account_id" in e.value.details()
    for bad, field in ((profile_pb2.GetAccountRequest(), "account_id"),
                       (profile_pb2.GetAccountRequest(account_id=acme, page_size=5000), "page_size"),
                       (profile_pb2.GetAccountRequest(account_id=other, page_token=page1.next_page_token),
                        "page_token")):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await w.profiles.GetAccount(bad)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and e.value.details().startswith(field)


async def _consumers(stack: Stack) -> int:
    js = stack.services["profile"].runtime.bus.js
    return (await js.stream_info("CDP_PROFILE")).state.consumer_count


async def _no_consumers(stack: Stack) -> bool:
    return await _consumers(stack) == 0


def holds(test):
    async def check():
        return test()
    return check


async def test_stream_profile_changes_follows_new_events_and_stops_on_cancel(stack):
    w = World(stack)
    tag = uuid.uuid4().hex[:6]
    me, noise = f"me-{tag}", f"noise-{tag}"
    first = await w.identify({"plan": "free"}, T0, user_id=me)
    pid = (await w.profile("user_id", me, 1)).profile_id

    got: list[profile_pb2.ProfileChange] = []
    call = w.profiles.StreamProfileChanges(profile_pb2.StreamProfileChangesRequest(profile_ids=[pid]))

    async def follow():
        async for change in call:
            got.append(change)

    task = asyncio.create_task(follow())
    await eventually(lambda: _consumers(stack))  # subscribed: changes from now on
    await w.identify({"plan": "noise"}, T0, user_id=noise)
    e2 = await w.identify({"plan": "pro"}, T0 + timedelta(minutes=1), user_id=me)
    await w.profile("user_id", me, 2)  # applied: e3 comes in a batch of its own, so a change of its own
    e3 = await w.track("Viewed", T0 + timedelta(minutes=2), user_id=me)
    await eventually(holds(lambda: len(got) >= 2))
    assert [c.change.event_id for c in got] == [e2, e3]
    assert all(c.change.profile_id == pid for c in got)
    assert list(got[0].change.changed_traits) == ["plan"] and got[1].change.event_count == 3
    assert got[0].sequence < got[1].sequence and got[0].event_id and got[0].recorded_at.seconds
    assert 0 < got[0].change.revision < got[1].change.revision

    call.cancel()
    await asyncio.wait({task}, timeout=5)
    assert task.done()  # the iteration ends (cancelled) ...
    await eventually(lambda: _no_consumers(stack))  # ... and the server let go of its consumer

    # from a sequence: history, every profile (no filter)
    replay = w.profiles.StreamProfileChanges(profile_pb2.StreamProfileChangesRequest(from_sequence=1))
    seen = []
    async for change in replay:
        seen.append(change.change.event_id)
        if change.change.event_id == e3:
            break
    replay.cancel()
    assert seen[0] == first and e2 in seen and len(seen) == 4

    with pytest.raises(grpc.aio.AioRpcError) as e:
        async for _ in w.profiles.StreamProfileChanges(profile_pb2.StreamProfileChangesRequest(profile_ids=[""])):
            pass
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "profile_ids[0]" in e.value.details()


async def test_stream_profile_changes_ends_at_shutdown_with_where_to_resume(stack):
    w = World(stack)
    user = "u-" + uuid.uuid4().hex[:6]
    call = w.profiles.StreamProfileChanges(profile_pb2.StreamProfileChangesRequest(from_now=True))
    got = []

    async def follow():
        async for change in call:
            got.append(change)

    task = asyncio.create_task(follow())
    await eventually(lambda: _consumers(stack))
    await w.identify({"plan": "pro"}, T0, user_id=user)
    await eventually(holds(lambda: got))
    started = time.monotonic()
    await stack.services["profile"].stop()
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await asyncio.wait_for(task, 5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert f"from_sequence {got[-1].sequence + 1}" in e.value.details()
    assert time.monotonic() - started < 5


async def test_the_access_request_returns_everything_held_about_the_person(stack, monkeypatch):
    from cdp_profile import grpc_api

    monkeypatch.setattr(grpc_api, "PERSON_EVENTS_CHUNK", 3)  # several event messages
    w = World(stack)
    tag = uuid.uuid4().hex[:6]
    user, email = f"p-{tag}", f"p.{tag}@example.com"
    ids = [await w.identify({"email": email, "name": "Ada"}, T0, user_id=user)]
    ids.append(await w.group(f"acct-{tag}", {"name": "Acme"}, T0 + timedelta(minutes=1), user_id=user))
    for i in range(5):
        ids.append(await w.track("Order Completed", T0 + timedelta(minutes=2 + i),
                                 {"order_id": f"o{i}", "revenue": 10}, user_id=user))
    ids.append(await w.identify({"name": "Ada L."}, T0 + timedelta(minutes=9), user_id=user))
    p = await w.profile("user_id", user, 8)

    async def computed():  # computed traits trail the events (computing.py)
        parts = [x async for x in w.profiles.GetPersonData(profile_pb2.GetPersonDataRequest(
            identifier=ident("email", email.upper())))]
        return parts if parts[0].person.computed_json else None

    parts = await eventually(computed)
    person = parts[0].person
    assert person.profile_id == p.profile_id and person.event_count == 8
    assert {(i.type, i.value) for i in person.identifiers} == {("user_id", user), ("email", email)}
    traits = {t.name: t for t in person.traits}
    assert json.loads(traits["name"].value_json) == "Ada L." and traits["name"].event_id == ids[-1]
    assert traits["name"].updated_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(minutes=9)
    assert traits["name"].source_id and traits["name"].source_kind
    assert json.loads(person.computed_json)["orders"]["count"] == 5
    assert [a.account_id for a in person.accounts] == [f"acct-{tag}"]
    assert person.accounts[0].first_linked_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(minutes=1)
    assert person.generated_at.seconds > 0
    assert all(not x.HasField("person") for x in parts[1:]) and [len(x.events) for x in parts[1:]] == [3, 3, 2]
    events = [e for x in parts[1:] for e in x.events]
    assert [e.event_id for e in events] == ids  # every event, oldest first
    assert json.loads(events[1].traits_json) == {"name": "Acme"} and events[1].kind == "group"

    with pytest.raises(grpc.aio.AioRpcError) as e:
        async for _ in w.profiles.GetPersonData(profile_pb2.GetPersonDataRequest(profile_id="nobody")):
            pass
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
