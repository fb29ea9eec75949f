"""The prediction projection: keeps each profile's compact history (features.observe) from
the identity stream, and marks profiles whose features changed for online scoring.

Converges whatever the order of arrival: an observation is keyed by (profile, event id, row
of the event) and inserted idempotently; a merge moves the merged profile's rows to the
survivor and redirects its later events; a split drops the split profiles' rows (identity
re-emits their events with the new profile ids); forgetting deletes every row.
"""

from __future__ import annotations

import asyncpg
import orjson

from cdp.identity.v1 import events_pb2 as identity_events
from cdp_core import envelope, locks
from cdp_core.consumer import Delivery, Projection, handles
from cdp_core.outbox import OutboxWriter

from .features import observe, to_days

INSERT = """
INSERT INTO prediction_observations (profile_id, event_id, seq, t, code, value, discount, channel,
                                     category, brand, colour, size, price_band)
SELECT * FROM unnest($1::text[], $2::text[], $3::int2[], $4::float8[], $5::int2[], $6::float4[], $7::bool[],
                     $8::int2[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[])
ON CONFLICT DO NOTHING
"""
MAX_TEXT = 200  # attribute values longer than this are cut


def _obj(text: str) -> dict:
    if not text:
        return {}
    try:
        v = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return v if isinstance(v, dict) else {}


def _text(v) -> str | None:
    return None if v is None else str(v)[:MAX_TEXT]


async def lock(conn: asyncpg.Connection, ids: set[str]) -> None:
    """Transaction advisory locks on these profile ids, in sorted order: a merge and the events
    of the merged profile on another replica serialize (so no row is left under a merged id)."""
    await locks.lock(conn, ids)


async def survivors(conn: asyncpg.Connection, ids: set[str]) -> dict[str, str]:
    return dict(await conn.fetch("SELECT profile_id, merged_into FROM prediction_merged "
                                 "WHERE profile_id = ANY($1::text[])", sorted(ids)))


async def mark_dirty(conn: asyncpg.Connection, ids: set[str]) -> None:
    if ids:
        await conn.execute("INSERT INTO prediction_dirty (profile_id, changed_at) SELECT unnest($1::text[]), now() "
                           "ON CONFLICT (profile_id) DO UPDATE SET changed_at = excluded.changed_at", sorted(ids))


class PredictionProjection(Projection):
    name = "prediction"
    source = "identity"
    subjects = ["cdp.identity.resolved", "cdp.identity.merged", "cdp.identity.split", "cdp.identity.forgotten"]

    @handles("cdp.identity.resolved", batch=True)
    async def on_resolved(self, conn: asyncpg.Connection, ds: list[Delivery], outbox: OutboxWriter) -> None:
        rs = [d.payload(identity_events.IdentityResolved) for d in ds]
        await lock(conn, {r.profile_id for r in rs})
        canon = await survivors(conn, {r.profile_id for r in rs})
        cols: list[list] = [[] for _ in range(13)]
        touched: set[str] = set()
        for r in rs:
            ev = r.event
            pid = canon.get(r.profile_id, r.profile_id)
            t = to_days(envelope.from_ts(ev.timestamp))
            obs = observe(ev.kind, ev.event or ev.name, t, _obj(ev.properties_json), _obj(ev.context_json),
                          ev.source_kind)
            for seq, o in enumerate(obs):
                row = (pid, r.event_id, seq, o.t, o.code, o.value, o.discount, o.channel, _text(o.category),
                       _text(o.brand), _text(o.colour), _text(o.size), o.price_band)
                for c, v in zip(cols, row, strict=True):
                    c.append(v)
            touched.add(pid)
        if cols[0]:
            await conn.execute(INSERT, *cols)
        await mark_dirty(conn, touched)

    @handles("cdp.identity.merged")
    async def on_merged(self, conn: asyncpg.Connection, d: Delivery, outbox: OutboxWriter) -> None:
        m = d.payload(identity_events.ProfilesMerged)
        await lock(conn, {m.survivor_profile_id, m.merged_profile_id})
        canon = await survivors(conn, {m.survivor_profile_id})
        survivor, merged = canon.get(m.survivor_profile_id, m.survivor_profile_id), m.merged_profile_id
        if survivor == merged:
            return
        await conn.execute("INSERT INTO prediction_merged (profile_id, merged_into) VALUES ($1, $2) "
                           "ON CONFLICT (profile_id) DO UPDATE SET merged_into = $2", merged, survivor)
        await conn.execute("UPDATE prediction_merged SET merged_into = $1 WHERE merged_into = $2", survivor, merged)
        await conn.execute("DELETE FROM prediction_merged WHERE profile_id = $1", survivor)
        await conn.execute(
            "INSERT INTO prediction_observations SELECT $1, event_id, seq, t, code, value, discount, channel, category, "
            "brand, colour, size, price_band FROM prediction_observations WHERE profile_id = $2 ON CONFLICT DO NOTHING",
            survivor, merged)
        await conn.execute("DELETE FROM prediction_observations WHERE profile_id = $1", merged)
        await conn.execute("DELETE FROM prediction_scores WHERE profile_id = $1", merged)
        await conn.execute("DELETE FROM prediction_dirty WHERE profile_id = $1", merged)
        await mark_dirty(conn, {survivor})

    @handles("cdp.identity.split")
    async def on_split(self, conn: asyncpg.Connection, d: Delivery, outbox: OutboxWriter) -> None:
        s = d.payload(identity_events.ProfilesSplit)
        await forget(conn, set(s.removed_profile_ids))

    @handles("cdp.identity.forgotten")
    async def on_forgotten(self, conn: asyncpg.Connection, d: Delivery, outbox: OutboxWriter) -> None:
        f = d.payload(identity_events.ProfileForgotten)
        await forget(conn, {f.profile_id, *f.profile_ids})


async def forget(conn: asyncpg.Connection, ids: set[str]) -> None:
    """Deletes every row of these profiles (and of profiles merged into them)."""
    ids = ids | {r[0] for r in await conn.fetch(
        "SELECT profile_id FROM prediction_merged WHERE merged_into = ANY($1::text[])", sorted(ids))}
    for table in ("prediction_observations", "prediction_scores", "prediction_dirty", "prediction_merged"):
        await conn.execute(f"DELETE FROM {table} WHERE profile_id = ANY($1::text[])", sorted(ids))
