"""Declared computed traits in the database: definitions (apply, list, delete), the values of
each profile (recomputed in the stream by the projection, `recompute_declared`), and the
backfill of existing profiles when a definition is added or changed (`Backfiller`).

Backfill: `apply_definitions` stores new and changed definitions with a fresh version and a
backfill cursor at the start; a background task in every replica (`Backfiller.run`) then
walks the live profiles in profile-id order, `BACKFILL_BATCH` profiles per transaction: it
locks the definition rows (`FOR UPDATE SKIP LOCKED`, so replicas never do a batch twice),
takes the same per-profile advisory locks as the projection (so a batch never interleaves
with the stream's writes to those profiles), recomputes the pending definitions from the
profiles' stored events, merges the values in and advances the cursor. Each batch is short;
the stream and the reads carry on between (and during) batches. A restart resumes at the
cursor. A profile the stream touches meanwhile is recomputed with every current definition,
so nothing is missed whichever comes first.
"""

from __future__ import annotations

import asyncio
import json

import asyncpg

from cdp_core import logs
from cdp_core.errors import InvalidArgument

from . import computed
from . import declared as d
from .declared_incremental import DeclaredState
from .incremental import time_of
from .queries import json_object

log = logs.get_logger(__name__)

BACKFILL_BATCH = 200  # profiles a backfill transaction
BACKFILL_POLL_S = 2.0  # how often an idle backfiller looks for work (another replica's apply, a restart)
LIVE = "merged_into IS NULL AND event_count > 0"
# GetProfile's computed_json: the built-in traits, plus {"declared": {name: value}} of the
# values computed by each definition's current version (when there are any); the built-in
# ones are stored as JSON text (migration 0008) and served as jsonb writes them.
COMPUTED_SQL = """
SELECT c.profile_id,
       (CASE WHEN dv.v IS NULL THEN c.computed::jsonb ELSE c.computed::jsonb || jsonb_build_object('declared', dv.v)
        END)::text
  FROM profile_computed c
  LEFT JOIN LATERAL (
       SELECT jsonb_object_agg(t.key, t.value) AS v
         FROM profile_declared p
         CROSS JOIN LATERAL jsonb_each(p.declared) AS t
         JOIN trait_definitions f ON f.name = t.key AND f.version = (p.versions ->> t.key)::bigint
        WHERE p.profile_id = c.profile_id) dv ON true
 WHERE c.profile_id = ANY($1::text[])
"""

_parsed: dict[tuple[str, int], d.TraitDefinition | None] = {}


class Stored:
    """A stored definition with its version and backfill state."""

    __slots__ = ("defn", "version", "created_at", "updated_at", "backfill_done", "backfill_total", "backfilled_at")

    def __init__(self, defn: d.TraitDefinition, r: asyncpg.Record):
        self.defn = defn
        self.version = r["version"]
        self.created_at, self.updated_at = r["created_at"], r["updated_at"]
        self.backfill_done, self.backfill_total = r["backfill_done"], r["backfill_total"]
        self.backfilled_at = r["backfilled_at"]


def _definition(name: str, version: int, spec_text: str) -> d.TraitDefinition | None:
    """A stored definition parsed (cached by name and version). One that no longer parses
    (a later release validating more strictly) is skipped, logged, not fatal to the stream."""
    key = (name, version)
    if key not in _parsed:
        try:
            _parsed[key] = d.parse_definition(json.loads(spec_text), f"trait_definitions[{name}]")
        except Exception as e:  # noqa: BLE001 - never let one definition stop the projection
            log.error("stored trait definition does not parse; skipped", name=name, version=version,
                      error=str(e)[:300])
            _parsed[key] = None
        if len(_parsed) > 4 * d.MAX_DEFINITIONS:
            _parsed.clear()
            return _definition(name, version, spec_text)
    return _parsed[key]


async def definitions(conn: asyncpg.Connection) -> list[tuple[d.TraitDefinition, int]]:
    """The current definitions with their versions, by name."""
    out = []
    for name, version, spec in await conn.fetch(
            "SELECT name, version, spec::text FROM trait_definitions ORDER BY name"):
        defn = _definition(name, version, spec)
        if defn is not None:
            out.append((defn, version))
    return out


async def list_definitions(conn: asyncpg.Connection) -> list[Stored]:
    rows = await conn.fetch("SELECT name, spec::text AS spec, version, created_at, updated_at, backfill_done, "
                            "backfill_total, backfilled_at FROM trait_definitions ORDER BY name")
    out = []
    for r in rows:
        defn = _definition(r["name"], r["version"], r["spec"])
        if defn is not None:
            out.append(Stored(defn, r))
    return out


# --- values ------------------------------------------------------------------------------------


async def _compute_and_store(conn: asyncpg.Connection, pids: list[str], defs: list[tuple[d.TraitDefinition, int]],
                             *, merge: bool, events: dict[str, list[computed.Event]] | None = None
                             ) -> dict[str, dict]:
    """Computes `defs` for these profiles from their stored events (or from `events`, every
    event of each profile that has any, when the caller has read them already), as of each
    one's latest event. merge=False replaces a profile's values (the stream: every current
    definition); merge=True adds to them (a backfill of some definitions). Returns
    {profile id: {name: value}} of what it computed."""
    if events is not None:
        wanted = set(pids)
        latest = {p: max(e.occurred_at for e in evs) for p, evs in events.items() if p in wanted and evs}
    else:
        latest = dict(await conn.fetch(
            "SELECT profile_id, max(occurred_at) FROM profile_events WHERE profile_id = ANY($1::text[]) "
            "GROUP BY profile_id", pids))
    gone = sorted(set(pids) - set(latest))
    if gone:  # merged away (their events moved to the survivor) or never had events
        await conn.execute("DELETE FROM profile_declared WHERE profile_id = ANY($1::text[])", gone)
    if not latest:
        return {}
    defns = [x for x, _ in defs]
    ids = sorted(latest)
    if events is not None:  # evaluate_all applies each definition's filters and window itself
        by_profile = {p: events[p] for p in ids}
    else:
        by_profile = await _usable_events(conn, ids, latest, defns)
    versions = json.dumps({x.name: v for x, v in defs}, sort_keys=True)
    if merge:  # some definitions: the stored state (built for others) is rebuilt when the stream next needs it
        computed_values = {p: d.evaluate_all(defns, by_profile[p], latest[p]) for p in ids}
        states = [None] * len(ids)
    else:
        built = {p: DeclaredState.from_events(defs, by_profile[p], latest[p]) for p in ids}
        computed_values = {p: built[p].values() for p in ids}
        states = [built[p].dumps() for p in ids]
    values = [json.dumps(computed_values[p], sort_keys=True, ensure_ascii=False) for p in ids]
    update = ("declared = p.declared || excluded.declared, versions = p.versions || excluded.versions" if merge
              else "declared = excluded.declared, versions = excluded.versions, state = excluded.state")
    await conn.execute(
        "INSERT INTO profile_declared AS p (profile_id, declared, versions, as_of, state) "
        "SELECT x.p, x.d, $3::jsonb, x.a, x.s FROM unnest($1::text[], $2::jsonb[], $4::timestamptz[], $5::bytea[]) "
        f"AS x(p, d, a, s) ON CONFLICT (profile_id) DO UPDATE SET {update}, as_of = excluded.as_of",
        ids, values, versions, [latest[p] for p in ids], states)
    return computed_values


async def fold_declared(conn: asyncpg.Connection, new_events: dict[str, list[computed.Event]]) -> dict[str, dict]:
    """The stream's hook: folds each profile's new events into its stored declared-traits state
    (declared_incremental.py) and stores the values; a profile whose state was built for other
    definitions (or none) is computed from its events instead. The caller holds the profiles'
    locks and has stored the events. Costs one small query when no trait is declared.
    Returns {profile id: {name: value}} of every current definition."""
    if not new_events:
        return {}
    defs = await definitions(conn)
    if not defs:
        return {}
    ids = sorted(new_events)
    folded: dict[str, DeclaredState] = {}
    for p, count, blob in await conn.fetch(
            "SELECT p.profile_id, p.event_count, x.state FROM profiles p LEFT JOIN profile_declared x "
            "ON x.profile_id = p.profile_id WHERE p.profile_id = ANY($1::text[])", ids):
        if blob is not None:
            st = DeclaredState.loads(blob, defs)
            if st is not None:
                st.fold(new_events[p])
                folded[p] = st
        elif count == len(new_events[p]):  # a new profile: these are all its events
            folded[p] = DeclaredState.from_events(defs, new_events[p])
    rest = [p for p in ids if p not in folded]
    out = await _compute_and_store(conn, rest, defs, merge=False) if rest else {}
    if folded:
        fids = sorted(folded)
        versions = json.dumps({x.name: v for x, v in defs}, sort_keys=True)
        values = {p: folded[p].values() for p in fids}
        await conn.execute(
            "INSERT INTO profile_declared AS p (profile_id, declared, versions, as_of, state) "
            "SELECT x.p, x.d, $3::jsonb, x.a, x.s FROM unnest($1::text[], $2::jsonb[], $4::timestamptz[], $5::bytea[]) "
            "AS x(p, d, a, s) ON CONFLICT (profile_id) DO UPDATE SET declared = excluded.declared, "
            "versions = excluded.versions, state = excluded.state, as_of = excluded.as_of",
            fids, [json.dumps(values[p], sort_keys=True, ensure_ascii=False) for p in fids], versions,
            [time_of(folded[p].now_us) for p in fids], [folded[p].dumps() for p in fids])
        out.update(values)
    return out


async def _usable_events(conn: asyncpg.Connection, ids: list[str], latest: dict, defns: list[d.TraitDefinition]
                         ) -> dict[str, list[computed.Event]]:
    """The stored events some definition can use: coarse filters (kinds, names, the widest
    window) pushed into SQL."""
    kinds = None if any(not x.kinds for x in defns) else sorted({k for x in defns for k in x.kinds})
    names = None if any(not x.names for x in defns) else sorted({n for x in defns for n in x.names})
    span = None if any(x.window is None for x in defns) else max(x.window for x in defns)
    rows = await conn.fetch(
        "SELECT e.profile_id, e.event_id, e.kind, e.event_name, e.occurred_at, e.properties::text "
        "FROM profile_events e JOIN unnest($1::text[], $2::timestamptz[]) AS l(p, at) ON e.profile_id = l.p "
        "WHERE ($3::interval IS NULL OR e.occurred_at >= l.at - $3::interval) "
        "AND ($4::text[] IS NULL OR e.kind = ANY($4::text[])) "
        "AND ($5::text[] IS NULL OR e.event_name = ANY($5::text[]))",
        ids, [latest[p] for p in ids], span, kinds, names)
    by_profile: dict[str, list[computed.Event]] = {p: [] for p in ids}
    for r in rows:
        by_profile[r[0]].append(computed.Event(r[1], r[2] or "", r[3] or "", r[4], json_object(r[5])))
    return by_profile


async def recompute_declared(conn: asyncpg.Connection, pids,
                             events: dict[str, list[computed.Event]] | None = None) -> dict[str, dict]:
    """The projection's hook: recomputes every declared trait of these profiles from all
    their events (exact, order-independent), replacing their stored values. The caller holds
    the profiles' locks. Costs one small query when no trait is declared. `events`: every
    event of each of these profiles that has any, when the caller has read them already.
    Returns {profile id: {name: value}} (every current definition; {} when none is declared)."""
    if not pids:
        return {}
    defs = await definitions(conn)
    if not defs:
        return {}
    ids = sorted(pids)
    # Profiles merged into these ones keep no values (their events moved here).
    await conn.execute("DELETE FROM profile_declared WHERE profile_id IN "
                       "(SELECT profile_id FROM profiles WHERE merged_into = ANY($1::text[]))", ids)
    return await _compute_and_store(conn, ids, defs, merge=False, events=events)


# --- definitions ---------------------------------------------------------------------------------


class Outcome:
    CREATED, CHANGED, UNCHANGED = "created", "changed", "unchanged"


async def apply_definitions(conn: asyncpg.Connection, defs: list[d.TraitDefinition], *,
                            dry_run: bool) -> list[tuple[str, Stored | None, d.TraitDefinition]]:
    """Adds the definitions not held yet and replaces those that differ (a new version, and
    a backfill when the computation changed; a description-only change keeps the values).
    Others are left alone. [(outcome, stored after, definition)] in the document's order.
    All or nothing: a limit crossed raises InvalidArgument and nothing is written."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('cdp_profile.trait_definitions', 0))")
        held = {r["name"]: r for r in await conn.fetch(
            "SELECT name, spec::text AS spec, version FROM trait_definitions")}
        new = [x for x in defs if x.name not in held]
        if len(held) + len(new) > d.MAX_DEFINITIONS:
            raise InvalidArgument(f"at most {d.MAX_DEFINITIONS} definitions are held ({len(held)} are, "
                                    f"this adds {len(new)}); delete some first", field="definitions")
        plan = []
        for x in defs:
            old = held.get(x.name)
            if old is None:
                plan.append((Outcome.CREATED, x, True))
                continue
            before = _definition(x.name, old["version"], old["spec"])
            if before is not None and before.to_dict() == x.to_dict():
                plan.append((Outcome.UNCHANGED, x, False))
            else:
                plan.append((Outcome.CHANGED, x, before is None or before.computation() != x.computation()))
        if dry_run:
            return [(o, None, x) for o, x, _ in plan]
        backfills = [x.name for o, x, b in plan if b]
        total = await conn.fetchval(f"SELECT count(*) FROM profiles WHERE {LIVE}") if backfills else 0
        for outcome, x, backfill in plan:
            spec = json.dumps(x.to_dict(), ensure_ascii=False)
            if outcome == Outcome.CREATED:
                await conn.execute(
                    "INSERT INTO trait_definitions (name, spec, version, backfill_total) "
                    "VALUES ($1, $2::jsonb, nextval('trait_definition_version'), $3)", x.name, spec, total)
            elif outcome == Outcome.CHANGED and backfill:
                await conn.execute(
                    "UPDATE trait_definitions SET spec = $2::jsonb, version = nextval('trait_definition_version'), "
                    "updated_at = now(), backfill_cursor = '', backfill_done = 0, backfill_total = $3, "
                    "backfilled_at = NULL WHERE name = $1", x.name, spec, total)
            elif outcome == Outcome.CHANGED:  # the description only: values stay valid
                await conn.execute("UPDATE trait_definitions SET spec = $2::jsonb, updated_at = now() "
                                   "WHERE name = $1", x.name, spec)
        stored = {s.defn.name: s for s in await list_definitions(conn)}
        return [(o, stored.get(x.name), x) for o, x, _ in plan]


async def delete_definition(conn: asyncpg.Connection, name: str) -> bool:
    """Deletes a definition; its values stop being served at once (reads join the current
    versions) and leave each profile's row when the profile is next recomputed."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('cdp_profile.trait_definitions', 0))")
        return await conn.fetchval("DELETE FROM trait_definitions WHERE name = $1 RETURNING true", name) is True


# --- backfill ----------------------------------------------------------------------------------


async def backfill_batch(conn: asyncpg.Connection, batch: int = BACKFILL_BATCH) -> bool:
    """One backfill step in one transaction; False when nothing is pending (or another
    replica holds every pending definition)."""
    from .projection import lock_profiles  # the projection imports this module

    async with conn.transaction():
        pending = await conn.fetch(
            "SELECT name, spec::text AS spec, version, backfill_cursor FROM trait_definitions "
            "WHERE backfilled_at IS NULL ORDER BY backfill_cursor, name FOR UPDATE SKIP LOCKED")
        if not pending:
            return False
        cursor = pending[0]["backfill_cursor"]
        rows = [r for r in pending if r["backfill_cursor"] == cursor]
        defs = [(x, r["version"]) for r in rows
                if (x := _definition(r["name"], r["version"], r["spec"])) is not None]
        ids = [r[0] for r in await conn.fetch(
            f"SELECT profile_id FROM profiles WHERE {LIVE} AND profile_id > $1 ORDER BY profile_id LIMIT $2",
            cursor, batch)]
        if ids and defs:
            await lock_profiles(conn, set(ids))
            await _compute_and_store(conn, ids, defs, merge=True)
            await _emit_backfilled(conn, ids, defs)
        names = [r["name"] for r in rows]
        if len(ids) < batch:
            await conn.execute(
                "UPDATE trait_definitions SET backfill_cursor = $2, backfill_done = backfill_done + $3, "
                "backfill_total = GREATEST(backfill_total, backfill_done + $3), backfilled_at = now() "
                "WHERE name = ANY($1::text[])", names, ids[-1] if ids else cursor, len(ids))
        else:
            await conn.execute(
                "UPDATE trait_definitions SET backfill_cursor = $2, backfill_done = backfill_done + $3 "
                "WHERE name = ANY($1::text[])", names, ids[-1], len(ids))
        return True


async def _emit_backfilled(conn: asyncpg.Connection, ids: list[str], defs: list[tuple[d.TraitDefinition, int]]
                           ) -> None:
    """A cdp.profile.changed for each backfilled profile (its declared traits changed), with
    the profile's state read back; deterministic message ids per definition version."""
    from cdp_core import envelope
    from cdp_core.outbox import OutboxWriter

    from .projection import Change, emit_changes  # the projection imports this module

    tag = [f"{x.name}:{v}" for x, v in sorted(defs, key=lambda xv: xv[0].name)]
    outbox = OutboxWriter()
    await emit_changes(conn, outbox, [Change(
        profile_id=p, event_id="", msg_id=envelope.derived_id("profile.changed", "backfill", *tag, p)) for p in ids])
    await outbox.flush(conn)


class Backfiller:
    """The background task that backfills (one per replica; replicas share the work)."""

    def __init__(self, pool: asyncpg.Pool, *, batch: int | None = None, poll_s: float | None = None):
        self.pool = pool
        self.batch, self.poll_s = batch or BACKFILL_BATCH, poll_s or BACKFILL_POLL_S
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self.run(), name="declared-traits-backfill")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None

    async def run(self) -> None:
        while True:
            self.wake.clear()
            try:
                async with self.pool.acquire() as conn:
                    while await backfill_batch(conn, self.batch):
                        await asyncio.sleep(0)  # let RPCs and the consumer run between batches
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - transient (deadlock, lost connection): retried
                log.warning("declared traits backfill failed; retrying", error=repr(e)[:300])
                await asyncio.sleep(self.poll_s)
                continue
            try:
                await asyncio.wait_for(self.wake.wait(), self.poll_s)
            except TimeoutError:
                pass

