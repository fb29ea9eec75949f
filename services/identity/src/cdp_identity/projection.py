"""The identity projection: resolves every ingest event to a canonical profile.

For each event (cdp.ingest.event.*): skip it if its event id was seen; lock its
identifiers (advisory locks in a fixed order, so concurrent replicas serialize on shared
identifiers); find their profiles; none -> a new profile whose id derives from the
highest-priority identifier; several -> merge them into the oldest (lowest creating log
sequence, then lowest id), emitting `cdp.identity.merged` with provenance; record new
identifiers; emit `cdp.identity.resolved`.
"""

from __future__ import annotations

import asyncpg
from cdp.common.v1 import identifier_pb2
from cdp.identity.v1 import events_pb2 as identity_events
from cdp.ingest.v1 import events_pb2 as ingest_events

from cdp_core import envelope
from cdp_core.consumer import Delivery, Projection, handles
from cdp_core.outbox import OutboxWriter

from .domain import identifiers_of

INGEST_KINDS = ("track", "identify", "page", "screen", "group", "alias")


def profile_id_for(type_: str, value: str) -> str:
    return envelope.derived_id("profile", type_, value)


class IdentityProjection(Projection):
    name = "identity"
    source = "ingest"
    subjects = ["cdp.ingest.event.>"]

    @handles(*(f"cdp.ingest.event.{k}" for k in INGEST_KINDS))
    async def on_event(self, conn: asyncpg.Connection, d: Delivery, outbox: OutboxWriter) -> None:
        event_id = d.envelope.event_id
        if await conn.fetchval("INSERT INTO seen_events VALUES ($1) ON CONFLICT DO NOTHING RETURNING 1", event_id) is None:
            return  # the same event arrived again (a client retry): applied once
        ev = d.payload(ingest_events.EventCollected)
        ids = identifiers_of(ev)
        for t, v in sorted(ids):
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"{t}\x1f{v}")
        rows = await conn.fetch(
            "SELECT i.type, i.value, i.profile_id, p.created_seq FROM identifiers i "
            "JOIN profiles p USING (profile_id) "
            "WHERE (i.type, i.value) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
            [t for t, _ in ids], [v for _, v in ids],
        )
        known = {(r["type"], r["value"]): r["profile_id"] for r in rows}
        profiles = {r["profile_id"]: r["created_seq"] for r in rows}
        if not profiles:
            pid = profile_id_for(*ids[0])
            await conn.execute(
                "INSERT INTO profiles (profile_id, created_seq) VALUES ($1, $2) ON CONFLICT DO NOTHING", pid, d.stream_seq
            )
        else:
            ordered = sorted(profiles, key=lambda p: (profiles[p], p))
            pid = ordered[0]
            for other in ordered[1:]:
                link = next(k for k in ids if known.get(k) == other)
                await self._merge(conn, outbox, d, survivor=pid, merged=other, link=link,
                                  reason=f"older profile (created at log sequence {profiles[pid]})")
        new = [k for k in ids if k not in known]
        if new:
            await conn.executemany(
                "INSERT INTO identifiers (type, value, profile_id, first_event_id) VALUES ($1, $2, $3, $4)",
                [(t, v, pid, event_id) for t, v in new],
            )
        resolved = identity_events.IdentityResolved(
            event=ev,
            profile_id=pid,
            event_id=event_id,
            identifiers=[identifier_pb2.Identifier(type=t, value=v) for t, v in ids],
            new_identifiers=[identifier_pb2.Identifier(type=t, value=v) for t, v in new],
        )
        outbox.add(envelope.make("cdp.identity.resolved", resolved, producer="identity",
                                 event_id=envelope.derived_id("resolved", event_id), cause=d.envelope))

    async def _merge(self, conn, outbox, d: Delivery, *, survivor: str, merged: str, link: tuple[str, str],
                     reason: str) -> None:
        await conn.execute("UPDATE identifiers SET profile_id = $1 WHERE profile_id = $2", survivor, merged)
        await conn.execute("UPDATE profiles SET merged_into = $1 WHERE profile_id = $2 OR merged_into = $2",
                           survivor, merged)
        merge_id = envelope.derived_id("merged", d.envelope.event_id, merged)
        msg = identity_events.ProfilesMerged(
            survivor_profile_id=survivor,
            merged_profile_id=merged,
            rule="shared-identifier",
            identifier=identifier_pb2.Identifier(type=link[0], value=link[1]),
            event_id=d.envelope.event_id,
            confidence=1.0,
            survivor_reason=reason,
        )
        await conn.execute(
            "INSERT INTO merges (merge_id, survivor_id, merged_id, rule, identifier_type, identifier_value, event_id,"
            " confidence, survivor_reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            merge_id, survivor, merged, msg.rule, link[0], link[1], msg.event_id, msg.confidence, reason,
        )
        outbox.add(envelope.make("cdp.identity.merged", msg, producer="identity", event_id=merge_id, cause=d.envelope))
