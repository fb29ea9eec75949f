"""The profile projection: folds resolved events into profiles.

Converges whatever the order of arrival: traits are last-writer-wins by (event time,
event id); counts come from idempotent inserts of event ids; a merge moves the merged
profile's rows to the survivor and recomputes the survivor's figures from them; events
resolved to a profile already merged are redirected to its survivor.
"""

from __future__ import annotations

import json
from datetime import datetime

import asyncpg
from cdp.identity.v1 import events_pb2 as identity_events
from cdp.profile.v1 import events_pb2 as profile_events

from cdp_core import envelope
from cdp_core.consumer import Delivery, Projection, handles
from cdp_core.outbox import OutboxWriter

UPSERT_TRAIT = """
INSERT INTO profile_traits (profile_id, name, value, updated_at, event_id)
VALUES ($1, $2, $3::jsonb, $4, $5)
ON CONFLICT (profile_id, name) DO UPDATE
   SET value = excluded.value, updated_at = excluded.updated_at, event_id = excluded.event_id
 WHERE (excluded.updated_at, excluded.event_id) > (profile_traits.updated_at, profile_traits.event_id)
RETURNING name
"""


async def canonical(conn: asyncpg.Connection, profile_id: str) -> str:
    survivor = await conn.fetchval("SELECT merged_into FROM profiles WHERE profile_id = $1", profile_id)
    return survivor or profile_id


def traits_of(traits_json: str) -> dict:
    if not traits_json:
        return {}
    value = json.loads(traits_json)
    return value if isinstance(value, dict) else {}


class ProfileProjection(Projection):
    name = "profile"
    source = "identity"
    subjects = ["cdp.identity.resolved", "cdp.identity.merged"]

    @handles("cdp.identity.resolved")
    async def on_resolved(self, conn: asyncpg.Connection, d: Delivery, outbox: OutboxWriter) -> None:
        r = d.payload(identity_events.IdentityResolved)
        ev = r.event
        occurred: datetime = envelope.from_ts(ev.timestamp)
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", r.profile_id)
        pid = await canonical(conn, r.profile_id)
        await conn.execute(
            "INSERT INTO profiles (profile_id, first_seen, last_seen) VALUES ($1, $2, $2) ON CONFLICT (profile_id) DO "
            "UPDATE SET first_seen = LEAST(profiles.first_seen, $2), last_seen = GREATEST(profiles.last_seen, $2)",
            pid, occurred,
        )
        await conn.executemany(
            "INSERT INTO profile_identifiers (type, value, profile_id) VALUES ($1, $2, $3) "
            "ON CONFLICT (type, value) DO UPDATE SET profile_id = excluded.profile_id",
            [(i.type, i.value, pid) for i in r.identifiers],
        )
        new_event = await conn.fetchval(
            "INSERT INTO profile_events (event_id, profile_id, occurred_at) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING RETURNING 1",
            r.event_id, pid, occurred,
        )
        count = await conn.fetchval(
            "UPDATE profiles SET event_count = event_count + $2 WHERE profile_id = $1 RETURNING event_count",
            pid, 1 if new_event else 0,
        )
        changed = []
        for name, value in traits_of(ev.traits_json).items():
            if await conn.fetchval(UPSERT_TRAIT, pid, name, json.dumps(value), occurred, r.event_id):
                changed.append(name)
        if new_event or changed:
            outbox.add(envelope.make(
                "cdp.profile.changed",
                profile_events.ProfileChanged(profile_id=pid, changed_traits=changed, event_count=count,
                                              event_id=r.event_id),
                producer="profile",
                event_id=envelope.derived_id("profile.changed", d.envelope.event_id),
                cause=d.envelope,
            ))

    @handles("cdp.identity.merged")
    async def on_merged(self, conn: asyncpg.Connection, d: Delivery, outbox: OutboxWriter) -> None:
        m = d.payload(identity_events.ProfilesMerged)
        for p in sorted([m.survivor_profile_id, m.merged_profile_id]):  # fixed lock order
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", p)
        survivor = await canonical(conn, m.survivor_profile_id)
        merged = m.merged_profile_id
        if survivor == merged:
            return
        await conn.execute("INSERT INTO profiles (profile_id) VALUES ($1) ON CONFLICT DO NOTHING", survivor)
        await conn.execute(
            "INSERT INTO profiles (profile_id, merged_into) VALUES ($1, $2) "
            "ON CONFLICT (profile_id) DO UPDATE SET merged_into = $2", merged, survivor)
        await conn.execute("UPDATE profiles SET merged_into = $1 WHERE merged_into = $2", survivor, merged)
        await conn.execute("UPDATE profile_identifiers SET profile_id = $1 WHERE profile_id = $2", survivor, merged)
        await conn.execute("UPDATE profile_events SET profile_id = $1 WHERE profile_id = $2", survivor, merged)
        for t in await conn.fetch("SELECT name, value, updated_at, event_id FROM profile_traits WHERE profile_id = $1",
                                  merged):
            await conn.execute(UPSERT_TRAIT, survivor, t["name"], t["value"], t["updated_at"], t["event_id"])
        await conn.execute("DELETE FROM profile_traits WHERE profile_id = $1", merged)
        # Figures are recomputed from the moved rows, not added up.
        count = await conn.fetchval(
            "UPDATE profiles p SET event_count = s.n, first_seen = s.first, last_seen = s.last "
            "FROM (SELECT count(*) n, min(occurred_at) first, max(occurred_at) last FROM profile_events "
            "WHERE profile_id = $1) s WHERE p.profile_id = $1 RETURNING p.event_count", survivor)
        await conn.execute("UPDATE profiles SET event_count = 0, first_seen = NULL, last_seen = NULL "
                           "WHERE profile_id = $1", merged)
        outbox.add(envelope.make(
            "cdp.profile.changed",
            profile_events.ProfileChanged(profile_id=survivor, event_count=count, event_id=m.event_id),
            producer="profile",
            event_id=envelope.derived_id("profile.changed", d.envelope.event_id),
            cause=d.envelope,
        ))
