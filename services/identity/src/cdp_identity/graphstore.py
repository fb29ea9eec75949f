"""The identity graph in PostgreSQL: loading the part a batch touches (locked), writing
back what a `Graph` changed, rebuilding profiles from their own events (splits, log
order) and forgetting people.

Locks, always in this order within a transaction: advisory locks on identifiers (sorted,
one statement), then the profiles owning them (`FOR UPDATE`, sorted), repeated while a
concurrent merge moves an identifier to a profile not yet locked. PostgreSQL detects the
rare deadlock between rounds and the batch is retried.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import asyncpg

from cdp.common.v1 import identifier_pb2
from cdp.identity.v1 import events_pb2 as identity_events
from cdp_core import envelope
from cdp_core.errors import FailedPrecondition
from cdp_core.outbox import OutboxWriter

from .graph import Graph, Link, Node, Outcome, merge_key, profile_id_for, rebuild
from .rules import Merge, Rules

Key = tuple[str, str]
SEP = "\x1f"
INGEST_STREAM = "CDP_INGEST"


def enc(k: Key) -> str:
    return k[0] + SEP + k[1]


def dec(s: str) -> Key:
    t, v = s.split(SEP, 1)
    return (t, v)


def tombstone(k: Key) -> str:
    return hashlib.sha256(enc(k).encode()).hexdigest()


def _cols(keys: Iterable[Key]) -> tuple[list[str], list[str]]:
    keys = list(keys)
    return [k[0] for k in keys], [k[1] for k in keys]


def ident(k: Key) -> identifier_pb2.Identifier:
    return identifier_pb2.Identifier(type=k[0], value=k[1])


async def lock_keys(conn: asyncpg.Connection, keys: list[Key]) -> None:
    await conn.execute(
        "SELECT pg_advisory_xact_lock(h) FROM (SELECT hashtextextended(t || chr(31) || v, 0) AS h "
        "FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(t, v, n) ORDER BY n) s", *_cols(sorted(keys)))


async def lock_profiles(conn: asyncpg.Connection, pids: Iterable[str]) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT profile_id, created_seq, last_seq, conflicted, merged_into FROM profiles "
        "WHERE profile_id = ANY($1::text[]) ORDER BY profile_id FOR UPDATE", sorted(set(pids)))


async def owners(conn: asyncpg.Connection, keys: list[Key]) -> dict[Key, str]:
    rows = await conn.fetch(
        "SELECT type, value, profile_id FROM identifiers WHERE (type, value) IN "
        "(SELECT * FROM unnest($1::text[], $2::text[]))", *_cols(keys))
    return {(r[0], r[1]): r[2] for r in rows}


async def load_nodes(conn: asyncpg.Connection, pids: set[str]) -> list[Node]:
    """The live profiles among `pids`, locked, with all their identifiers."""
    rows = [r for r in await lock_profiles(conn, pids) if r["merged_into"] is None]
    return await _nodes(conn, rows)


async def _nodes(conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> list[Node]:
    nodes = {r["profile_id"]: Node(r["profile_id"], r["created_seq"], r["last_seq"], conflicted=r["conflicted"])
             for r in rows}
    if nodes:
        for t, v, pid in await conn.fetch("SELECT type, value, profile_id FROM identifiers "
                                          "WHERE profile_id = ANY($1::text[])", list(nodes)):
            nodes[pid].add((t, v))
    return list(nodes.values())


async def load_for(conn: asyncpg.Connection, keys: list[Key]) -> list[Node]:
    """Locks the identifiers and the profiles that own them; returns those profiles (with all
    their identifiers). Usually three statements: the identifier locks, the owning profiles
    locked, their identifiers (which also shows whether a concurrent merge moved one of
    `keys` to a profile not locked yet: then that one is locked too, and again)."""
    await lock_keys(conn, keys)
    cols = _cols(keys)
    rows = await conn.fetch(
        "SELECT profile_id, created_seq, last_seq, conflicted, merged_into FROM profiles WHERE profile_id IN "
        "(SELECT profile_id FROM identifiers WHERE (type, value) IN (SELECT * FROM unnest($1::text[], $2::text[]))) "
        "ORDER BY profile_id FOR UPDATE", *cols)
    wanted = set(keys)
    while True:
        live = {r["profile_id"]: r for r in rows if r["merged_into"] is None}
        ids = await conn.fetch(  # two index scans (an OR of the two would scan the table)
            "SELECT type, value, profile_id FROM identifiers WHERE profile_id = ANY($3::text[]) UNION ALL "
            "SELECT type, value, profile_id FROM identifiers WHERE (type, value) IN "
            "(SELECT * FROM unnest($1::text[], $2::text[]))", *cols, list(live))
        moved = {pid for t, v, pid in ids if (t, v) in wanted and pid not in live}
        if not moved:
            break
        rows = [*rows, *await lock_profiles(conn, moved)]
    nodes = {pid: Node(pid, r["created_seq"], r["last_seq"], conflicted=r["conflicted"]) for pid, r in live.items()}
    for t, v, pid in ids:
        if pid in nodes:
            nodes[pid].add((t, v))
    return list(nodes.values())


async def separations(conn: asyncpg.Connection, keys: Iterable[Key]) -> dict[Key, frozenset[tuple[str, int]]]:
    out: dict[Key, set[tuple[str, int]]] = {}
    for t, v, split_id, side in await conn.fetch(
            "SELECT type, value, split_id, side FROM separations WHERE (type, value) IN "
            "(SELECT * FROM unnest($1::text[], $2::text[]))", *_cols(set(keys))):
        out.setdefault((t, v), set()).add((split_id, side))
    return {k: frozenset(v) for k, v in out.items()}


async def sightings(conn: asyncpg.Connection, rules: Rules, keys: Iterable[Key]) -> dict[Key, set[str]]:
    """For values of the types in rules.shared_max_profiles: the profiles each was presented with."""
    keys = [k for k in keys if k[0] in rules.shared_max_profiles]
    if not keys:
        return {}
    rows = await conn.fetch("SELECT type, value, profile_id FROM sightings WHERE (type, value) IN "
                            "(SELECT * FROM unnest($1::text[], $2::text[]))", *_cols(keys))
    out: dict[Key, set[str]] = {}
    for t, v, p in rows:
        out.setdefault((t, v), set()).add(p)
    return out


async def forgotten(conn: asyncpg.Connection, keys: Iterable[Key]) -> set[Key]:
    hashes = {tombstone(k): k for k in keys}
    if not hashes:
        return set()
    rows = await conn.fetch("SELECT hash FROM tombstones WHERE hash = ANY($1::text[])", list(hashes))
    return {hashes[r[0]] for r in rows}


async def taken_ids(conn: asyncpg.Connection, g: Graph, keys: Iterable[Key]) -> dict[str, str | None]:
    """Gone profiles that a profile anchored on one of `keys` would be named like, with the
    profile each was merged into."""
    wanted = {profile_id_for(*k) for k in keys}
    rows = await conn.fetch("SELECT profile_id, merged_into FROM profiles WHERE profile_id = ANY($1::text[])",
                            sorted(wanted - set(g.nodes)))
    return {r[0]: r[1] for r in rows}


@dataclass
class Resolution:
    seq: int
    event_id: str
    keys: list[Key]
    outcome: Outcome | None  # None: every identifier was dropped


async def write(conn: asyncpg.Connection, g: Graph, resolutions: list[Resolution]) -> None:
    """Writes back what `g` changed and the resolutions of the events it resolved."""
    ch = g.changes
    final = {m: g.canonical(m) for m in ch.merged_into}
    old = [m for m in final if m not in ch.new_profiles]
    if old:  # rows already stored that now belong to a survivor
        args = (old, [final[m] for m in old])
        await conn.execute("UPDATE identifiers i SET profile_id = m.s FROM unnest($1::text[], $2::text[]) m(o, s) "
                           "WHERE i.profile_id = m.o", *args)
        await conn.execute("UPDATE resolutions r SET profile_id = m.s FROM unnest($1::text[], $2::text[]) m(o, s) "
                           "WHERE r.profile_id = m.o", *args)
        await conn.execute("UPDATE profiles p SET merged_into = m.s FROM unnest($1::text[], $2::text[]) m(o, s) "
                           "WHERE p.profile_id = m.o OR p.merged_into = m.o", *args)
        await conn.execute("UPDATE match_blocks b SET profile_id = m.s FROM unnest($1::text[], $2::text[]) m(o, s) "
                           "WHERE b.profile_id = m.o AND NOT EXISTS (SELECT 1 FROM match_blocks x "
                           "WHERE x.block_key = b.block_key AND x.profile_id = m.s)", *args)
        await conn.execute("DELETE FROM match_blocks WHERE profile_id = ANY($1::text[])", old)
        await conn.execute("UPDATE match_records r SET profile_id = m.s FROM unnest($1::text[], $2::text[]) m(o, s) "
                           "WHERE r.profile_id = m.o AND NOT EXISTS (SELECT 1 FROM match_records x "
                           "WHERE x.record_id = r.record_id AND x.profile_id = m.s)", *args)
        await conn.execute("DELETE FROM match_records WHERE profile_id = ANY($1::text[])", old)
        await conn.execute("INSERT INTO sightings (type, value, profile_id) SELECT s.type, s.value, m.s FROM sightings s "
                           "JOIN unnest($1::text[], $2::text[]) m(o, s) ON s.profile_id = m.o ON CONFLICT DO NOTHING",
                           *args)
        await conn.execute("DELETE FROM sightings WHERE profile_id = ANY($1::text[])", old)
    if ch.new_profiles:
        ps = list(ch.new_profiles.values())
        await conn.execute(  # an upsert: a profile merged away earlier may come back (Graph._earlier)
            "INSERT INTO profiles (profile_id, created_seq, last_seq, conflicted, merged_into) "
            "SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bool[], $5::text[]) "
            "ON CONFLICT (profile_id) DO UPDATE SET created_seq = excluded.created_seq, last_seq = excluded.last_seq, "
            "conflicted = excluded.conflicted, merged_into = excluded.merged_into",
            [p.profile_id for p in ps], [p.created_seq for p in ps], [p.last_seq for p in ps],
            [p.conflicted for p in ps], [final.get(p.profile_id) for p in ps])
    live = [g.nodes[p] for p in ch.touched if p in g.nodes and p not in ch.new_profiles]
    if live:
        await conn.execute(
            "UPDATE profiles p SET created_seq = x.c, last_seq = x.l, conflicted = x.f "
            "FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bool[]) x(id, c, l, f) WHERE p.profile_id = x.id",
            [p.profile_id for p in live], [p.created_seq for p in live], [p.last_seq for p in live],
            [p.conflicted for p in live])
    if ch.new_identifiers:
        await conn.copy_records_to_table(
            "identifiers", columns=["type", "value", "profile_id", "first_event_id", "first_seq"],
            records=[(k[0], k[1], g.owner[k], e, s) for k, (e, s) in ch.new_identifiers.items()])
    if ch.merges:
        await insert_merges(conn, ch.merges)
    if ch.sighted:
        rows = sorted({(k[0], k[1], g.canonical(p)) for k, p in ch.sighted})
        await conn.execute("INSERT INTO sightings (type, value, profile_id) SELECT * FROM "
                           "unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING",
                           [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    if ch.links:
        await conn.executemany(
            "INSERT INTO links (link_id, seq, event_id, a_type, a_value, b_type, b_value, rule, confidence, reason, "
            "details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, '', $10::jsonb) ON CONFLICT DO NOTHING",
            [(lid, lk.seq, lk.event_id, *lk.a, *lk.b, lk.rule, lk.confidence,
              json.dumps(lk.details) if lk.details is not None else None) for lid, lk in ch.links.items()])
    if resolutions:
        await conn.copy_records_to_table(
            "resolutions", columns=["seq", "event_id", "profile_id", "keys"],
            records=[(r.seq, r.event_id, g.canonical(r.outcome.profile_id) if r.outcome else None,
                      [enc(k) for k in r.keys]) for r in resolutions])
        links = [(k[0], k[1], r.seq) for r in resolutions if r.outcome for x in r.outcome.dropped
                 if x.provenance.rule in ("limit", "merge-protection", "split") for k in (x.identifier,)]
        if links:
            await conn.executemany("INSERT INTO dropped_links (type, value, seq) VALUES ($1, $2, $3) "
                                   "ON CONFLICT DO NOTHING", links)


async def insert_merges(conn: asyncpg.Connection, merges: list[tuple[Merge, str]]) -> None:
    await conn.executemany(
        "INSERT INTO merges (merge_id, survivor_id, merged_id, rule, identifier_type, identifier_value, event_id,"
        " confidence, survivor_reason, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb) "
        "ON CONFLICT (merge_id) DO UPDATE SET survivor_id = excluded.survivor_id, undone_by = NULL",
        [(merge_key(e, m.merged), m.survivor, m.merged, m.provenance.rule,
          (m.provenance.identifier or ("", ""))[0], (m.provenance.identifier or ("", ""))[1], e,
          m.provenance.confidence, m.provenance.reason, details_of(m)) for m, e in merges])


def details_of(m: Merge) -> str | None:
    d = getattr(m.provenance, "details", None)
    return json.dumps(d) if d is not None else None


def merged_event(m: Merge, event_id: str, cause: envelope.Envelope | None) -> envelope.Envelope:
    p = m.provenance
    msg = identity_events.ProfilesMerged(
        survivor_profile_id=m.survivor, merged_profile_id=m.merged, rule=p.rule,
        identifier=ident(p.identifier) if p.identifier else None, event_id=event_id,
        confidence=p.confidence, survivor_reason=p.reason, details_json=details_of(m) or "")
    return envelope.make("cdp.identity.merged", msg, producer="identity", event_id=merge_key(event_id, m.merged), cause=cause)


def resolved_event(cause: envelope.Envelope, out: Outcome, profile_id: str,
                   extra_dropped: list[identity_events.DroppedIdentifier] = (), rebuilt_by: str = ""
                   ) -> envelope.Envelope:
    """cdp.identity.resolved for the ingest event `cause`. The event is embedded as the bytes
    it arrived with (field 1), not parsed and serialized again: it is most of the message."""
    dropped = [identity_events.DroppedIdentifier(identifier=ident(x.identifier), rule=x.provenance.rule,
                                                 reason=x.provenance.reason) for x in out.dropped]
    rest = identity_events.IdentityResolved(
        profile_id=profile_id, event_id=cause.event_id,
        identifiers=[ident(k) for k in out.accepted], new_identifiers=[ident(k) for k in out.new_identifiers],
        dropped=[*dropped, *extra_dropped], rebuilt_by=rebuilt_by).SerializeToString()
    eid = envelope.derived_id("resolved", cause.event_id, rebuilt_by) if rebuilt_by else \
        envelope.derived_id("resolved", cause.event_id)
    env = envelope.make("cdp.identity.resolved", _EMPTY_RESOLVED, producer="identity", event_id=eid, cause=cause)
    env.payload.value = envelope.pb_len(_EVENT_FIELD, cause.payload.value) + rest
    return env


_EMPTY_RESOLVED = identity_events.IdentityResolved()
_EVENT_FIELD = envelope.pb_key(1)  # IdentityResolved.event, length-delimited


# --- rebuilds ------------------------------------------------------------------------------


@dataclass
class Rebuilt:
    split_id: str
    removed: list[str]
    profiles: dict[str, list[Key]] = field(default_factory=dict)
    events: int = 0
    changed: bool = True


async def component(conn: asyncpg.Connection, pids: set[str]) -> tuple[set[str], list[asyncpg.Record]]:
    """The live profiles that must be rebuilt together with `pids`, and their resolutions:
    closed under "an event of one carries an identifier of another" (in either direction,
    dropped links included), so the replay sees every event that bears on their identifiers."""
    todo, done = set(pids), set()
    rows: dict[int, asyncpg.Record] = {}
    while todo:
        done |= todo
        found = await conn.fetch("SELECT seq, event_id, profile_id, keys FROM resolutions "
                                 "WHERE profile_id = ANY($1::text[])", sorted(todo))
        keys = {dec(k) for r in found for k in r["keys"]}
        keys |= {(r[0], r[1]) for r in await conn.fetch(
            "SELECT type, value FROM identifiers WHERE profile_id = ANY($1::text[])", sorted(todo))}
        linked = await conn.fetch(
            "SELECT DISTINCT r.seq, r.event_id, r.profile_id, r.keys FROM dropped_links d JOIN resolutions r USING (seq) "
            "WHERE (d.type, d.value) IN (SELECT * FROM unnest($1::text[], $2::text[]))", *_cols(keys))
        for r in (*found, *linked):
            rows[r["seq"]] = r
        for lk in await links_of(conn, keys):
            keys |= {lk.a, lk.b}
        nxt = set((await owners(conn, list(keys))).values())
        nxt |= {r["profile_id"] for r in linked if r["profile_id"] is not None}
        todo = nxt - done
    return done, sorted(rows.values(), key=lambda r: r["seq"])


async def keep_review(conn: asyncpg.Connection, lk: Link, m: Merge) -> None:
    """Keeps an accepted review's link as operator input (table `reviews`, kept by a replay)."""
    await conn.execute(
        "INSERT INTO reviews (link_id, seq, event_id, a_type, a_value, b_type, b_value, confidence, details) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb) ON CONFLICT DO NOTHING",
        merge_key(lk.event_id, m.merged), lk.seq, lk.event_id, *lk.a, *lk.b, lk.confidence,
        json.dumps(lk.details) if lk.details is not None else None)


async def reviews_at(conn: asyncpg.Connection, seqs: list[int]) -> list[Link]:
    """The kept review links to apply after the events at `seqs` (a replay passing them)."""
    rows = await conn.fetch("SELECT * FROM reviews WHERE seq = ANY($1::bigint[]) ORDER BY seq, link_id", seqs)
    return [Link(r["seq"], r["event_id"], (r["a_type"], r["a_value"]), (r["b_type"], r["b_value"]), "review",
                 r["confidence"], json.loads(r["details"]) if isinstance(r["details"], str) else r["details"])
            for r in rows]


async def links_of(conn: asyncpg.Connection, keys: Iterable[Key]) -> list[Link]:
    """The links (probabilistic or reviewed merges) with either end among `keys`."""
    cols = _cols(set(keys))
    rows = await conn.fetch(
        "SELECT * FROM links WHERE (a_type, a_value) IN (SELECT * FROM unnest($1::text[], $2::text[])) "
        "UNION SELECT * FROM links WHERE (b_type, b_value) IN (SELECT * FROM unnest($1::text[], $2::text[]))", *cols)
    return [Link(r["seq"], r["event_id"], (r["a_type"], r["a_value"]), (r["b_type"], r["b_value"]), r["rule"],
                 r["confidence"], json.loads(r["details"]) if r["details"] else None) for r in rows]


async def rebuild_profiles(conn: asyncpg.Connection, js, rules: Rules, pids: set[str], *, split_id: str, rule: str,
                           reason: str, profile_id: str, outbox: OutboxWriter, always: bool = True) -> Rebuilt:
    """Re-resolves every event of `pids` (and the profiles tied to them) in log order and
    replaces their part of the graph. Unless nothing changed (and not `always`), records the
    split, emits cdp.identity.split and re-emits cdp.identity.resolved for every event."""
    live, rows = await component(conn, pids)
    locked: set[str] = set()
    while live - locked:  # lock, then look again: a concurrent resolver may have grown it
        await lock_profiles(conn, live - locked)
        locked |= live
        live, rows = await component(conn, live)
    dead = {r[0] for r in await conn.fetch("SELECT profile_id FROM profiles WHERE merged_into = ANY($1::text[])",
                                           sorted(live))}
    removed = sorted(live | dead)
    events = [(r["seq"], r["event_id"], [dec(s) for s in r["keys"]]) for r in rows]
    all_keys = {k for _, _, ks in events for k in ks}
    seps = await separations(conn, all_keys)
    outcomes: dict[int, Outcome] = {}
    g, assigned = rebuild(rules, events, separations=seps, record=outcomes, links=await links_of(conn, all_keys),
                          sightings=await sightings(conn, rules, all_keys))
    old_assigned = {r["seq"]: r["profile_id"] for r in rows}
    old_owner = await conn.fetch("SELECT type, value, profile_id FROM identifiers WHERE profile_id = ANY($1::text[])",
                                 sorted(live))
    same = assigned == {s: p for s, p in old_assigned.items() if p is not None} and \
        {(t, v): p for t, v, p in old_owner} == g.owner
    result = Rebuilt(split_id, removed, {p: sorted(n.keys()) for p, n in g.nodes.items()}, len(rows), not same)
    if same and not always:
        return result
    await conn.execute("DELETE FROM identifiers WHERE profile_id = ANY($1::text[])", sorted(live))
    await conn.execute("DELETE FROM profiles WHERE profile_id = ANY($1::text[])", removed)
    await conn.execute("DELETE FROM dropped_links WHERE seq = ANY($1::bigint[])", [r["seq"] for r in rows])
    await conn.execute("DELETE FROM resolutions WHERE seq = ANY($1::bigint[])", [r["seq"] for r in rows])
    await conn.execute("UPDATE merges SET undone_by = $2 WHERE (survivor_id = ANY($1::text[]) "
                       "OR merged_id = ANY($1::text[])) AND undone_by IS NULL", removed, split_id)
    g.changes.touched = set()
    await write(conn, g, [Resolution(s, e, ks, outcomes.get(s)) for s, e, ks in events])
    await conn.execute("INSERT INTO splits (split_id, profile_id, rule, reason) VALUES ($1, $2, $3, $4) "
                       "ON CONFLICT DO NOTHING", split_id, profile_id, rule, reason)
    split = identity_events.ProfilesSplit(
        split_id=split_id, rule=rule, reason=reason, removed_profile_ids=removed,
        profiles=[identity_events.ProfileIdentifiers(profile_id=p, identifiers=[ident(k) for k in ks])
                  for p, ks in sorted(result.profiles.items())])
    outbox.add(envelope.make("cdp.identity.split", split, producer="identity",
                             event_id=envelope.derived_id("split", split_id)))
    for seq, _, _ in events:
        out = outcomes.get(seq)
        if out is None:
            continue
        msg = await js.get_msg(INGEST_STREAM, seq)
        outbox.add(resolved_event(envelope.decode(msg.data), out, assigned[seq], rebuilt_by=split_id))
    return result


async def forget(conn: asyncpg.Connection, profile_id: str) -> tuple[list[str], int]:
    """Removes a live profile and every profile merged into it from the graph, keeping
    hashed tombstones of its identifiers. Returns (profile ids, identifiers forgotten)."""
    rows = await lock_profiles(conn, {profile_id})
    if not rows or rows[0]["merged_into"] is not None:
        raise FailedPrecondition("is not a live profile", field="profile")
    dead = [r[0] for r in await conn.fetch("SELECT profile_id FROM profiles WHERE merged_into = $1", profile_id)]
    ids = [profile_id, *sorted(dead)]
    keys = [(r[0], r[1]) for r in await conn.fetch("SELECT type, value FROM identifiers WHERE profile_id = $1",
                                                   profile_id)]
    await lock_keys(conn, keys)
    await conn.execute("INSERT INTO tombstones (hash) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
                       [tombstone(k) for k in keys])
    seqs = [r[0] for r in await conn.fetch("SELECT seq FROM resolutions WHERE profile_id = $1", profile_id)]
    await conn.execute("DELETE FROM dropped_links WHERE seq = ANY($1::bigint[]) OR (type, value) IN "
                       "(SELECT * FROM unnest($2::text[], $3::text[]))", seqs, *_cols(keys))
    for table, col in (("resolutions", "profile_id"), ("sightings", "profile_id"), ("identifiers", "profile_id"), ("match_records", "profile_id"),
                       ("match_blocks", "profile_id"), ("candidates", "profile_id"),
                       ("candidates", "other_profile_id"), ("profiles", "profile_id"), ("merges", "survivor_id"),
                       ("merges", "merged_id")):
        await conn.execute(f"DELETE FROM {table} WHERE {col} = ANY($1::text[])", ids)
    for table, type_col, value_col in (("separations", "type", "value"), ("links", "a_type", "a_value"),
                                       ("links", "b_type", "b_value"), ("reviews", "a_type", "a_value"),
                                       ("reviews", "b_type", "b_value")):
        await conn.execute(f"DELETE FROM {table} WHERE ({type_col}, {value_col}) IN "
                           "(SELECT * FROM unnest($1::text[], $2::text[]))", *_cols(keys))
    return ids, len(keys)
