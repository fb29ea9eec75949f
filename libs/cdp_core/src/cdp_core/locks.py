"""Advisory transaction locks on profile ids, for the projections that keep rows per profile
(profile, segment): one global order, so two transactions wanting the same profiles never
wait on each other in a cycle.

Every lock a transaction takes on profiles is taken in one statement, in code point order
(Python's `sorted` order, `COLLATE "C"` in SQL). Wanting the survivors of merged profiles
too, a projection locks the ids and the survivors known at that moment together
(`lock_with_survivors`), instead of locking the ids and then, in a second round, their
survivors: a second round is what lets two transactions each hold what the other waits
for (PostgreSQL breaks the cycle only after `deadlock_timeout`, aborting one of them).
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg


async def lock(conn: asyncpg.Connection, ids: Iterable[str], *, prefix: str = "") -> None:
    """Locks the ids (advisory, until the transaction ends), in one statement, in order."""
    todo = sorted(set(ids))
    if todo:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($2 || p, 0)) "
                           "FROM unnest($1::text[]) WITH ORDINALITY AS x(p, n) ORDER BY n", todo, prefix)


async def lock_with_survivors(conn: asyncpg.Connection, ids: Iterable[str], *, table: str,
                              prefix: str = "", held: bool = False) -> dict[str, str]:
    """Locks the ids and the profiles they were merged into (`table`'s `profile_id` →
    `merged_into`), all in one statement and in order; returns id → survivor for the merged
    ones. A merge committed between the read and the locks (rare) is followed in another round.
    `held`: this transaction locked the ids already (a handler after `Projection.before_batch`):
    only their survivors are read, and any not among the ids locked (again: no wait if held)."""
    want = set(ids)
    locked: set[str] = set(want) if held else set()
    while True:
        todo = sorted(want - locked)
        if todo:
            rows = await conn.fetch(
                f"SELECT p, pg_advisory_xact_lock(hashtextextended($2 || p, 0)) FROM ("  # noqa: S608 - a constant
                f"SELECT unnest($1::text[]) AS p UNION SELECT merged_into FROM {table} "
                f"WHERE profile_id = ANY($1::text[]) AND merged_into IS NOT NULL) x "
                f"WHERE NOT (p = ANY($3::text[])) ORDER BY p COLLATE \"C\"", todo, prefix, sorted(locked))
            locked |= {r[0] for r in rows}
        canon = dict(await conn.fetch(
            f"SELECT profile_id, merged_into FROM {table} "  # noqa: S608 - a constant
            "WHERE profile_id = ANY($1::text[]) AND merged_into IS NOT NULL", sorted(locked)))
        survivors = set(canon.values())
        if survivors <= locked:
            return canon
        want = locked | survivors


def identity_profile_ids(ds) -> set[str]:
    """The profile ids a batch of identity events (cdp.identity.*) names: what a projection of
    that stream locks before its handlers run (Projection.before_batch)."""
    from cdp.identity.v1 import events_pb2 as identity_events

    ids: set[str] = set()
    for d in ds:
        t = d.envelope.type
        if t == "cdp.identity.resolved":
            ids.add(d.payload(identity_events.IdentityResolved).profile_id)
        elif t == "cdp.identity.merged":
            m = d.payload(identity_events.ProfilesMerged)
            ids |= {m.survivor_profile_id, m.merged_profile_id}
        elif t == "cdp.identity.split":
            ids.update(d.payload(identity_events.ProfilesSplit).removed_profile_ids)
        elif t == "cdp.identity.forgotten":
            f = d.payload(identity_events.ProfileForgotten)
            ids |= {f.profile_id, *f.profile_ids}
    ids.discard("")
    return ids
