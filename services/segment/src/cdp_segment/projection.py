"""The segment service's projections, and real-time membership.

`IdentityProjection` (CDP_IDENTITY) keeps the events the conditions read (track events:
name, time, properties, within the retention), accounts from group calls, and follows
merges, splits and forgetting. `ProfileStateProjection` (CDP_PROFILE) keeps each profile's
traits, computed traits and identifiers from cdp.profile.changed (the highest revision
wins, whatever the order of arrival). Both re-evaluate the profiles a batch touched in the
same transaction (engine.evaluate_profiles), so entered/exited leave through the outbox
exactly once per transition.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import asyncpg

from cdp.identity.v1 import events_pb2 as identity_events
from cdp.profile.v1 import events_pb2 as profile_events
from cdp_core import envelope, locks
from cdp_core.consumer import Delivery, Projection, handles
from cdp_core.outbox import OutboxWriter

from . import engine

MAX_PROPERTIES_BYTES = 16 * 1024  # an event's properties larger than this are kept as {}




def _pg_json(v) -> str:
    """JSON text PostgreSQL's jsonb accepts (no NUL characters)."""
    return json.dumps(v, ensure_ascii=False).replace("\\u0000", "")


class _Evaluating(Projection):
    def __init__(self, cache: engine.CatalogCache, retention_days: int):
        super().__init__()
        self.cache, self.retention_days = cache, retention_days

    async def reevaluate(self, conn, pids, outbox, reason: str, event_ids: dict[str, str] | None = None,
                         cat: engine.Catalog | None = None) -> None:
        if cat is None:
            cat = await self.cache.current(conn)  # after the locks: a definition change is seen in full
        await engine.evaluate_profiles(conn, cat, pids, envelope.now(), outbox, reason=reason, event_ids=event_ids)


class IdentityProjection(_Evaluating):
    name = "segment-identity"
    source = "identity"
    subjects = ["cdp.identity.resolved", "cdp.identity.merged", "cdp.identity.split", "cdp.identity.forgotten"]

    async def before_batch(self, conn: asyncpg.Connection, ds: list[Delivery]) -> None:
        await engine.lock_with_survivors(conn, locks.identity_profile_ids(ds))  # the handlers' locks: taken already

    @handles("cdp.identity.resolved", batch=True)
    async def on_resolved(self, conn: asyncpg.Connection, ds: list[Delivery], outbox: OutboxWriter) -> None:
        rs = [d.payload(identity_events.IdentityResolved) for d in ds]
        canon = await engine.lock_with_survivors(conn, {r.profile_id for r in rs}, held=True)
        horizon = envelope.now() - timedelta(days=self.retention_days)
        events, groups, last = [], [], {}
        for r in rs:
            pid = canon.get(r.profile_id, r.profile_id)
            e = r.event
            at = envelope.from_ts(e.timestamp) if (e.timestamp.seconds or e.timestamp.nanos) else \
                envelope.from_ts(e.received_at)
            last[pid] = r.event_id
            if (e.kind or "track") == "track" and e.event and at > horizon:
                props = e.properties_json if len(e.properties_json) <= MAX_PROPERTIES_BYTES else ""
                events.append((r.event_id, pid, e.event[:200], at, _pg_json(envelope.json_object(props))))
            elif e.kind == "group" and e.group_id:
                groups.append((e.group_id, pid, at, r.event_id, envelope.json_object(e.traits_json)))
        new_profiles = ("INSERT INTO seg_profiles (profile_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING "
                        "RETURNING profile_id")
        if events:  # both inserts in one statement (one round trip)
            changed = [(r[0], r[1]) for r in await conn.fetch(
                f"WITH np AS ({new_profiles}), ne AS ("
                "INSERT INTO seg_events (event_id, profile_id, name, occurred_at, properties) "
                "SELECT e, p, n, o, pr::jsonb FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[], "
                "$6::text[]) AS x(e, p, n, o, pr) ON CONFLICT DO NOTHING RETURNING profile_id, name) "
                "SELECT profile_id, NULL FROM np UNION ALL SELECT profile_id, name FROM ne",
                sorted(last), *[list(c) for c in zip(*events, strict=True)])]
        else:
            changed = [(r[0], None) for r in await conn.fetch(new_profiles, sorted(last))]
        cat = await self.cache.current(conn)  # after the locks: a definition change is seen in full
        # only profiles whose projected state changed in a way a segment can see: a new profile,
        # a kept event of a name some segment reads (no segment and no due time reads the
        # others), an account link; traits and identifiers come with cdp.profile.changed
        touched = {pid for pid, name in changed if name is None or name in cat.event_names}
        if groups:
            await _apply_groups(conn, groups)
            touched |= {g[1] for g in groups}
        await self.reevaluate(conn, touched, outbox, "event", last, cat)

    @handles("cdp.identity.merged")
    async def on_merged(self, conn: asyncpg.Connection, d: Delivery, outbox: OutboxWriter) -> None:
        m = d.payload(identity_events.ProfilesMerged)
        canon = await engine.lock_with_survivors(conn, {m.survivor_profile_id, m.merged_profile_id}, held=True)
        survivor, merged = canon.get(m.survivor_profile_id, m.survivor_profile_id), m.merged_profile_id
        if survivor == merged:
            return
        await conn.execute("INSERT INTO seg_profiles (profile_id) VALUES ($1) ON CONFLICT DO NOTHING", survivor)
        await conn.execute(
            "INSERT INTO seg_profiles (profile_id, merged_into) VALUES ($1, $2) ON CONFLICT (profile_id) DO UPDATE "
            "SET merged_into = $2, traits = '{}', computed = '{}', identifiers = '{}'", merged, survivor)
        await conn.execute("UPDATE seg_profiles SET merged_into = $1 WHERE merged_into = $2", survivor, merged)
        await conn.execute("UPDATE seg_events SET profile_id = $1 WHERE profile_id = $2", survivor, merged)
        await conn.execute(
            "INSERT INTO seg_account_members (account_id, profile_id) SELECT account_id, $1 FROM seg_account_members "
            "WHERE profile_id = $2 ON CONFLICT DO NOTHING", survivor, merged)
        await conn.execute("DELETE FROM seg_account_members WHERE profile_id = $1", merged)
        await self.reevaluate(conn, {survivor, merged}, outbox, "merged", {survivor: m.event_id})

    @handles("cdp.identity.split")
    async def on_split(self, conn: asyncpg.Connection, d: Delivery, outbox: OutboxWriter) -> None:
        """Drops the split profiles (identity re-emits their events right after, under their
        new ids, and the profile service their state): their members exit now."""
        s = d.payload(identity_events.ProfilesSplit)
        await self._drop(conn, set(s.removed_profile_ids), outbox, "split", keep_memberships=True)

    @handles("cdp.identity.forgotten")
    async def on_forgotten(self, conn: asyncpg.Connection, d: Delivery, outbox: OutboxWriter) -> None:
        f = d.payload(identity_events.ProfileForgotten)
        await self._drop(conn, {f.profile_id, *f.profile_ids}, outbox, "forgotten", keep_memberships=False)

    async def _drop(self, conn, ids: set[str], outbox, reason: str, *, keep_memberships: bool) -> None:
        await engine.lock_profiles(conn, ids)
        ids |= {r[0] for r in await conn.fetch("SELECT profile_id FROM seg_profiles WHERE merged_into = ANY($1::text[])",
                                               sorted(ids))}
        await engine.lock_profiles(conn, ids)
        for table in ("seg_events", "seg_account_members", "seg_profiles", "seg_due"):
            await conn.execute(f"DELETE FROM {table} WHERE profile_id = ANY($1::text[])", sorted(ids))
        await self.reevaluate(conn, ids, outbox, reason)  # gone: every membership exits
        if not keep_memberships:  # forgotten: nothing of the person stays (transition counts included)
            await conn.execute("DELETE FROM seg_memberships WHERE profile_id = ANY($1::text[])", sorted(ids))
            await conn.execute("INSERT INTO seg_forgotten (profile_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
                               sorted(ids))


async def _apply_groups(conn: asyncpg.Connection, groups: list[tuple]) -> None:
    """Group calls: links profile <-> account, and account traits last-writer-wins per trait
    by (time, event id); the account's traits object is rebuilt from its trait rows."""
    await conn.execute(
        "INSERT INTO seg_account_members (account_id, profile_id) SELECT * FROM unnest($1::text[], $2::text[]) "
        "ON CONFLICT DO NOTHING", [g[0] for g in groups], [g[1] for g in groups])
    winners: dict[tuple[str, str], tuple[datetime, str, str]] = {}
    for account, _, at, eid, traits in groups:
        for k, v in traits.items():
            cand = (at, eid, _pg_json(v))
            if (account, k) not in winners or cand[:2] > winners[(account, k)][:2]:
                winners[(account, k)] = cand
    accounts = sorted({g[0] for g in groups})
    if winners:
        keys = sorted(winners)
        await conn.execute(
            "INSERT INTO seg_account_traits AS t (account_id, name, value, updated_at, event_id) "
            "SELECT a, n, v::jsonb, u, e FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[]) "
            "AS x(a, n, v, u, e) ON CONFLICT (account_id, name) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at, event_id = excluded.event_id "
            "WHERE (excluded.updated_at, excluded.event_id) > (t.updated_at, t.event_id)",
            [k[0] for k in keys], [k[1] for k in keys], [winners[k][2] for k in keys], [winners[k][0] for k in keys],
            [winners[k][1] for k in keys])
    await conn.execute(
        "INSERT INTO seg_accounts AS a (account_id, traits) SELECT x.a, coalesce((SELECT jsonb_object_agg(name, value) "
        "FROM seg_account_traits t WHERE t.account_id = x.a), '{}') FROM unnest($1::text[]) AS x(a) "
        "ON CONFLICT (account_id) DO UPDATE SET traits = excluded.traits", accounts)


class ProfileStateProjection(_Evaluating):
    name = "segment-profile"
    source = "profile"
    subjects = ["cdp.profile.changed"]

    @handles("cdp.profile.changed", batch=True)
    async def on_changed(self, conn: asyncpg.Connection, ds: list[Delivery], outbox: OutboxWriter) -> None:
        latest: dict[str, profile_events.ProfileChanged] = {}
        for d in ds:
            c = d.payload(profile_events.ProfileChanged)
            if c.profile_id and (c.profile_id not in latest or c.revision > latest[c.profile_id].revision):
                latest[c.profile_id] = c
        await engine.lock_profiles(conn, set(latest))
        for r in await conn.fetch("SELECT profile_id FROM seg_forgotten WHERE profile_id = ANY($1::text[])",
                                  sorted(latest)):
            del latest[r[0]]  # a change in flight when the person was forgotten
        rows = []
        for pid, c in sorted(latest.items()):
            if not c.revision:  # a producer without state in its changes: nothing to keep
                continue
            ids: dict[str, list[str]] = {}
            for i in c.identifiers:
                ids.setdefault(i.type, []).append(i.value)
            rows.append((pid, _pg_json(envelope.json_object(c.traits_json)), _pg_json(envelope.json_object(c.computed_json)),
                         _pg_json({k: sorted(set(v)) for k, v in sorted(ids.items())}), c.revision))
        if rows:
            await conn.execute(
                "INSERT INTO seg_profiles AS p (profile_id, traits, computed, identifiers, revision, updated_at) "
                "SELECT i, t::jsonb, c::jsonb, d::jsonb, r, now() FROM unnest($1::text[], $2::text[], $3::text[], "
                "$4::text[], $5::bigint[]) AS x(i, t, c, d, r) ON CONFLICT (profile_id) DO UPDATE "
                "SET traits = excluded.traits, computed = excluded.computed, identifiers = excluded.identifiers, "
                "revision = excluded.revision, updated_at = now() "
                "WHERE p.revision < excluded.revision AND p.merged_into IS NULL",
                *[list(c) for c in zip(*rows, strict=True)])
        await self.reevaluate(conn, set(latest), outbox, "profile", {p: c.event_id for p, c in latest.items()})
