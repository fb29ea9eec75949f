"""The profile projection: folds resolved events into profiles.

Converges whatever the order of arrival: traits are last-writer-wins by (event time,
event id); counts come from idempotent inserts of event ids; a merge moves the merged
profile's rows to the survivor and recomputes the survivor's figures from them; events
resolved to a profile already merged are redirected to its survivor.
"""

from __future__ import annotations

import json

import asyncpg

from cdp.identity.v1 import events_pb2 as identity_events
from cdp.ingest.v1 import events_pb2 as ingest_events
from cdp.profile.v1 import events_pb2 as profile_events
from cdp_core import envelope
from cdp_core.consumer import Delivery, Projection, handles
from cdp_core.outbox import OutboxWriter

from . import accounts, computed
from .declared_store import recompute_declared
from .queries import channel_of, json_object, pg_json

UPSERT_TRAITS = """
INSERT INTO profile_traits AS t (profile_id, name, value, updated_at, event_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::timestamptz[], $5::text[])
ON CONFLICT (profile_id, name) DO UPDATE
   SET value = excluded.value, updated_at = excluded.updated_at, event_id = excluded.event_id
 WHERE (excluded.updated_at, excluded.event_id) > (t.updated_at, t.event_id)
RETURNING profile_id, name
"""


# One statement per batch: the timeline's row of every event (JSON text cast to jsonb by the server).
INSERT_EVENTS = """
INSERT INTO profile_events (event_id, profile_id, occurred_at, kind, event_name, source_id, source_kind, channel,
                            properties, traits, context, received_at)
SELECT e, p, o, k, n, s, sk, c, pr::jsonb, tr::jsonb, cx::jsonb, ra
  FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
              $9::text[], $10::text[], $11::text[], $12::timestamptz[]) AS x(e, p, o, k, n, s, sk, c, pr, tr, cx, ra)
ON CONFLICT DO NOTHING
RETURNING event_id
"""


def timeline_row(ev: ingest_events.EventCollected) -> tuple:
    """(kind, event name, source id, source kind, channel, properties, traits, context, received at)."""
    received = envelope.from_ts(ev.received_at) if ev.received_at.seconds or ev.received_at.nanos else None
    return (ev.kind, ev.event or ev.name or None, ev.source_id or None, ev.source_kind or None, channel_of(ev),
            pg_json(ev.properties_json), pg_json(ev.traits_json), pg_json(ev.context_json), received)


async def canonical(conn: asyncpg.Connection, profile_id: str) -> str:
    survivor = await conn.fetchval("SELECT merged_into FROM profiles WHERE profile_id = $1", profile_id)
    return survivor or profile_id


async def lock_profiles(conn: asyncpg.Connection, profile_ids: set[str]) -> dict[str, str]:
    """Locks the profiles and the survivors they were merged into (advisory locks, sorted,
    so merges and resolutions on other replicas serialize with us); returns id -> survivor
    for the merged ones. Repeats while a survivor changes under us."""
    locked: set[str] = set()
    while True:
        todo = sorted(profile_ids - locked)
        if todo:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(p, 0)) "
                               "FROM unnest($1::text[]) WITH ORDINALITY AS x(p, n) ORDER BY n", todo)
            locked |= set(todo)
        canon = dict(await conn.fetch(
            "SELECT profile_id, merged_into FROM profiles WHERE profile_id = ANY($1::text[]) AND merged_into IS NOT NULL",
            sorted(locked)))
        survivors = set(canon.values())
        if survivors <= locked:
            return canon
        profile_ids = profile_ids | survivors


class ProfileProjection(Projection):
    name = "profile"
    source = "identity"
    subjects = ["cdp.identity.resolved", "cdp.identity.merged", "cdp.identity.split", "cdp.identity.forgotten"]

    @handles("cdp.identity.resolved", batch=True)
    async def on_resolved(self, conn: asyncpg.Connection, ds: list[Delivery], outbox: OutboxWriter) -> None:
        rs = [(d, d.payload(identity_events.IdentityResolved)) for d in ds]
        canon = await lock_profiles(conn, {r.profile_id for _, r in rs})
        events = [(r.event_id, canon.get(r.profile_id, r.profile_id), envelope.from_ts(r.event.timestamp))
                  for _, r in rs]
        rows = [timeline_row(r.event) for _, r in rs]
        new = {row[0] for row in await conn.fetch(
            INSERT_EVENTS, [e[0] for e in events], [e[1] for e in events], [e[2] for e in events],
            *(list(column) for column in zip(*rows, strict=True)))}
        figures: dict[str, list] = {}  # pid -> [new events, first seen, last seen]
        for event_id, pid, occurred in events:
            f = figures.setdefault(pid, [0, occurred, occurred])
            f[0] += event_id in new
            f[1], f[2] = min(f[1], occurred), max(f[2], occurred)
            new.discard(event_id)  # an event twice in one batch counts once
        counts = dict(await conn.fetch(
            "INSERT INTO profiles AS p (profile_id, event_count, first_seen, last_seen) "
            "SELECT * FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::timestamptz[]) "
            "ON CONFLICT (profile_id) DO UPDATE SET event_count = p.event_count + excluded.event_count, "
            "first_seen = LEAST(p.first_seen, excluded.first_seen), last_seen = GREATEST(p.last_seen, excluded.last_seen) "
            "RETURNING profile_id, event_count",
            list(figures), [f[0] for f in figures.values()], [f[1] for f in figures.values()],
            [f[2] for f in figures.values()]))
        identifiers: dict[tuple[str, str], str] = {}
        winners: dict[tuple[str, str], tuple] = {}  # (pid, trait) -> (time, event id, json value)
        for (event_id, pid, occurred), (_, r) in zip(events, rs, strict=True):
            for i in r.identifiers:
                identifiers[(i.type, i.value)] = pid
            if r.event.kind == "group":  # a group call's traits are the account's (accounts.py)
                continue
            for name, value in json_object(r.event.traits_json).items():
                candidate = (occurred, event_id, pg_json(json.dumps(value)))
                if (pid, name) not in winners or candidate[:2] > winners[(pid, name)][:2]:
                    winners[(pid, name)] = candidate
        if identifiers:
            keys = sorted(identifiers)
            await conn.execute(
                "INSERT INTO profile_identifiers (type, value, profile_id) "
                "SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT (type, value) DO UPDATE "
                "SET profile_id = excluded.profile_id WHERE profile_identifiers.profile_id <> excluded.profile_id",
                [k[0] for k in keys], [k[1] for k in keys], [identifiers[k] for k in keys])
        changed: set[tuple[str, str]] = set()
        if winners:
            keys = list(winners)
            changed = {(row[0], row[1]) for row in await conn.fetch(
                UPSERT_TRAITS, [k[0] for k in keys], [k[1] for k in keys], [winners[k][2] for k in keys],
                [winners[k][0] for k in keys], [winners[k][1] for k in keys])}
        linked = await accounts.apply_group_calls(conn, [
            (r.event.group_id, pid, occurred, event_id, r.event.traits_json)
            for (event_id, pid, occurred), (_, r) in zip(events, rs, strict=True)
            if r.event.kind == "group" and r.event.group_id])
        await mark_dirty(conn, set(figures))  # computed traits: computing.py, off the hot path
        seen: set[str] = set()
        for (event_id, pid, _), (d, r) in zip(events, rs, strict=True):
            mine = sorted(n for (p, n) in changed if p == pid and winners[(p, n)][1] == event_id)
            first = event_id not in seen
            seen.add(event_id)
            joined = [r.event.group_id] if (r.event.group_id, pid) in linked else []
            linked.discard((r.event.group_id, pid))
            if first or mine or joined:
                outbox.add(envelope.make(
                    "cdp.profile.changed",
                    profile_events.ProfileChanged(profile_id=pid, changed_traits=mine, event_count=counts[pid],
                                                  event_id=event_id, linked_account_ids=joined),
                    producer="profile",
                    event_id=envelope.derived_id("profile.changed", d.envelope.event_id),
                    cause=d.envelope,
                ))

    @handles("cdp.identity.merged")
    async def on_merged(self, conn: asyncpg.Connection, d: Delivery, outbox: OutboxWriter) -> None:
        m = d.payload(identity_events.ProfilesMerged)
        canon = await lock_profiles(conn, {m.survivor_profile_id, m.merged_profile_id})
        survivor = canon.get(m.survivor_profile_id, m.survivor_profile_id)
        merged = m.merged_profile_id
        if survivor == merged:
            if canon.get(m.survivor_profile_id) != merged:
                return
            # Identity brought back a profile merged into this one earlier (events applied
            # out of log order): the old survivor now folds into it.
            survivor = m.survivor_profile_id
            await conn.execute("UPDATE profiles SET merged_into = NULL WHERE profile_id = $1", survivor)
        await conn.execute("INSERT INTO profiles (profile_id) VALUES ($1) ON CONFLICT DO NOTHING", survivor)
        await conn.execute(
            "INSERT INTO profiles (profile_id, merged_into) VALUES ($1, $2) "
            "ON CONFLICT (profile_id) DO UPDATE SET merged_into = $2", merged, survivor)
        await conn.execute("UPDATE profiles SET merged_into = $1 WHERE merged_into = $2", survivor, merged)
        await conn.execute("UPDATE profile_identifiers SET profile_id = $1 WHERE profile_id = $2", survivor, merged)
        await conn.execute("UPDATE profile_events SET profile_id = $1 WHERE profile_id = $2", survivor, merged)
        await conn.execute(
            "INSERT INTO profile_traits AS t (profile_id, name, value, updated_at, event_id) "
            "SELECT $1, name, value, updated_at, event_id FROM profile_traits WHERE profile_id = $2 "
            "ON CONFLICT (profile_id, name) DO UPDATE "
            "SET value = excluded.value, updated_at = excluded.updated_at, event_id = excluded.event_id "
            "WHERE (excluded.updated_at, excluded.event_id) > (t.updated_at, t.event_id)", survivor, merged)
        await conn.execute("DELETE FROM profile_traits WHERE profile_id = $1", merged)
        await accounts.move_memberships(conn, survivor, merged)
        # Figures are recomputed from the moved rows, not added up.
        count = await conn.fetchval(
            "UPDATE profiles p SET event_count = s.n, first_seen = s.first, last_seen = s.last "
            "FROM (SELECT count(*) n, min(occurred_at) first, max(occurred_at) last FROM profile_events "
            "WHERE profile_id = $1) s WHERE p.profile_id = $1 RETURNING p.event_count", survivor)
        await conn.execute("UPDATE profiles SET event_count = 0, first_seen = NULL, last_seen = NULL "
                           "WHERE profile_id = $1", merged)
        await conn.execute("DELETE FROM profile_computed WHERE profile_id = $1", merged)
        await mark_dirty(conn, {survivor})
        outbox.add(envelope.make(
            "cdp.profile.changed",
            profile_events.ProfileChanged(profile_id=survivor, event_count=count, event_id=m.event_id),
            producer="profile",
            event_id=envelope.derived_id("profile.changed", d.envelope.event_id),
            cause=d.envelope,
        ))

    @handles("cdp.identity.split")
    async def on_split(self, conn: asyncpg.Connection, d: Delivery, outbox: OutboxWriter) -> None:
        """Drops everything held for the split profiles: identity re-emits every one of their
        events (resolved, rebuilt_by = the split) right after, and they are rebuilt from them."""
        s = d.payload(identity_events.ProfilesSplit)
        await forget_profiles(conn, set(s.removed_profile_ids))

    @handles("cdp.identity.forgotten")
    async def on_forgotten(self, conn: asyncpg.Connection, d: Delivery, outbox: OutboxWriter) -> None:
        f = d.payload(identity_events.ProfileForgotten)
        await forget_profiles(conn, {f.profile_id, *f.profile_ids})


async def forget_profiles(conn: asyncpg.Connection, ids: set[str]) -> None:
    """Deletes every row of these profiles (and of profiles merged into them)."""
    await lock_profiles(conn, ids)
    ids = ids | {r[0] for r in await conn.fetch(
        "SELECT profile_id FROM profiles WHERE merged_into = ANY($1::text[])", sorted(ids))}
    for table in ("profile_events", "profile_traits", "profile_identifiers", "profile_computed", "profile_dirty",
                  "profiles"):
        await conn.execute(f"DELETE FROM {table} WHERE profile_id = ANY($1::text[])", sorted(ids))
    await accounts.drop_memberships(conn, sorted(ids))


async def mark_dirty(conn: asyncpg.Connection, pids: set[str]) -> None:
    """Marks profiles whose computed traits must be computed again (computing.Recomputer)."""
    if pids:
        await conn.execute("INSERT INTO profile_dirty (profile_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
                           sorted(pids))


async def recompute(conn: asyncpg.Connection, pids: set[str]) -> None:
    """Computes the computed traits of these profiles afresh from all their events (exact,
    whatever the order the events came in: `computed.compute`), as of each profile's latest
    event. O(events of the profile) per change: heavy profiles cost more (docs/services/profile.md)."""
    if not pids:
        return
    by_profile: dict[str, list[computed.Event]] = {}
    rows = await conn.fetch(
        "SELECT profile_id, event_id, kind, event_name, occurred_at, properties::text, traits::text, context::text, "
        "source_kind FROM profile_events WHERE profile_id = ANY($1::text[])", sorted(pids))
    for r in rows:
        by_profile.setdefault(r[0], []).append(computed.Event(
            r[1], r[2] or "", r[3] or "", r[4], json_object(r[5]), json_object(r[6]), json_object(r[7]), r[8] or ""))
    ids, values, as_of = [], [], []
    for pid, evs in by_profile.items():
        at = max(e.occurred_at for e in evs)
        ids.append(pid)
        values.append(json.dumps(computed.compute(evs, now=at), ensure_ascii=False, sort_keys=True))
        as_of.append(at)
    if ids:
        await conn.execute(
            "INSERT INTO profile_computed (profile_id, computed, as_of) "
            "SELECT * FROM unnest($1::text[], $2::jsonb[], $3::timestamptz[]) ON CONFLICT (profile_id) DO UPDATE "
            "SET computed = excluded.computed, as_of = excluded.as_of", ids, values, as_of)
    await recompute_declared(conn, pids, by_profile)  # declared computed traits, from the same events
