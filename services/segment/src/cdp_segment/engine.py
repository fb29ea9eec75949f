"""Membership: the catalogue of live definitions, a profile's state as the projection holds it,
and the one function that evaluates profiles and records transitions.

Every path that changes a membership (the two projections, the time scheduler, backfills,
deletes) goes through `evaluate_profiles` inside a transaction that holds the profiles'
advisory locks (`lock_profiles`, sorted, one statement), so a transition is recorded once:
the membership row's `transitions` counter numbers it, and entered/exited go to the outbox
with an event id derived from (segment, profile, transition number).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from cdp.segment.v1 import events_pb2
from cdp_core import envelope, locks
from cdp_core.logs import get_logger
from cdp_core.outbox import OutboxWriter

from . import definition as d
from .evaluate import Ev, State, evaluate, event_names, next_boundary

log = get_logger(__name__)
PRODUCER = "segment"


@dataclass
class Segment:
    segment_id: str
    name: str
    version: int
    compiled: d.Compiled
    predefined: bool
    time_dependent: bool
    nodes: list = field(default_factory=list)  # definition.walk(tree), for next_boundary


@dataclass
class Catalog:
    rev: int = 0
    segments: dict[str, Segment] = field(default_factory=dict)  # by name
    stores: dict[str, tuple[float, float]] = field(default_factory=dict)
    retention_days: int = d.DEFAULT_RETENTION_DAYS
    event_names: set[str] = field(default_factory=set)

    def resolver(self, exclude: str | None = None) -> d.Resolver:
        def seg(name: str) -> d.Compiled | None:
            s = self.segments.get(name)
            return None if s is None or name == exclude else s.compiled
        return d.Resolver(seg, self.stores, self.retention_days)

    @property
    def time_dependent(self) -> list[Segment]:
        return [s for s in self.segments.values() if s.time_dependent]


async def catalog_rev(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT rev FROM seg_catalog_rev")


async def bump_rev(conn: asyncpg.Connection) -> None:
    await conn.execute("UPDATE seg_catalog_rev SET rev = rev + 1")


async def load_catalog(conn: asyncpg.Connection, retention_days: int) -> Catalog:
    """Every live definition, validated again (in dependency order) against the stores of now."""
    rev = await catalog_rev(conn)
    rows = {r["name"]: r for r in await conn.fetch(
        "SELECT segment_id, name, version, definition::text, predefined FROM seg_segments WHERE deleted_at IS NULL")}
    cat = Catalog(rev=rev, retention_days=retention_days,
                  stores={r[0]: (r[1], r[2]) for r in await conn.fetch(
                      "SELECT store_id, latitude, longitude FROM seg_stores")})
    compiling: set[str] = set()

    def get(name: str) -> d.Compiled | None:
        if name in cat.segments:
            return cat.segments[name].compiled
        r = rows.get(name)
        if r is None or name in compiling:
            return None
        compiling.add(name)
        try:
            compiled = d.validate(d.from_dict(json.loads(r["definition"])),
                                  d.Resolver(get, cat.stores, retention_days))
        except d.DefinitionError as e:
            log.error("stored definition no longer validates; skipped", segment=name, error=str(e)[:300])
            return None
        finally:
            compiling.discard(name)
        cat.segments[name] = Segment(r["segment_id"], name, r["version"], compiled, r["predefined"],
                                     d.time_dependent(compiled.tree), d.walk(compiled.tree))
        return compiled

    for name in sorted(rows):
        get(name)
    for s in cat.segments.values():
        cat.event_names |= event_names(s.compiled.tree)
    return cat


class CatalogCache:
    """The catalogue, reloaded when seg_catalog_rev moves (checked once per transaction)."""

    def __init__(self, retention_days: int):
        self.retention_days = retention_days
        self.catalog = Catalog(rev=-1)

    async def current(self, conn: asyncpg.Connection) -> Catalog:
        rev = await catalog_rev(conn)
        if rev != self.catalog.rev:
            self.catalog = await load_catalog(conn, self.retention_days)
        return self.catalog


async def lock_profiles(conn: asyncpg.Connection, pids) -> None:
    """Advisory transaction locks on the profiles, in the one order (cdp_core.locks)."""
    await locks.lock(conn, pids, prefix=LOCK_PREFIX)


async def lock_with_survivors(conn: asyncpg.Connection, pids, *, held: bool = False) -> dict[str, str]:
    """Locks the profiles and the survivors they were merged into, together; id -> survivor.
    `held`: locked by `before_batch` already."""
    return await locks.lock_with_survivors(conn, pids, table="seg_profiles", prefix=LOCK_PREFIX, held=held)


LOCK_PREFIX = "seg:"


def _obj(text) -> dict:
    if text is None:
        return {}
    v = json.loads(text) if isinstance(text, str) else text
    return v if isinstance(v, dict) else {}


_LOAD_SQL = """
SELECT x.pid, p.profile_id IS NOT NULL, p.traits::text, p.computed::text, p.identifiers::text,
       ev.ids, ev.names, ev.ats, ev.props, ac.traits, ms.segs, ms.members, ms.transitions
FROM unnest($1::text[]) AS x(pid)
LEFT JOIN seg_profiles p ON p.profile_id = x.pid AND p.merged_into IS NULL
LEFT JOIN LATERAL (
    SELECT array_agg(e.event_id) AS ids, array_agg(e.name) AS names, array_agg(e.occurred_at) AS ats,
           array_agg(e.properties::text) AS props
    FROM seg_events e
    WHERE p.profile_id IS NOT NULL AND e.profile_id = x.pid AND $2::bool
      AND ($3::text[] IS NULL OR e.name = ANY($3::text[]))) ev ON true
LEFT JOIN LATERAL (
    SELECT array_agg(a.traits::text ORDER BY m.account_id) AS traits
    FROM seg_account_members m JOIN seg_accounts a ON a.account_id = m.account_id
    WHERE p.profile_id IS NOT NULL AND m.profile_id = x.pid) ac ON true
LEFT JOIN LATERAL (
    SELECT array_agg(s.segment_id) AS segs, array_agg(s.member) AS members, array_agg(s.transitions) AS transitions
    FROM seg_memberships s
    WHERE $4::bool AND s.profile_id = x.pid AND ($5::text[] IS NULL OR s.segment_id = ANY($5::text[]))) ms ON true
"""


async def load_for_evaluation(conn: asyncpg.Connection, pids: list[str], names: set[str] | None, *,
                              memberships: bool = False, segment_ids: list[str] | None = None
                              ) -> tuple[dict[str, State], dict[tuple[str, str], tuple[bool, int]]]:
    """In one statement (one round trip: the hot path's cost is mostly round trips): the live
    profiles among `pids` as the evaluator reads them, with their events only of `names`
    (None: every event kept) and their accounts; and, with `memberships`, their membership
    rows (of `segment_ids` only, when given) as {(segment id, profile id): (member, transitions)}."""
    states: dict[str, State] = {}
    current: dict[tuple[str, str], tuple[bool, int]] = {}
    if not pids:
        return states, current
    rows = await conn.fetch(_LOAD_SQL, list(pids), names is None or bool(names),
                            None if names is None else sorted(names), memberships, segment_ids)
    for r in rows:
        pid = r[0]
        if r[1]:
            st = State(pid, _obj(r[2]), _obj(r[3]), _obj(r[4]))
            if r[5]:
                st.events = [Ev(i, n, a, _obj(pr)) for i, n, a, pr in zip(r[5], r[6], r[7], r[8], strict=True)]
            if r[9]:
                st.accounts = [_obj(t) for t in r[9]]
            states[pid] = st
        if r[10]:
            for sid, member, n in zip(r[10], r[11], r[12], strict=True):
                current[(sid, pid)] = (member, n)
    return states, current


async def load_states(conn: asyncpg.Connection, pids: list[str], names: set[str] | None) -> dict[str, State]:
    """The live profiles among `pids` as the evaluator reads them; events only of `names`
    (None: every event kept)."""
    return (await load_for_evaluation(conn, sorted(set(pids)), names))[0]


def _payload(kind: str, seg: Segment | None, segment_id: str, name: str, version: int, pid: str, at: datetime,
             reason: str, event_id: str):
    common = {"segment_id": segment_id, "segment_name": name, "segment_version": version, "profile_id": pid,
              "at": envelope.ts(at), "reason": reason, "event_id": event_id}
    if kind == "entered":
        return events_pb2.SegmentEntered(**common, suppresses=list(seg.compiled.suppresses) if seg else [])
    return events_pb2.SegmentExited(**common)


def emit(outbox: OutboxWriter, kind: str, seg: Segment | None, segment_id: str, name: str, version: int, pid: str,
         transition: int, at: datetime, reason: str, event_id: str = "") -> None:
    outbox.add(envelope.make(
        f"cdp.segment.{kind}", _payload(kind, seg, segment_id, name, version, pid, at, reason, event_id),
        producer=PRODUCER, event_id=envelope.derived_id(f"segment.{kind}", segment_id, pid, str(transition)),
        occurred_at=at))


@dataclass
class Outcome:
    entered: int = 0
    exited: int = 0
    evaluated: int = 0


async def evaluate_profiles(conn: asyncpg.Connection, cat: Catalog, pids, now: datetime, outbox: OutboxWriter, *,
                            reason: str, event_ids: dict[str, str] | None = None,
                            only: list[Segment] | None = None) -> Outcome:
    """Evaluates the profiles (locked by the caller) against every segment (or `only`),
    records transitions, emits entered/exited, and reschedules their due times. Profiles
    that no longer exist (merged, forgotten) leave every segment."""
    pids = sorted(set(pids))
    out = Outcome()
    if not pids:
        return out
    segs = only if only is not None else list(cat.segments.values())
    names = cat.event_names  # every segment's: the due time looks at all time-dependent ones
    if only is not None:  # (the catalogue's segments' names are in cat.event_names already)
        names = names.union(*(event_names(s.compiled.tree) for s in segs))
    states, current = await load_for_evaluation(
        conn, pids, names, memberships=True, segment_ids=[s.segment_id for s in segs] if only is not None else None)
    rows = []
    ev = event_ids or {}
    for pid in pids:
        st = states.get(pid)
        for s in segs:
            want = st is not None and evaluate(s.compiled.tree, st, now)
            member, n = current.get((s.segment_id, pid), (False, 0))
            if want == member:
                continue
            n += 1
            rows.append((s.segment_id, pid, want, now, n))
            emit(outbox, "entered" if want else "exited", s, s.segment_id, s.name, s.version, pid, n, now,
                 reason if st is not None or reason in ("merged", "split", "forgotten") else "gone",
                 ev.get(pid, ""))
            if want:
                out.entered += 1
            else:
                out.exited += 1
        out.evaluated += st is not None
    await schedule(conn, cat, pids, states, now, rows)  # the transitions are written with the due times
    return out


async def write_memberships(conn: asyncpg.Connection, segment_id: str, rows: list[tuple[str, bool, int]],
                            now: datetime) -> None:
    """Records transitions of one segment: (profile id, member, transition number)."""
    if rows:
        await conn.execute(
            "INSERT INTO seg_memberships AS m (segment_id, profile_id, member, since, transitions) "
            "SELECT $1, * FROM unnest($2::text[], $3::bool[], $4::timestamptz[], $5::bigint[]) "
            "ON CONFLICT (segment_id, profile_id) DO UPDATE SET member = excluded.member, since = excluded.since, "
            "transitions = excluded.transitions",
            segment_id, [r[0] for r in rows], [r[1] for r in rows], [now] * len(rows), [r[2] for r in rows])


async def schedule(conn: asyncpg.Connection, cat: Catalog, pids: list[str], states: dict[str, State],
                   now: datetime, memberships: list[tuple] = ()) -> None:
    """Each profile's next due time: the earliest boundary over the time-dependent segments
    (the states must hold their events), or none. `memberships`: transitions to record too,
    (segment id, profile id, member, since, transitions); all in one statement (one round trip)."""
    timed = cat.time_dependent
    due: dict[str, datetime] = {}
    if timed:
        for pid, st in states.items():
            best = None
            for s in timed:
                b = next_boundary(s.compiled.tree, st, now, s.nodes or None)
                if b is not None and (best is None or b < best):
                    best = b
            if best is not None:
                due[pid] = best
    keys = sorted(due)
    gone = sorted(set(pids) - set(due))
    ctes: list[str] = []
    args: list = []
    if memberships:
        ctes.append(
            "tr AS (INSERT INTO seg_memberships AS m (segment_id, profile_id, member, since, transitions) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::bool[], $4::timestamptz[], $5::bigint[]) "
            "ON CONFLICT (segment_id, profile_id) DO UPDATE SET member = excluded.member, since = excluded.since, "
            "transitions = excluded.transitions)")
        args += [[r[i] for r in memberships] for i in range(5)]
    if gone:  # disjoint from the due keys: the delete and the upsert never meet a row twice
        ctes.append(f"g AS (DELETE FROM seg_due WHERE profile_id = ANY(${len(args) + 1}::text[]))")
        args.append(gone)
    if due:
        n = len(args)
        main = (f"INSERT INTO seg_due (profile_id, due_at) SELECT * FROM unnest(${n + 1}::text[], "
                f"${n + 2}::timestamptz[]) ON CONFLICT (profile_id) DO UPDATE SET due_at = excluded.due_at")
        args += [keys, [due[k] for k in keys]]
    elif ctes:
        main = "SELECT 1"
    else:
        return
    await conn.execute(("WITH " + ", ".join(ctes) + " " if ctes else "") + main, *args)
