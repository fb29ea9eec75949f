"""Declared computed traits through the real path (ingest -> identity -> profile, real NATS and
PostgreSQL): backfill of existing profiles on apply (over several batches), updates in the
stream, exact recomputation after a merge, changes and deletes, bad definitions changing
nothing, `cdp trait apply|list|delete` against the service, and the same values whatever the
order the projection gets the events in."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from cdp.common.v1 import identifier_pb2
from cdp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc, traits_pb2, traits_pb2_grpc
from cdp_core import envelope
from cdp_core.testing import apply_envelopes, eventually
from cdp_core.testing.stack import Stack, pinned_logs

pytestmark = pytest.mark.component
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)

DEFINITIONS = """
definitions:
  - name: orders_30d
    description: Orders in the 30 days up to the latest event
    event: {kind: track, name: Order Completed}
    aggregation: count
    window: 30d
  - name: revenue_total
    event:
      name: Order Completed
      where: [{property: total, gte: 0}]
    aggregation: sum
    property: total
    window: all
  - name: favourite_store
    event: {where: [{property: store, exists: true}]}
    aggregation: most_frequent
    property: store
    window: all
"""


@pytest.fixture
async def stack(fresh_nats_url, database_server_url, auth_secret, monkeypatch):
    from cdp_identity.service import SPEC as IDENTITY
    from cdp_ingest.service import SPEC as INGEST
    from cdp_profile import declared_store
    from cdp_profile.service import SPEC as PROFILE

    monkeypatch.setattr(declared_store, "BACKFILL_BATCH", 2)  # several batches even for a few profiles
    monkeypatch.setattr(declared_store, "BACKFILL_POLL_S", 0.2)
    with pinned_logs():  # the CLI test runs `cdp` in this process
        s = Stack(fresh_nats_url, database_server_url, auth_secret, "dt_" + os.urandom(4).hex())
        try:
            await s.start(INGEST, IDENTITY, PROFILE)
            monkeypatch.setenv("CDP_PROFILE_ADDR", s.address("profile"))
            monkeypatch.setenv("CDP_TOKEN", s.token)
            yield s
        finally:
            await s.stop()


class World:
    def __init__(self, stack: Stack):
        self.ingest = ingest_pb2_grpc.IngestServiceStub(stack.channel("ingest"))
        self.profiles = profile_pb2_grpc.ProfileServiceStub(stack.channel("profile"))
        self.traits = traits_pb2_grpc.TraitServiceStub(stack.channel("profile"))

    async def track(self, event: str, at: datetime, props: dict | None = None, **ids) -> str:
        c = ingest_pb2.EventCommon(message_id=str(uuid.uuid4()), **ids)
        c.timestamp.CopyFrom(envelope.ts(at))
        r = await self.ingest.Track(ingest_pb2.TrackRequest(common=c, event=event,
                                                            properties_json=json.dumps(props or {})))
        return r.event_id

    async def order(self, at: datetime, total, store: str, **ids) -> str:
        return await self.track("Order Completed", at, {"total": total, "store": store}, **ids)

    async def get(self, t: str, v: str) -> profile_pb2.Profile:
        r = await self.profiles.GetProfile(profile_pb2.GetProfileRequest(
            identifier=identifier_pb2.Identifier(type=t, value=v)))
        return r.profile

    async def declared(self, t: str, v: str, *, events: int | None = None, expect: dict | None = None) -> dict:
        """The profile's declared values once it has `events` events (and, if given, these values)."""
        async def check():
            try:
                p = await self.get(t, v)
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND:
                    return None
                raise
            if events is not None and p.event_count != events:
                return None
            got = json.loads(p.computed_json or "{}").get("declared")
            if expect is not None and got != expect:  # computed traits trail the events: wait for them
                return None
            return {"values": got}
        return (await eventually(check))["values"]

    async def definitions(self) -> dict[str, traits_pb2.TraitDefinition]:
        r = await self.traits.ListTraitDefinitions(traits_pb2.ListTraitDefinitionsRequest())
        return {t.name: t for t in r.definitions}

    async def backfilled(self, *names: str) -> dict[str, traits_pb2.TraitDefinition]:
        async def done():
            held = await self.definitions()
            return held if all(n in held and held[n].backfill.done for n in names) else None
        return await eventually(done)

    async def apply(self, text: str, dry_run: bool = False) -> traits_pb2.ApplyTraitDefinitionsResponse:
        return await self.traits.ApplyTraitDefinitions(traits_pb2.ApplyTraitDefinitionsRequest(yaml=text,
                                                                                              dry_run=dry_run))


async def refused(call, request, code=grpc.StatusCode.INVALID_ARGUMENT) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call(request)
    assert e.value.code() == code, e.value.details()
    return e.value.details()


async def test_backfill_stream_merge_change_and_bad_input(stack):
    w = World(stack)
    a, b, x = ("u-" + uuid.uuid4().hex[:8] for _ in range(3))
    others = ["o-" + uuid.uuid4().hex[:8] for _ in range(4)]
    # profiles that exist before any definition
    await w.order(T0 - 40 * DAY, 100, "Madrid", user_id=a)
    await w.order(T0 - 10 * DAY, "25.5", "Lisbon", user_id=a)
    await w.order(T0 - 1 * DAY, 10, "Lisbon", user_id=a)
    await w.track("Product Viewed", T0, {"sku": "S1"}, user_id=a)
    await w.order(T0 - 5 * DAY, 50, "Madrid", user_id=b)
    for o in others:
        await w.track("Product Viewed", T0, {"sku": "S2"}, user_id=o)
    async def four_events():
        try:
            p = await w.get("user_id", a)
        except grpc.aio.AioRpcError:
            return None
        return p if p.event_count == 4 else None

    assert "declared" not in json.loads((await eventually(four_events)).computed_json or "{}")  # none declared yet
    await w.declared("user_id", b, events=1)
    for o in others:
        await w.declared("user_id", o, events=1)

    # bad definitions: the field is named, nothing changes
    bad = DEFINITIONS + "  - {name: t_bad, aggregation: count, window: 5y}\n"
    assert "definitions[3].window" in await refused(w.traits.ApplyTraitDefinitions,
                                                    traits_pb2.ApplyTraitDefinitionsRequest(yaml=bad))
    bad = DEFINITIONS.replace("aggregation: sum", "aggregation: median")
    details = await refused(w.traits.ApplyTraitDefinitions, traits_pb2.ApplyTraitDefinitionsRequest(yaml=bad))
    assert details.startswith("definitions[1].aggregation:")
    bad = DEFINITIONS.replace("gte: 0", "gte: zero")
    assert "definitions[1].event.where[0].gte" in await refused(
        w.traits.ApplyTraitDefinitions, traits_pb2.ApplyTraitDefinitionsRequest(yaml=bad))
    assert await w.definitions() == {}

    # dry run: validated, reported, nothing applied
    r = await w.apply(DEFINITIONS, dry_run=True)
    assert [(x.outcome, x.definition.name) for x in r.results] == [
        ("created", "orders_30d"), ("created", "revenue_total"), ("created", "favourite_store")]
    assert await w.definitions() == {}

    # apply: existing profiles are backfilled (7 live profiles, 2 a batch)
    r = await w.apply(DEFINITIONS)
    assert [x.outcome for x in r.results] == ["created"] * 3
    assert all(x.definition.version > 0 for x in r.results)
    held = await w.backfilled("orders_30d", "revenue_total", "favourite_store")
    assert {n: (t.backfill.profiles_done, t.backfill.profiles_total) for n, t in held.items()} == {
        n: (6, 6) for n in held}  # a, b and the four others
    assert held["revenue_total"].aggregation == "sum" and held["revenue_total"].property == "total"
    assert json.loads(held["orders_30d"].event_json) == {"kinds": ["track"], "names": ["Order Completed"]}
    assert await w.declared("user_id", a) == {"orders_30d": 2, "revenue_total": 135.5, "favourite_store": "Lisbon"}
    assert await w.declared("user_id", b) == {"orders_30d": 1, "revenue_total": 50, "favourite_store": "Madrid"}
    assert await w.declared("user_id", others[0]) == {"orders_30d": 0, "revenue_total": None,
                                                      "favourite_store": None}
    # applying the same document again changes nothing
    again = await w.apply(DEFINITIONS)
    assert [x.outcome for x in again.results] == ["unchanged"] * 3
    assert [x.definition.version for x in again.results] == [x.definition.version for x in r.results]

    # in the stream: a new order moves the window (as of the latest event) and the counts
    await w.order(T0 + DAY, 20, "Madrid", user_id=a)
    assert await w.declared("user_id", a, events=5, expect={
        "orders_30d": 3, "revenue_total": 155.5, "favourite_store": "Madrid"})  # 2-2 tie: seen last
    # a new person gets values from the stream alone
    await w.order(T0, 7, "Porto", anonymous_id=x)
    await w.declared("anonymous_id", x, events=1, expect={"orders_30d": 1, "revenue_total": 7,
                                                          "favourite_store": "Porto"})

    # a merge: the survivor's values are recomputed from the union of events, not added up
    await w.order(T0 - 2 * DAY, 30, "Paris", anonymous_id=x, user_id=b)  # links x and b
    # Madrid (T0-5d), Paris (T0-2d), Porto (T0): once each, the one seen last wins
    await w.declared("user_id", b, events=3, expect={"orders_30d": 3, "revenue_total": 87,
                                                     "favourite_store": "Porto"})
    assert (await w.get("user_id", b)).profile_id == (await w.get("anonymous_id", x)).profile_id

    # a bad apply now: still nothing changes
    before = await w.definitions()
    assert "definitions[0].name" in await refused(
        w.traits.ApplyTraitDefinitions,
        traits_pb2.ApplyTraitDefinitionsRequest(yaml="definitions: [{name: orders, aggregation: count, window: all}]"))
    assert await w.definitions() == before
    assert await w.declared("user_id", a) == {"orders_30d": 3, "revenue_total": 155.5, "favourite_store": "Madrid"}

    # a change of computation: a new version, backfilled again; a description change keeps the values
    changed = DEFINITIONS.replace("window: 30d", "window: 7d").replace("Orders in the 30", "Orders in the 7")
    r = await w.apply(changed)
    assert [x.outcome for x in r.results] == ["changed", "unchanged", "unchanged"]
    assert r.results[0].definition.version > before["orders_30d"].version
    await w.backfilled("orders_30d")
    assert (await w.declared("user_id", a))["orders_30d"] == 2  # T0-1d and T0+1d
    r = await w.apply(changed.replace("in the 7 days", "in the last 7 days"))
    assert [x.outcome for x in r.results] == ["changed", "unchanged", "unchanged"]
    assert r.results[0].definition.version == (await w.definitions())["orders_30d"].version

    # delete: the values go at once
    await w.traits.DeleteTraitDefinition(traits_pb2.DeleteTraitDefinitionRequest(name="revenue_total"))
    assert set(await w.declared("user_id", a)) == {"orders_30d", "favourite_store"}
    await refused(w.traits.DeleteTraitDefinition, traits_pb2.DeleteTraitDefinitionRequest(name="revenue_total"),
                  grpc.StatusCode.NOT_FOUND)


async def test_scopes(stack):
    from cdp_core.auth import issue_token

    reader = traits_pb2_grpc.TraitServiceStub(stack.channel("profile", issue_token(stack.secret, "r",
                                                                                   ["profiles:read"])))
    await reader.ListTraitDefinitions(traits_pb2.ListTraitDefinitionsRequest())
    await refused(reader.ApplyTraitDefinitions, traits_pb2.ApplyTraitDefinitionsRequest(yaml=DEFINITIONS),
                  grpc.StatusCode.PERMISSION_DENIED)
    writer = traits_pb2_grpc.TraitServiceStub(stack.channel("profile", issue_token(stack.secret, "w",
                                                                                   ["profiles:write"])))
    await writer.ApplyTraitDefinitions(traits_pb2.ApplyTraitDefinitionsRequest(yaml=DEFINITIONS, dry_run=True))


async def cdp(*args: str, code: int = 0):
    from cdp_cli.testing import run_cdp

    return await run_cdp(*args, code=code)


async def test_the_cli(stack, tmp_path):
    w = World(stack)
    user = "u-" + uuid.uuid4().hex[:8]
    await w.order(T0, 12, "Madrid", user_id=user)
    await w.declared("user_id", user, events=1)
    good, bad = tmp_path / "traits.yaml", tmp_path / "bad.yaml"
    good.write_text(DEFINITIONS)
    bad.write_text(DEFINITIONS.replace("window: all", "window: forever", 1))

    r = await cdp("trait", "apply", "-f", str(bad), code=1)
    assert "nothing applied" in r.stderr and "definitions[1].window" in r.stderr
    r = await cdp("trait", "apply", "-f", str(good), "--dry-run")
    assert "would be created" in r.stdout and "valid (dry run" in r.stdout
    r = await cdp("trait", "apply", "-f", str(good), "--wait", "--json")
    out = json.loads(r.stdout)
    assert [x["outcome"] for x in out["results"]] == ["created"] * 3 and out["dry_run"] is False
    r = await cdp("trait", "list", "--json")
    listed = {t["name"]: t for t in json.loads(r.stdout)["definitions"]}
    assert listed["revenue_total"]["backfill"]["done"] is True
    assert listed["revenue_total"]["definition"]["event"]["where"] == [{"property": "total", "gte": 0}]
    assert await w.declared("user_id", user) == {"orders_30d": 1, "revenue_total": 12, "favourite_store": "Madrid"}
    r = await cdp("trait", "list")
    assert "orders_30d" in r.stdout and "done" in r.stdout
    await cdp("trait", "delete", "orders_30d")
    r = await cdp("trait", "delete", "orders_30d", code=1)
    assert "no trait definition named 'orders_30d'" in r.stderr


# --- convergence: the projection alone, events in any order -----------------------------------


def _resolved(i: int, profile: str, ids: list[tuple[str, str]], at: datetime, props: dict):
    from cdp.identity.v1 import events_pb2 as identity_events
    from cdp.ingest.v1 import events_pb2 as ingest_events

    ev = ingest_events.EventCollected(kind="track", event="Order Completed", properties_json=json.dumps(props),
                                      source_id="src-1", source_kind="web")
    ev.timestamp.CopyFrom(envelope.ts(at))
    msg = identity_events.IdentityResolved(event=ev, profile_id=profile, event_id=f"e{i:03d}", identifiers=[
        identifier_pb2.Identifier(type=t, value=v) for t, v in ids])
    return envelope.make("cdp.identity.resolved", msg, producer="identity", event_id=f"r-e{i:03d}")


def _story() -> list:
    from cdp.identity.v1 import events_pb2 as identity_events

    envs = [_resolved(i, "P1", [("user_id", "u1")], T0 + i * DAY, {"total": i, "store": f"s{i % 3}"})
            for i in range(8)]
    envs += [_resolved(i, "P2", [("anonymous_id", "a2")], T0 + (i - 6) * DAY, {"total": str(i), "store": "s9"})
             for i in range(8, 12)]
    envs.append(_resolved(12, "P1", [("user_id", "u1"), ("anonymous_id", "a2")], T0 + 3 * DAY,
                          {"total": 1.5, "store": "s9"}))
    envs.append(envelope.make("cdp.identity.merged", identity_events.ProfilesMerged(
        survivor_profile_id="P1", merged_profile_id="P2", rule="shared-identifier", event_id="e012"),
        producer="identity", event_id="m-1"))
    return envs


async def _project(url: str, envs: list) -> list:
    from pathlib import Path

    import cdp_profile
    from cdp_core.store import open_store
    from cdp_profile import declared, declared_store
    from cdp_profile.computing import drain
    from cdp_profile.projection import ProfileProjection

    pool = await open_store(url, "profile", Path(cdp_profile.__file__).parent / "migrations")
    try:
        async with pool.acquire() as conn:
            await declared_store.apply_definitions(conn, declared.parse_document(DEFINITIONS), dry_run=False)
        projection = ProfileProjection()
        await apply_envelopes(pool, projection, envs)
        await drain(pool)  # the computed traits (the recomputer's work)
        async with pool.acquire() as conn:
            return [tuple(r) for r in await conn.fetch(
                "SELECT profile_id, declared::text, versions::text, as_of FROM profile_declared ORDER BY 1")]
    finally:
        await pool.close()


async def test_the_stream_converges_whatever_the_order(database_server_url):
    import random

    import asyncpg

    from cdp_core.settings import with_database

    results = []
    for seed in (None, 1, 2):
        envs = _story()
        if seed is not None:
            random.Random(seed).shuffle(envs)
        name = "dtc_" + uuid.uuid4().hex[:12]
        admin = await asyncpg.connect(database_server_url)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        try:
            results.append(await _project(with_database(database_server_url, name), envs))
        finally:
            admin = await asyncpg.connect(database_server_url)
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            await admin.close()
    assert results[1] == results[0] and results[2] == results[0]
    [(pid, values, _, as_of)] = results[0]  # P2 merged away: no row of its own
    assert pid == "P1" and as_of == T0 + 7 * DAY
    # 13 orders; totals 0..7, "8".."11" and 1.5; stores s0 s1 s2 s0 s1 s2 s0 s1, s9 x5
    assert json.loads(values) == {"orders_30d": 13, "revenue_total": 67.5, "favourite_store": "s9"}
