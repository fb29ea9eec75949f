"""Segments end to end: events through ingest -> identity -> profile -> segment. Membership
follows traits (from cdp.profile.changed), events (from cdp.identity.resolved), computed traits
(the profile's NPS), and a merge that brings an order from the anonymous profile; each
transition is published once; an audit (SQL over the projection) agrees with the stream."""

from __future__ import annotations

import json
import os
import uuid
from datetime import timedelta

import pytest

from cdp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from cdp.segment.v1 import events_pb2 as segment_events
from cdp.segment.v1 import segment_pb2, segment_pb2_grpc
from cdp_core import envelope
from cdp_core.testing import eventually
from cdp_core.testing.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture
async def full_stack(fresh_nats_url, database_server_url, auth_secret):
    from cdp_identity.service import SPEC as IDENTITY
    from cdp_ingest.service import SPEC as INGEST
    from cdp_profile.service import SPEC as PROFILE
    from cdp_segment.service import SPEC as SEGMENT

    s = Stack(fresh_nats_url, database_server_url, auth_secret, "its_" + os.urandom(4).hex())
    await s.start(INGEST, IDENTITY, PROFILE, SEGMENT)
    try:
        yield s
    finally:
        await s.stop()


def common(at, **ids) -> ingest_pb2.EventCommon:
    c = ingest_pb2.EventCommon(message_id=str(uuid.uuid4()), **ids)
    c.timestamp.CopyFrom(envelope.ts(at))
    return c


async def test_segments_follow_the_log_end_to_end(full_stack):
    ingest = ingest_pb2_grpc.IngestServiceStub(full_stack.channel("ingest"))
    seg = segment_pb2_grpc.SegmentServiceStub(full_stack.channel("segment"))
    await seg.ApplySegments(segment_pb2.ApplySegmentsRequest(yaml="""
segments:
  - name: gold-buyers
    where:
      all:
        - trait: {name: plan, op: equals, value: gold}
        - event: {name: Order Completed, window: {last_days: 30}}
"""))
    now = envelope.now()
    anon, user = f"a-{uuid.uuid4().hex[:6]}", f"u-{uuid.uuid4().hex[:6]}"
    await ingest.Identify(ingest_pb2.IdentifyRequest(common=common(now - timedelta(hours=2), user_id=user),
                                                     traits_json=json.dumps({"plan": "gold"})))
    await ingest.Track(ingest_pb2.TrackRequest(common=common(now - timedelta(hours=1), anonymous_id=anon),
                                               event="Order Completed", properties_json=json.dumps({"total": 10})))

    async def member(name: str, want: bool):
        r = await seg.ListMembers(segment_pb2.ListMembersRequest(name=name))
        ids = [m.profile_id for m in r.members]
        return ids if bool(ids) == want else None

    assert await member("gold-buyers", False) == []
    # the anonymous visitor logs in: identity merges the two profiles, the order joins the gold profile
    await ingest.Identify(ingest_pb2.IdentifyRequest(common=common(now - timedelta(minutes=30), user_id=user,
                                                                   anonymous_id=anon), traits_json="{}"))
    [survivor] = await eventually(lambda: member("gold-buyers", True), timeout=30)
    # an NPS answer of 3: the profile's computed nps reaches the detractors (a suppression list)
    await ingest.Track(ingest_pb2.TrackRequest(common=common(now - timedelta(minutes=10), user_id=user),
                                               event="Survey Completed",
                                               properties_json=json.dumps({"survey_type": "nps", "score": 3})))
    assert await eventually(lambda: member("nps-detractors", True), timeout=30) == [survivor]
    r = await seg.CheckSuppression(segment_pb2.CheckSuppressionRequest(profile_id=survivor, channel="email"))
    assert r.suppressed
    audit = await seg.AuditSegment(segment_pb2.AuditSegmentRequest(name="gold-buyers"))
    assert (audit.stored_members, audit.evaluated_members, list(audit.only_evaluated)) == (1, 1, [])

    entered = []
    sub = await full_stack.services["segment"].runtime.bus.js.subscribe(
        "cdp.segment.entered", stream="CDP_SEGMENT", ordered_consumer=True)
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=1.0)
            except Exception:  # noqa: BLE001 - read all there is
                break
            p = envelope.unpack(envelope.decode(msg.data), segment_events.SegmentEntered)
            entered.append((p.segment_name, p.profile_id))
    finally:
        await sub.unsubscribe()
    assert entered.count(("gold-buyers", survivor)) == 1
    assert entered.count(("nps-detractors", survivor)) == 1


async def test_predefined_audiences_hold_exactly_the_simulated_people(full_stack, tmp_path, monkeypatch):
    """A simulated world ending yesterday, imported through ingest: `purchasers-30d` holds the
    profiles of exactly the people who completed an order in the last 30 days (ground truth:
    the simulator's message -> person table; web and app orders, the Segment calls imported here), and
    an audit agrees with the stream; `nps-detractors` holds the people whose latest answer is 6 or
    less; each `engaged-<channel>-30d` the profiles with an open, click or tap of the channel;
    product-page-abandoners, new-visitors, discount-seekers, at-risk and cart-abandoners the
    profiles the world's messages make so; anonymous-visitors the profiles identity knows only by anonymous ids."""
    import csv
    from datetime import UTC, date, datetime

    from cdp_cli.testing import run_cdp
    from cdp_sim import World

    days = 40
    world = World.generate(people=150, days=days, seed=2)  # a fixed world (seed 2 has an NPS detractor)
    world.write(tmp_path / "world")
    # moved in time to end yesterday: the windows are relative to now
    shift = date.today() - (world.cfg.start_date + timedelta(days=days))

    def moved(m: dict) -> dict:
        for k in ("timestamp", "sentAt", "originalTimestamp"):
            if m.get(k):
                m[k] = (datetime.fromisoformat(m[k].replace("Z", "+00:00")) + shift).isoformat().replace("+00:00", "Z")
        return m
    messages = [moved(json.loads(line)) for line in open(tmp_path / "world" / "events.jsonl", encoding="utf-8")]
    with open(tmp_path / "world" / "events.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(m) + "\n" for m in messages)
    person_of = {r["message_id"]: r["person_id"]
                 for r in csv.DictReader(open(tmp_path / "world" / "truth_events.csv", encoding="utf-8"))}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CDP_TOKEN", full_stack.token)
    monkeypatch.setenv("CDP_INGEST_GRPC_PORT", str(full_stack.services["ingest"].grpc.port))
    await run_cdp("import", "events", str(tmp_path / "world" / "events.jsonl"), "--source", "sim")
    tracks = sum(1 for m in messages if m["type"] == "track")
    pool = full_stack.services["segment"].runtime.pool

    async def projected():
        async with pool.acquire() as conn:
            return await conn.fetchval("SELECT count(*) FROM seg_events") == tracks
    await eventually(projected, timeout=240, interval=0.5)

    now = datetime.now(UTC)
    horizon = now - timedelta(days=30)
    orders = [m for m in messages if m["type"] == "track" and m["event"] == "Order Completed"
              and horizon < datetime.fromisoformat(m["timestamp"].replace("Z", "+00:00")) <= now]
    expected_people = {person_of[m["messageId"]] for m in orders}
    assert len(expected_people) >= 5  # the world has buyers in the window

    async def members():
        async with pool.acquire() as conn:
            return {r[0] for r in await conn.fetch(
                "SELECT m.profile_id FROM seg_memberships m JOIN seg_segments s USING (segment_id) "
                "WHERE s.name = 'purchasers-30d' AND m.member")}
    seg = segment_pb2_grpc.SegmentServiceStub(full_stack.channel("segment"))
    audit = await seg.AuditSegment(segment_pb2.AuditSegmentRequest(name="purchasers-30d"))
    assert (list(audit.only_stored), list(audit.only_evaluated)) == ([], [])
    member_ids = await members()
    # every order's profile is a member, and the members' people are exactly the buyers: the
    # order ids of each member's events lead to the simulator's people
    person_of_order = {str(m["properties"].get("order_id")): person_of[m["messageId"]] for m in orders}
    people_per_member: dict[str, set[str]] = {}
    async with pool.acquire() as conn:
        for r in await conn.fetch("SELECT profile_id, properties->>'order_id' FROM seg_events "
                                  "WHERE name = 'Order Completed' AND occurred_at > $1", horizon):
            people_per_member.setdefault(r[0], set()).add(person_of_order[r[1]])
    people_of_members = set().union(*people_per_member.values())
    assert set(people_per_member) == member_ids
    assert all(len(p) == 1 for p in people_per_member.values()), people_per_member  # one person per profile
    assert people_of_members == expected_people

    # nps-detractors: the people whose latest NPS answer is 6 or less (computed by the profile
    # service, carried by cdp.profile.changed)
    latest: dict[str, tuple[str, int]] = {}
    for m in messages:
        if m["type"] == "track" and m["event"] == "Survey Completed":
            who = person_of[m["messageId"]]
            if who not in latest or m["timestamp"] > latest[who][0]:
                latest[who] = (m["timestamp"], m["properties"]["score"])
    detractors = {who for who, (_, score) in latest.items() if score <= 6}
    person_of_response = {m["properties"]["response_id"]: person_of[m["messageId"]] for m in messages
                          if m["type"] == "track" and m["event"] == "Survey Completed"}

    async def detractor_people():
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT e.profile_id, e.properties->>'response_id' FROM seg_events e JOIN seg_memberships m "
                "ON m.profile_id = e.profile_id JOIN seg_segments s ON s.segment_id = m.segment_id "
                "WHERE s.name = 'nps-detractors' AND m.member AND e.name = 'Survey Completed'")
        got = {person_of_response[r[1]] for r in rows}
        return got if got == detractors else None
    assert detractors and await eventually(detractor_people, timeout=60) == detractors

    # the engaged-<channel>-30d audiences hold exactly the profiles that hold an open, a click or
    # a tap of that channel in the last 30 days (the simulator's engagement events; each
    # message's profile as identity resolves its ids at the end)
    from cdp.common.v1 import identifier_pb2
    from cdp.identity.v1 import identity_pb2, identity_pb2_grpc

    identity = identity_pb2_grpc.IdentityServiceStub(full_stack.channel("identity"))
    profiles: dict[tuple[str, str], str] = {}

    async def profile_of(m: dict) -> str:
        key = ("user_id", m["userId"]) if m.get("userId") else ("anonymous_id", m["anonymousId"])
        if key not in profiles:
            r = await identity.ResolveIdentifier(identity_pb2.ResolveIdentifierRequest(
                identifier=identifier_pb2.Identifier(type=key[0], value=key[1])))
            profiles[key] = r.profile_id
        return profiles[key]

    async def holds(name: str, want: set[str]) -> bool:
        """The audience's members are exactly `want` (an empty audience is an answer too)."""
        async with pool.acquire() as conn:
            got = {r[0] for r in await conn.fetch(
                "SELECT m.profile_id FROM seg_memberships m JOIN seg_segments s USING (segment_id) "
                "WHERE s.name = $1 AND m.member", name)}
        return got == want

    engagement = {"email": {"Email Opened", "Email Link Clicked"}, "sms": {"SMS Link Clicked"},
                  "whatsapp": {"WhatsApp Opened", "WhatsApp Link Clicked"}, "push": {"Push Notification Tapped"}}
    # away from the window's edge, so that the passage of time during the test changes nothing
    edge = (horizon - timedelta(hours=1), horizon + timedelta(hours=1))
    checked = 0
    for channel, names in engagement.items():
        engaged = [m for m in messages if m["type"] == "track" and m["event"] in names]
        at = [datetime.fromisoformat(m["timestamp"].replace("Z", "+00:00")) for m in engaged]
        if any(edge[0] <= t <= edge[1] for t in at):
            continue
        want = {await profile_of(m) for m, t in zip(engaged, at, strict=True) if horizon < t <= now}

        assert await eventually(lambda name=f"engaged-{channel}-30d", want=want: holds(name, want), timeout=60), channel
        checked += bool(want)
    assert checked >= 2  # the world has engaged people on at least two channels

    # three more audiences, each from the world's own messages, profile by profile:
    # product-page-abandoners (a product viewed in the last 7 days, nothing added to the cart
    # and no order in them), new-visitors (the profile's first event in the last 7 days) and
    # discount-seekers (two orders or more, half of them or more with a coupon or a discount)
    def at_(m: dict) -> datetime:
        return datetime.fromisoformat(m["timestamp"].replace("Z", "+00:00"))

    by_profile: dict[str, list[dict]] = {}
    for m in messages:
        by_profile.setdefault(await profile_of(m), []).append(m)
    week = now - timedelta(days=7)

    def named(ms: list[dict], name: str, since: datetime | None = None) -> list[dict]:
        return [m for m in ms if m["type"] == "track" and m["event"] == name and (since is None or at_(m) > since)]

    def discounted(order: list[dict]) -> bool:
        def off(x: dict) -> bool:
            d = x.get("discount")
            return bool(x.get("coupon")) or (isinstance(d, int | float) and d > 0)
        return any(off(m["properties"]) or any(off(p) for p in m["properties"].get("products") or [])
                   for m in order)

    def seeker(ms: list[dict]) -> bool:
        orders: dict[str, list[dict]] = {}
        for m in named(ms, "Order Completed"):
            orders.setdefault(str(m["properties"].get("order_id") or m["messageId"]), []).append(m)
        return len(orders) >= 2 and sum(discounted(o) for o in orders.values()) / len(orders) >= 0.5

    def overdue_margin(ms: list[dict]) -> float | None:
        """at-risk: two orders or more and none for more than twice the usual interval, i.e.
        (now - last) * (orders - 1) > 2 * (last - first); the margin in seconds (None: fewer)."""
        times = sorted({str(m["properties"].get("order_id") or m["messageId"]): at_(m)
                        for m in named(ms, "Order Completed")}.values())
        if len(times) < 2:
            return None
        return ((now - times[-1]) * (len(times) - 1) - 2 * (times[-1] - times[0])).total_seconds()

    async def known(pid: str) -> bool:
        g = await identity.GetIdentityGraph(identity_pb2.GetIdentityGraphRequest(
            profile=identity_pb2.ProfileRef(profile_id=pid)))
        return any(i.identifier.type not in ("anonymous_id", "device_id") for i in g.identifiers)

    def carts(ms: list[dict]) -> list[datetime]:
        """cart-abandoners: the times of the latest add of each product still in the cart (no
        order containing it, no removal of it, at or after that add)."""
        def keys(x: dict) -> set:
            return {(k, str(x[k])) for k in ("sku", "product_id") if x.get(k)}
        latest: dict[tuple, tuple[datetime, set]] = {}
        for m in named(ms, "Product Added"):
            k = keys(m["properties"])
            for key in k:
                if key not in latest or at_(m) > latest[key][0]:
                    latest[key] = (at_(m), k)
        gone = [(at_(m), keys(x)) for m in named(ms, "Order Completed") for x in m["properties"].get("products") or []]
        gone += [(at_(m), keys(m["properties"])) for m in named(ms, "Product Removed")]
        return [t for t, k in latest.values() if not any(g >= t and k & gk for g, gk in gone)]

    margins = {p: overdue_margin(ms) for p, ms in by_profile.items()}
    day_ago = now - timedelta(days=1)
    added = {p: carts(ms) for p, ms in by_profile.items()}
    expected = {
        "product-page-abandoners": {p for p, ms in by_profile.items() if named(ms, "Product Viewed", week)
                                    and not named(ms, "Product Added", week) and not named(ms, "Order Completed", week)},
        "new-visitors": {p for p, ms in by_profile.items() if min(at_(m) for m in ms) > week},
        "discount-seekers": {p for p, ms in by_profile.items() if seeker(ms)},
        "at-risk": {p for p, m in margins.items() if m is not None and m > 0},
        "cart-abandoners": {p for p, ts in added.items() if any(t <= day_ago for t in ts)},
        # anonymous: the profile's identity graph (what identity made of its messages' ids and
        # traits) holds no identifier but anonymous ids and devices
        "anonymous-visitors": {p for p in by_profile if not await known(p)},
    }
    near_edge = any(abs((at_(m) - week).total_seconds()) < 3600 for m in messages)
    for name, want in expected.items():
        if near_edge and name in ("product-page-abandoners", "new-visitors"):
            continue  # the window's edge passes during the test: membership may flip meanwhile
        if name == "at-risk" and any(m is not None and abs(m) < 3600 for m in margins.values()):
            continue
        if name == "cart-abandoners" and any(abs((t - day_ago).total_seconds()) < 3600 for ts in added.values()
                                             for t in ts):
            continue

        assert await eventually(lambda name=name, want=want: holds(name, want), timeout=60), name
    assert expected["product-page-abandoners"] and expected["new-visitors"] and expected["anonymous-visitors"]
    assert expected["cart-abandoners"]
