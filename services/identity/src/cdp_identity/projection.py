"""The identity projection: resolves every ingest event to a canonical profile.

A batch of events (cdp.ingest.event.*) is applied with a few set-based statements:
skip event ids already seen; lock every identifier of the batch (advisory locks in a
fixed order, so concurrent replicas serialize on shared identifiers); read their
profiles; then resolve the events in log order in memory — an event whose identifiers
are unknown gets a new profile whose id derives from its highest-priority identifier;
an event whose identifiers belong to several profiles merges them into the oldest
(lowest creating log sequence, then lowest id), emitting `cdp.identity.merged` with
provenance — and write new profiles, new identifiers and merges back. Every event
yields `cdp.identity.resolved`.
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
Key = tuple[str, str]


def profile_id_for(type_: str, value: str) -> str:
    return envelope.derived_id("profile", type_, value)


class IdentityProjection(Projection):
    name = "identity"
    source = "ingest"
    subjects = ["cdp.ingest.event.>"]

    @handles(*(f"cdp.ingest.event.{k}" for k in INGEST_KINDS), batch=True)
    async def on_events(self, conn: asyncpg.Connection, ds: list[Delivery], outbox: OutboxWriter) -> None:
        fresh = {r[0] for r in await conn.fetch(
            "INSERT INTO seen_events (event_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING RETURNING event_id",
            [d.envelope.event_id for d in ds])}
        work: list[tuple[Delivery, ingest_events.EventCollected, list[Key]]] = []
        for d in ds:
            if d.envelope.event_id in fresh:  # else: the same event again (a client retry): applied once
                fresh.discard(d.envelope.event_id)
                ev = d.payload(ingest_events.EventCollected)
                work.append((d, ev, identifiers_of(ev)))
        if not work:
            return
        keys = sorted({k for _, _, ids in work for k in ids})
        await conn.execute(
            "SELECT pg_advisory_xact_lock(h) FROM (SELECT hashtextextended(t || chr(31) || v, 0) AS h "
            "FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(t, v, n) ORDER BY n) s",
            [t for t, _ in keys], [v for _, v in keys])
        rows = await conn.fetch(
            "SELECT i.type, i.value, i.profile_id, p.created_seq FROM identifiers i JOIN profiles p USING (profile_id) "
            "WHERE (i.type, i.value) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
            [t for t, _ in keys], [v for _, v in keys])
        graph: dict[Key, str] = {(r["type"], r["value"]): r["profile_id"] for r in rows}
        created: dict[str, int] = {r["profile_id"]: r["created_seq"] for r in rows}
        new_profiles: dict[str, int] = {}
        new_identifiers: list[tuple[str, str, str, str]] = []
        merges: list[tuple[str, str, Key, Delivery, str]] = []
        for d, ev, ids in work:
            event_id = d.envelope.event_id
            pids = {graph[k] for k in ids if k in graph}
            if not pids:
                pid = profile_id_for(*ids[0])
                new_profiles.setdefault(pid, d.stream_seq)
                created.setdefault(pid, d.stream_seq)
            else:
                ordered = sorted(pids, key=lambda p: (created[p], p))
                pid = ordered[0]
                for other in ordered[1:]:
                    link = next(k for k in ids if graph.get(k) == other)
                    reason = f"older profile (created at log sequence {created[pid]})"
                    merges.append((pid, other, link, d, reason))
                    for k, p in graph.items():
                        if p == other:
                            graph[k] = pid
                    outbox.add(self._merged_event(d, pid, other, link, reason))
            new = [k for k in ids if k not in graph]
            for k in new:
                graph[k] = pid
                new_identifiers.append((k[0], k[1], pid, event_id))
            resolved = identity_events.IdentityResolved(
                event=ev,
                profile_id=pid,
                event_id=event_id,
                identifiers=[identifier_pb2.Identifier(type=t, value=v) for t, v in ids],
                new_identifiers=[identifier_pb2.Identifier(type=t, value=v) for t, v in new],
            )
            outbox.add(envelope.make("cdp.identity.resolved", resolved, producer="identity",
                                     event_id=envelope.derived_id("resolved", event_id), cause=d.envelope))
        # new rows first, then the merges in log order (they re-point rows written above)
        if new_profiles:
            await conn.execute(
                "INSERT INTO profiles (profile_id, created_seq) SELECT * FROM unnest($1::text[], $2::bigint[]) "
                "ON CONFLICT DO NOTHING", list(new_profiles), list(new_profiles.values()))
        if new_identifiers:
            await conn.copy_records_to_table("identifiers", records=new_identifiers,
                                             columns=["type", "value", "profile_id", "first_event_id"])
        for survivor, merged, link, d, reason in merges:
            await self._merge(conn, d, survivor, merged, link, reason)

    @staticmethod
    def _merged_event(d: Delivery, survivor: str, merged: str, link: Key, reason: str) -> envelope.Envelope:
        msg = identity_events.ProfilesMerged(
            survivor_profile_id=survivor,
            merged_profile_id=merged,
            rule="shared-identifier",
            identifier=identifier_pb2.Identifier(type=link[0], value=link[1]),
            event_id=d.envelope.event_id,
            confidence=1.0,
            survivor_reason=reason,
        )
        return envelope.make("cdp.identity.merged", msg, producer="identity",
                             event_id=envelope.derived_id("merged", d.envelope.event_id, merged), cause=d.envelope)

    async def _merge(self, conn, d: Delivery, survivor: str, merged: str, link: Key, reason: str) -> None:
        await conn.execute("UPDATE identifiers SET profile_id = $1 WHERE profile_id = $2", survivor, merged)
        await conn.execute("UPDATE profiles SET merged_into = $1 WHERE profile_id = $2 OR merged_into = $2",
                           survivor, merged)
        await conn.execute(
            "INSERT INTO merges (merge_id, survivor_id, merged_id, rule, identifier_type, identifier_value, event_id,"
            " confidence, survivor_reason) VALUES ($1, $2, $3, 'shared-identifier', $4, $5, $6, 1.0, $7)",
            envelope.derived_id("merged", d.envelope.event_id, merged), survivor, merged, link[0], link[1],
            d.envelope.event_id, reason)
