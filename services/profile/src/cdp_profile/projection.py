"""The profile projection: folds resolved events into profiles.

Converges whatever the order of arrival: traits are last-writer-wins by (event time,
event id); counts come from idempotent inserts of event ids; a merge moves the merged
profile's rows to the survivor and recomputes the survivor's figures from them; events
resolved to a profile already merged are redirected to its survivor.

Computed traits (built-in and declared) are folded into a per-profile state in the same
transaction (`fold_computed`, `declared_store.fold_declared`; exact, order-free, with a
recomputation of one profile from its events where a fold cannot be exact), and every
change goes out as a `cdp.profile.changed` carrying the profile's state after it
(`emit_changes`).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import orjson

from cdp.common.v1 import identifier_pb2
from cdp.identity.v1 import events_pb2 as identity_events
from cdp.ingest.v1 import events_pb2 as ingest_events
from cdp.profile.v1 import events_pb2 as profile_events
from cdp_core import envelope, locks
from cdp_core.consumer import Delivery, Projection, handles
from cdp_core.logs import get_logger
from cdp_core.outbox import OutboxWriter

from . import accounts, computed, incremental
from .declared_store import fold_declared, recompute_declared
from .incremental import State, Unfoldable
from .queries import channel_of, json_object, pg_json

log = get_logger(__name__)
SETTINGS = computed.Settings()
REVISION_SHIFT = 16  # revision >= stream sequence << 16 (see migration 0007)

UPSERT_TRAITS = """
INSERT INTO profile_traits AS t (profile_id, name, value, updated_at, event_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::timestamptz[], $5::text[])
ON CONFLICT (profile_id, name) DO UPDATE
   SET value = excluded.value, updated_at = excluded.updated_at, event_id = excluded.event_id
 WHERE (excluded.updated_at, excluded.event_id) > (t.updated_at, t.event_id)
RETURNING profile_id, name
"""


# One statement per batch for the timeline and the counts: the timeline's row of every event
# (JSON text cast to jsonb by the server; an event stored already, or twice in the batch, is
# inserted once), each profile's count raised by its events new to the store, first and last
# seen moved; it returns the new events' ids (rows with a NULL profile id) and, per profile,
# what the computed traits' fold needs: the count after the batch, its stored state's version
# (the xmin of its profile_computed row) and the state itself unless the projection holds that
# very version ($16, ProfileProjection.states).
INSERT_EVENTS_AND_COUNT = """
WITH ins AS (
  INSERT INTO profile_events (event_id, profile_id, occurred_at, kind, event_name, source_id, source_kind, channel,
                              properties, traits, context, received_at)
  SELECT e, p, o, k, n, s, sk, c, pr::jsonb, tr::jsonb, cx::jsonb, ra
    FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                $9::text[], $10::text[], $11::text[], $12::timestamptz[]) AS x(e, p, o, k, n, s, sk, c, pr, tr, cx, ra)
  ON CONFLICT DO NOTHING
  RETURNING event_id, profile_id),
agg AS (SELECT profile_id AS p, count(*) AS n FROM ins GROUP BY profile_id),
up AS (
  INSERT INTO profiles AS p (profile_id, event_count, first_seen, last_seen)
  SELECT x.p, COALESCE(agg.n, 0), x.f, x.l
    FROM unnest($13::text[], $14::timestamptz[], $15::timestamptz[]) AS x(p, f, l) LEFT JOIN agg ON agg.p = x.p
  ON CONFLICT (profile_id) DO UPDATE SET event_count = p.event_count + excluded.event_count,
    first_seen = LEAST(p.first_seen, excluded.first_seen), last_seen = GREATEST(p.last_seen, excluded.last_seen)
  RETURNING p.profile_id, p.event_count)
SELECT NULL::text, NULL::bigint, NULL::text, NULL::bytea, ins.event_id FROM ins
UNION ALL
SELECT up.profile_id, up.event_count, c.xmin::text,
       CASE WHEN c.xmin::text IS NOT DISTINCT FROM k.v THEN NULL ELSE c.state END, NULL
  FROM up
  LEFT JOIN profile_computed c ON c.profile_id = up.profile_id
  LEFT JOIN unnest($13::text[], $16::text[]) AS k(p, v) ON k.p = up.profile_id
"""


UPSERT_IDENTIFIERS_AND_TRAITS = f"""
WITH i AS (
  INSERT INTO profile_identifiers (type, value, profile_id)
  SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT (type, value) DO UPDATE
     SET profile_id = excluded.profile_id WHERE profile_identifiers.profile_id <> excluded.profile_id)
{UPSERT_TRAITS.strip().replace("$5", "$8").replace("$4", "$7").replace("$3", "$6").replace("$2", "$5")
                      .replace("$1", "$4")}
"""


@dataclass
class Held:
    """A state this process holds: the version (xmin) of the profile_computed row it goes with,
    and how many folded events the stored `state` column lacks (`unsaved`, since `since`, a
    monotonic time): the column is written only every so often (`SavePolicy`), on eviction
    and when the consumer stops; until then the row's `state` is older than the values.
    `deferred`: the row's values lack those events too, or there is no row yet (version None):
    a rebuild, which nobody reads until it is swapped in, writes a profile's values only with
    its state."""

    version: str | None
    state: State
    unsaved: int = 0
    since: float = 0.0
    deferred: bool = False

    def holds(self, version: str | None) -> bool:
        """Whether this is the state of that version of the row (None: no row, which only a
        deferred state stands for)."""
        return self.version == version and (version is not None or self.deferred)

    def folded(self, version: str | None, n: int, now: float) -> Held:
        """This state with `n` more events folded in, for that version of the row."""
        return Held(version, self.state, self.unsaved + n, self.since if self.unsaved else now,
                    self.deferred or version is None)


@dataclass(frozen=True)
class SavePolicy:
    """When a held state is written to its row: once `events` folded events or `seconds` have
    gone unsaved (a crash loses at most that much, and the profile is then computed once from
    its events: a stored state that does not account for every stored event is never folded
    into). With no cache (size 0) every state is written at once."""

    events: int = 256
    seconds: float = 30.0

    @classmethod
    def from_env(cls) -> SavePolicy:
        return cls(int(os.environ.get("CDP_PROFILE_STATE_SAVE_EVENTS", "256")),
                   float(os.environ.get("CDP_PROFILE_STATE_SAVE_S", "30")))

    def due(self, unsaved: int, since: float, now: float) -> bool:
        return unsaved >= self.events or now - since >= self.seconds


class StateCache:
    """The computed-trait states this process wrote last, each under the version of the row it
    wrote (the row's xmin: the writing transaction or subtransaction), so a batch need not read
    and decode them again. A state is used only while the stored row is still that very version:
    a row another transaction wrote since (another replica, a merge, a split, a rebuild) has
    another xmin, and one written by a transaction that rolled back was never visible. A state
    is taken out while a batch folds into it and put back with the version of the new row.
    Least recently used states go first beyond `size`; those with unsaved events are kept in
    `evicted` until the caller writes them back (`write_back`)."""

    def __init__(self, size: int, policy: SavePolicy | None = None):
        self.size = size
        self.policy = policy or SavePolicy()
        self._d: OrderedDict[str, Held] = OrderedDict()
        self.evicted: list[tuple[str, Held]] = []

    def versions(self, pids: list[str]) -> list[str | None]:
        d = self._d
        return [d[p].version if p in d else None for p in pids]

    def take_all(self, pids) -> dict[str, Held]:
        """{pid: held} of those held (removed from the cache)."""
        d = self._d
        return {p: d.pop(p) for p in pids if p in d}

    def take(self, pid: str, version: str | None) -> Held | None:
        """What is held for this version of the row (removed from the cache), else None."""
        got = self._d.pop(pid, None)
        return got if got is not None and got.holds(version) else None

    def put(self, pid: str, held: Held) -> None:
        if self.size <= 0:
            return
        d = self._d
        d[pid] = held
        d.move_to_end(pid)
        while len(d) > self.size:
            gone = d.popitem(last=False)
            if gone[1].unsaved:
                self.evicted.append(gone)

    def saved(self, pid: str, held: Held, version: str) -> None:
        """`held` was written back and its row is now `version` (if still held, it is current)."""
        if self._d.get(pid) is held:
            self._d[pid] = Held(version, held.state)

    def unsaved(self) -> list[tuple[str, Held]]:
        """The held states whose rows lack some of their events, and those evicted unsaved."""
        return [*self.evicted, *((p, h) for p, h in self._d.items() if h.unsaved)]

    def must_save(self, unsaved: int, since: float, now: float) -> bool:
        return self.size <= 0 or self.policy.due(unsaved, since, now)


def state_cache_size() -> int:
    """Profiles whose states a projection holds (10-35 KiB each on the benchmark's workload)."""
    return int(os.environ.get("CDP_PROFILE_STATE_CACHE", "10000"))


# Writes held states back to their rows, where each row is still the version held and no other
# transaction has it locked (a row being written elsewhere is newer: its state is not wanted).
# Deferred states write their values too ($4, $5); a deferred state of a profile with no row
# yet inserts it, unless a row appeared meanwhile (INSERT_BACK).
WRITE_BACK = """
WITH x AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::timestamptz[]) AS x(p, v, s, d, a)),
     l AS (SELECT c.profile_id FROM profile_computed c JOIN x ON c.profile_id = x.p AND c.xmin::text = x.v
           ORDER BY c.profile_id FOR UPDATE OF c SKIP LOCKED)
UPDATE profile_computed c SET state = x.s, computed = COALESCE(x.d, c.computed), as_of = COALESCE(x.a, c.as_of)
  FROM l JOIN x ON x.p = l.profile_id
 WHERE c.profile_id = l.profile_id
RETURNING c.profile_id, c.xmin::text
"""
INSERT_BACK = """
INSERT INTO profile_computed (profile_id, computed, as_of, state)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bytea[])
ON CONFLICT (profile_id) DO NOTHING
RETURNING profile_id, xmin::text
"""


async def write_back(conn: asyncpg.Connection, held: list[tuple[str, Held]]) -> dict[str, str]:
    """Stores these held states in their rows (see WRITE_BACK); {pid: the row's new version}."""
    if not held:
        return {}
    rows = []
    update = [(p, h) for p, h in held if h.version is not None]
    if update:
        values = [orjson.dumps(h.state.result()).decode() if h.deferred else None for _, h in update]
        rows += await conn.fetch(WRITE_BACK, [p for p, _ in update], [h.version for _, h in update],
                                 [h.state.dumps() for _, h in update], values,
                                 [_as_of(h.state) if h.deferred else None for _, h in update])
    insert = [(p, h) for p, h in held if h.version is None]
    if insert:
        rows += await conn.fetch(INSERT_BACK, [p for p, _ in insert],
                                 [orjson.dumps(h.state.result()).decode() for _, h in insert],
                                 [_as_of(h.state) for _, h in insert], [h.state.dumps() for _, h in insert])
    return dict(rows)


def timeline_row(ev: ingest_events.EventCollected) -> tuple:
    """(kind, event name, source id, source kind, channel, properties, traits, context, received at)."""
    received = envelope.from_ts(ev.received_at) if ev.received_at.seconds or ev.received_at.nanos else None
    return (ev.kind, ev.event or ev.name or None, ev.source_id or None, ev.source_kind or None, channel_of(ev),
            pg_json(ev.properties_json), pg_json(ev.traits_json), pg_json(ev.context_json), received)


async def lock_profiles(conn: asyncpg.Connection, profile_ids: set[str], *, held: bool = False) -> dict[str, str]:
    """Locks the profiles and the survivors they were merged into (cdp_core.locks: one order
    for every transaction, so merges and resolutions on other replicas serialize with us);
    returns id -> survivor for the merged ones. `held`: locked by `before_batch` already."""
    return await locks.lock_with_survivors(conn, profile_ids, table="profiles", held=held)


class ProfileProjection(Projection):
    name = "profile"
    source = "identity"
    subjects = ["cdp.identity.resolved", "cdp.identity.merged", "cdp.identity.split", "cdp.identity.forgotten"]

    def __init__(self) -> None:
        super().__init__()
        # the states this projection wrote last (a rebuild's projection holds its own)
        self.states = StateCache(state_cache_size(), SavePolicy.from_env())

    async def stopped(self, pool: asyncpg.Pool) -> None:
        """Writes back the states held with events their rows lack (see SavePolicy)."""
        unsaved = self.states.unsaved()
        if not unsaved:
            return
        self.states.evicted = []
        async with pool.acquire() as conn, conn.transaction():
            versions = await write_back(conn, unsaved)
        for pid, h in unsaved:
            if pid in versions:
                self.states.saved(pid, h, versions[pid])
        log.info("computed-trait states written back", profiles=len(versions), held=len(unsaved))

    async def before_batch(self, conn: asyncpg.Connection, ds: list[Delivery]) -> None:
        await lock_profiles(conn, locks.identity_profile_ids(ds))  # the handlers' locks: taken already

    @handles("cdp.identity.resolved", batch=True)
    async def on_resolved(self, conn: asyncpg.Connection, ds: list[Delivery], outbox: OutboxWriter) -> None:
        rs = [(d, d.payload(identity_events.IdentityResolved)) for d in ds]
        canon = await lock_profiles(conn, {r.profile_id for _, r in rs}, held=True)
        events = [(r.event_id, canon.get(r.profile_id, r.profile_id), envelope.from_ts(r.event.timestamp))
                  for _, r in rs]
        # The computed traits of the profiles whose states this process holds are folded ahead,
        # in a task that yields between profiles, while PostgreSQL applies the statements below
        # (their results are used only if every event turns out new and each row is still the
        # version held: `fold_computed`).
        batch: dict[str, list[int]] = {}  # pid -> indexes of its events, each event id once, in delivery order
        once: set[str] = set()
        for i, (event_id, pid, _) in enumerate(events):
            if event_id not in once:
                once.add(event_id)
                batch.setdefault(pid, []).append(i)
        held = self.states.take_all(batch)
        ahead = asyncio.create_task(_fold_ahead(batch, held, events, rs, values=not outbox.discarding))
        try:
            await self._apply_resolved(conn, rs, events, batch, held, ahead, outbox)
        finally:
            if not ahead.done():
                ahead.cancel()  # the batch failed before it needed the task
            elif not ahead.cancelled():
                ahead.exception()  # retrieved: raised above where it mattered

    async def _apply_resolved(self, conn: asyncpg.Connection, rs: list, events: list[tuple],
                              batch: dict[str, list[int]], held: dict[str, Held],
                              ahead: asyncio.Task, outbox: OutboxWriter) -> None:
        rows = [timeline_row(r.event) for _, r in rs]
        seen: dict[str, list] = {}  # pid -> [first seen, last seen] among the batch's events
        for _, pid, occurred in events:
            f = seen.setdefault(pid, [occurred, occurred])
            f[0], f[1] = min(f[0], occurred), max(f[1], occurred)
        pids = list(seen)
        new: set[str] = set()
        stored: dict[str, tuple] = {}  # pid -> (event count, state's version, state)
        for pid, count, version, state, event_id in await conn.fetch(
                INSERT_EVENTS_AND_COUNT, [e[0] for e in events], [e[1] for e in events], [e[2] for e in events],
                *(list(column) for column in zip(*rows, strict=True)),
                pids, [f[0] for f in seen.values()], [f[1] for f in seen.values()],
                [held[p].version if p in held else None for p in pids]):
            if pid is None:
                new.add(event_id)
            else:
                stored[pid] = (count, version, state)
        fresh: dict[str, list[int]] = {}  # pid -> indexes of its events new to the store, in delivery order
        for i, (event_id, pid, _) in enumerate(events):
            if event_id in new:
                fresh.setdefault(pid, []).append(i)
                new.discard(event_id)  # an event twice in one batch counts once
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
        # the identifiers, and the traits that win (returned: those that changed), in one round trip
        keys = sorted(identifiers)
        names = list(winners)
        changed: set[tuple[str, str]] = set()
        if keys or names:
            changed = {(row[0], row[1]) for row in await conn.fetch(
                UPSERT_IDENTIFIERS_AND_TRAITS, [k[0] for k in keys], [k[1] for k in keys], [identifiers[k] for k in keys],
                [k[0] for k in names], [k[1] for k in names], [winners[k][2] for k in names],
                [winners[k][0] for k in names], [winners[k][1] for k in names])}
        linked = await accounts.apply_group_calls(conn, [
            (r.event.group_id, pid, occurred, event_id, r.event.traits_json)
            for (event_id, pid, occurred), (_, r) in zip(events, rs, strict=True)
            if r.event.kind == "group" and r.event.group_id])
        # One change per profile with new events, naming them all (the last is its event_id) and
        # carrying the profile's state after this transaction; a rebuild publishes nothing, so
        # its changes only move the revisions.
        out: list[Change] = []
        for pid, idx in fresh.items():
            last = rs[idx[-1]][0]
            if outbox.discarding:
                out.append(Change(profile_id=pid, event_id="", msg_id="", stream_seq=last.stream_seq))
                continue
            ids = [events[i][0] for i in idx]
            out.append(Change(
                profile_id=pid, event_id=ids[-1], event_ids=ids, stream_seq=last.stream_seq, cause=last.envelope,
                msg_id=envelope.derived_id("profile.changed", last.envelope.event_id),
                linked_account_ids=sorted({g for i in idx for g in (rs[i][1].event.group_id,) if (g, pid) in linked}),
                changed_traits=sorted(n for (p, n) in changed if p == pid)))
        # Computed traits, folded in from the new events (incremental.py), stored in the round
        # trip that moves the changes' revisions; declared ones too.
        parsed, folded = await ahead
        new_events = {pid: parsed[pid] if idx == batch[pid] else [_event(events[i], rs[i][1].event) for i in idx]
                      for pid, idx in fresh.items()}
        bump = bump_of(out, outbox)
        values = await fold_computed(conn, new_events, stored,
                                     {p: f for p, f in folded.items() if fresh.get(p) == batch[p]}, self.states, bump,
                                     defer=outbox.discarding)
        declared = await fold_declared(conn, new_events)
        for c in out:
            c.computed = _with_declared(values.get(c.profile_id), declared.get(c.profile_id))
        await emit_changes(conn, outbox, out, bump)

    @handles("cdp.identity.merged")
    async def on_merged(self, conn: asyncpg.Connection, d: Delivery, outbox: OutboxWriter) -> None:
        m = d.payload(identity_events.ProfilesMerged)
        canon = await lock_profiles(conn, {m.survivor_profile_id, m.merged_profile_id}, held=True)
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
        self.states.take_all([merged])
        # Computed traits from the union of the events, exactly (never added up).
        values = await recompute(conn, {survivor}, self.states) if count else {}
        declared = await recompute_declared(conn, {survivor})
        await emit_changes(conn, outbox, [Change(
            profile_id=survivor, event_id=m.event_id, event_ids=[m.event_id], cause=d.envelope,
            msg_id=envelope.derived_id("profile.changed", d.envelope.event_id), stream_seq=d.stream_seq,
            computed=_with_declared(values.get(survivor), declared.get(survivor)))])

    @handles("cdp.identity.split")
    async def on_split(self, conn: asyncpg.Connection, d: Delivery, outbox: OutboxWriter) -> None:
        """Drops everything held for the split profiles: identity re-emits every one of their
        events (resolved, rebuilt_by = the split) right after, and they are rebuilt from them."""
        s = d.payload(identity_events.ProfilesSplit)
        self.states.take_all(await forget_profiles(conn, set(s.removed_profile_ids)))

    @handles("cdp.identity.forgotten")
    async def on_forgotten(self, conn: asyncpg.Connection, d: Delivery, outbox: OutboxWriter) -> None:
        f = d.payload(identity_events.ProfileForgotten)
        self.states.take_all(await forget_profiles(conn, {f.profile_id, *f.profile_ids}))


async def forget_profiles(conn: asyncpg.Connection, ids: set[str]) -> set[str]:
    """Deletes every row of these profiles (and of profiles merged into them); returns them all."""
    await lock_profiles(conn, ids)
    ids = ids | {r[0] for r in await conn.fetch(
        "SELECT profile_id FROM profiles WHERE merged_into = ANY($1::text[])", sorted(ids))}
    for table in ("profile_events", "profile_traits", "profile_identifiers", "profile_computed", "profile_dirty",
                  "profiles"):
        await conn.execute(f"DELETE FROM {table} WHERE profile_id = ANY($1::text[])", sorted(ids))
    await accounts.drop_memberships(conn, sorted(ids))
    return ids


def _event(e: tuple, ev: ingest_events.EventCollected) -> computed.Event:
    """A new event as `recompute` reads it back from its timeline row (same fields, same JSON).
    Traits are read for identify calls only: no computed trait reads another kind's `traits`
    (a person's traits come from identify calls; others carry them in `context.traits`)."""
    kind = ev.kind or ""
    return computed.Event(e[0], kind, ev.event or ev.name or "", e[2], _obj(ev.properties_json),
                          _obj(ev.traits_json) if kind == "identify" else {}, _obj(ev.context_json),
                          ev.source_kind or "")


def _obj(text: str) -> dict:
    """An event's JSON object as PostgreSQL's jsonb keeps it (the \\u0000 escape replaced)."""
    text = pg_json(text)
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:  # what orjson refuses (NaN, integers beyond 64 bits) json may take
        return json_object(text)
    return value if isinstance(value, dict) else {}


async def _fold_ahead(batch: dict[str, list[int]], held: dict[str, Held], events: list[tuple],
                      rs: list, values: bool = True) -> tuple[dict[str, list[computed.Event]], dict[str, tuple]]:
    """The batch's events parsed, by profile; and for each profile whose state this process
    holds (`held`, taken out of the projection's cache), that state with all of them folded in
    and its values (None unless `values`): {pid: (held, values)}. Yields to the event loop after
    each profile, so the batch's statements go on meanwhile."""
    parsed: dict[str, list[computed.Event]] = {}
    folded: dict[str, tuple[Held, bytes]] = {}
    for pid, idx in batch.items():
        evs = parsed[pid] = [_event(events[i], rs[i][1].event) for i in idx]
        if pid in held:
            h = held[pid]
            try:
                for e in sorted(evs, key=lambda e: (e.occurred_at, e.event_id)):
                    h.state.fold(e)
            except Unfoldable:
                pass  # the state is spent; fold_computed computes this profile from its events
            else:
                folded[pid] = (h, orjson.dumps(h.state.result()) if values else None)
        await asyncio.sleep(0)
    return parsed, folded


async def fold_computed(conn: asyncpg.Connection, new_events: dict[str, list[computed.Event]],
                        stored: dict[str, tuple] | None = None, ahead: dict[str, tuple[Held, bytes]] | None = None,
                        cache: StateCache | None = None, bump: Bump | None = None,
                        defer: bool = False) -> dict[str, bytes]:
    """Folds each profile's new events into its state and stores the values (the caller
    holds the profiles' locks and has stored the events). The state is the one `cache` holds
    for the row's version, else the stored one; a profile whose state is missing, of another
    layout, does not account for every stored event (a stored state is written only every so
    often: `SavePolicy`), or cannot fold an event exactly (`Unfoldable`) is computed from all
    its events instead. `ahead`: profiles whose new events were all folded already
    (`_fold_ahead`) into the state held for a version of the row; used when the row is still
    that version. `cache`: the states the caller holds (taken from, and given the states
    written). `bump`: the batch's revisions, moved in the statement storing the values (`_store`).
    `defer` (a rebuild): a folded state not yet due for saving is only held, its values
    written with it later (`Held.deferred`). {pid: computed traits as JSON} of those written."""
    if not new_events:
        return {}
    ahead = ahead or {}
    pids = sorted(new_events)
    if stored is None:  # {pid: (event count, state's version, state)}, unless the caller read them already
        stored = {r[0]: (r[1], r[2], r[3]) for r in await conn.fetch(
            "SELECT p.profile_id, p.event_count, c.xmin::text, c.state FROM profiles p "
            "LEFT JOIN profile_computed c ON c.profile_id = p.profile_id WHERE p.profile_id = ANY($1::text[])", pids)}
    now = time.monotonic()
    folded: dict[str, Held] = {}  # pid -> its state with the new events, version and unsaved count to be set
    ready: dict[str, bytes] = {}  # pid -> values, folded ahead
    full: set[str] = set()
    for pid in pids:
        evs = sorted(new_events[pid], key=lambda e: (e.occurred_at, e.event_id))
        count, version, blob = stored.get(pid, (0, None, None))
        if pid in ahead:
            h, values = ahead[pid]
            if h.holds(version) and h.state.n == count:
                folded[pid] = h.folded(version, len(evs), now)
                if values is not None:
                    ready[pid] = values
                continue
        h = cache.take(pid, version) if cache is not None else None  # if the row is still the one held
        if h is None and blob is not None:
            st = State.loads(blob, SETTINGS)
            h = Held(version, st) if st is not None else None
        elif h is None and version is None and count == len(evs):
            h = Held(None, State(SETTINGS), deferred=True)  # a profile's first events: no row yet
        if h is None or h.state.n + len(evs) != count:
            full.add(pid)
            continue
        try:
            for e in evs:
                h.state.fold(e)
        except Unfoldable:
            full.add(pid)
            continue
        folded[pid] = h.folded(version, len(evs), now)
    if defer and cache is not None and cache.size > 0:
        for pid in [p for p, h in folded.items() if not cache.must_save(h.unsaved, h.since, now)]:
            h = folded.pop(pid)
            cache.put(pid, Held(h.version, h.state, h.unsaved, h.since, True))
    for pid, st in (await _states_from_events(conn, full)).items():
        folded[pid] = Held(None, st)  # computed afresh: stored at once
    return await _store(conn, folded, ready, cache, bump)


async def _states_from_events(conn: asyncpg.Connection, pids: set[str]) -> dict[str, State]:
    if not pids:
        return {}
    by_profile: dict[str, list[computed.Event]] = {}
    rows = await conn.fetch(
        "SELECT profile_id, event_id, kind, event_name, occurred_at, properties::text, traits::text, context::text, "
        "source_kind FROM profile_events WHERE profile_id = ANY($1::text[])", sorted(pids))
    for r in rows:
        by_profile.setdefault(r[0], []).append(computed.Event(
            r[1], r[2] or "", r[3] or "", r[4], _obj(r[5]), _obj(r[6]), _obj(r[7]), r[8] or ""))
    return {pid: State.from_events(evs, SETTINGS) for pid, evs in by_profile.items()}


STORE_SQL = """
INSERT INTO profile_computed AS c (profile_id, computed, as_of, state)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bytea[])
ON CONFLICT (profile_id) DO UPDATE SET computed = excluded.computed, as_of = excluded.as_of,
                                       state = COALESCE(excluded.state, c.state)
RETURNING c.profile_id, c.xmin::text AS v
"""


@dataclass
class Bump:
    """The revisions of a batch's changes (`emit_changes`: profile ids, floors),
    moved in the statement that stores the computed values (`STORE_AND_EMIT_SQL`), which also
    reads what the changes carry unless nothing is published (`read`); `figures` holds it then."""

    ids: list[str]
    floors: list[int]
    read: bool = True
    figures: dict[str, tuple] | None = None  # pid -> (revision, event count, traits json, identifiers)


async def _store(conn: asyncpg.Connection, states: dict[str, Held], ready: dict[str, bytes] | None = None,
                 cache: StateCache | None = None, bump: Bump | None = None) -> dict[str, bytes]:
    """Stores the states' values (`ready`: {pid: values} computed already), and the states
    themselves where they have none unsaved or `cache` says they are due (the others keep the
    stored state, older); holds the states in `cache` under the versions written, and writes
    back the states it evicted unsaved; with `bump`, moves those revisions in the same round
    trip. {pid: the values as JSON}."""
    ready = ready or {}
    now = time.monotonic()
    values = {pid: ready[pid] if pid in ready else orjson.dumps(h.state.result()) for pid, h in states.items()}
    ids = sorted(values)
    save = {p for p in ids if not states[p].unsaved or cache is None or cache.must_save(
        states[p].unsaved, states[p].since, now)}
    if ids:
        args = [ids, [values[p].decode() for p in ids], [_as_of(states[p].state) for p in ids],
                [states[p].state.dumps() if p in save else None for p in ids]]
        if bump is None:
            rows = await conn.fetch(STORE_SQL, *args)
        else:
            rows, bump.figures = [], {}
            for pid, version, revision, count, traits, idents in await conn.fetch(
                    STORE_AND_EMIT_SQL, *args, bump.ids, bump.floors, bump.read):
                if version is not None:
                    rows.append((pid, version))
                else:
                    bump.figures[pid] = _figure(revision, count, traits, idents)
        for pid, version in rows:
            if cache is not None:
                h = states[pid]
                cache.put(pid, Held(version, h.state, 0, 0.0) if pid in save else Held(version, h.state, h.unsaved,
                                                                                         h.since))
    if cache is not None and cache.evicted:
        evicted, cache.evicted = cache.evicted, []
        await write_back(conn, evicted)
    return values


def _as_of(st: State) -> datetime:
    return incremental.time_of(st.last[0])


async def recompute(conn: asyncpg.Connection, pids: set[str], cache: StateCache | None = None) -> dict[str, bytes]:
    """Computes the computed traits of these profiles afresh from all their events (exact,
    whatever the order the events came in), as of each profile's latest event, and stores
    them with a fresh incremental state: merges, legacy marks (computing.py), fall-backs.
    {pid: computed traits as JSON} of those with events."""
    if not pids:
        return {}
    return await _store(conn, {p: Held("", st) for p, st in (await _states_from_events(conn, pids)).items()},
                        cache=cache)


# One round trip: bump the revisions (by one, at least to the change's stream sequence << 16),
# and read back what a change carries besides its computed traits.
BUMP_SQL = """
UPDATE profiles p SET revision = GREATEST(p.revision + 1, x.r)
  FROM unnest($1::text[], $2::bigint[]) AS x(p, r) WHERE p.profile_id = x.p
"""
EMIT_READ = """
       (SELECT jsonb_object_agg(t.name, t.value)::text FROM profile_traits t WHERE t.profile_id = r.profile_id),
       (SELECT array_agg(i.type || chr(31) || i.value ORDER BY i.type, i.value)
          FROM profile_identifiers i WHERE i.profile_id = r.profile_id)"""
EMIT_SQL = f"""
WITH r AS ({BUMP_SQL.strip()}
    RETURNING p.profile_id, p.revision, p.event_count)
SELECT r.profile_id, r.revision, r.event_count,{EMIT_READ}
  FROM r
"""
# The live path's last statement: the computed values stored (STORE_SQL, $1-$4; rows with a
# version) and the batch's revisions moved with what its changes carry (EMIT_SQL, $5-$6; read
# unless $7 is false), in one round trip.
STORE_AND_EMIT_SQL = f"""
WITH c AS ({STORE_SQL.strip()}),
r AS ({BUMP_SQL.strip().replace("$1", "$5").replace("$2", "$6")}
    RETURNING p.profile_id, p.revision, p.event_count),
e AS (SELECT r.profile_id, NULL::text, r.revision, r.event_count,{EMIT_READ} FROM r WHERE $7)
SELECT c.profile_id, c.v, NULL::bigint, NULL::bigint, NULL::text, NULL::text[] FROM c
UNION ALL
SELECT * FROM e
"""


def _figure(revision: int, count: int, traits: str | None, idents: list[str] | None) -> tuple:
    """(revision, event count, traits json, identifiers) of a change, from EMIT_SQL's row."""
    return (revision, count, traits, [identifier_pb2.Identifier(type=t, value=v)
                                      for t, v in (x.split("\x1f", 1) for x in idents or ())])


@dataclass
class Change:
    """A change of one profile in one transaction, and its cdp.profile.changed: the events that
    caused it (`event_ids`, in the order applied; the last is `event_id`) and what they did
    (`emit_changes` fills in the profile's state after the change)."""

    profile_id: str
    event_id: str
    msg_id: str
    cause: object = None
    event_ids: list[str] = field(default_factory=list)
    changed_traits: list[str] = field(default_factory=list)
    linked_account_ids: list[str] = field(default_factory=list)
    stream_seq: int = 0  # of the change's last message
    computed: bytes | None = None  # the computed traits after the change, as JSON; None: read them back


def _with_declared(values: bytes | None, declared: dict | None) -> bytes | None:
    """GetProfile's computed_json: the built-in traits, with the declared ones under "declared"."""
    if values is None or not declared:
        return values
    return orjson.dumps({**orjson.loads(values), "declared": declared})


def bump_of(changes: list[Change], outbox: OutboxWriter) -> Bump:
    """What `emit_changes` moves for these changes (each revision by one, at least to the
    change's stream sequence << 16), to be moved ahead of it (`_store`)."""
    return Bump([c.profile_id for c in changes], [c.stream_seq << REVISION_SHIFT for c in changes],
                read=not outbox.discarding)


async def emit_changes(conn: asyncpg.Connection, outbox: OutboxWriter, changes: list[Change],
                       bump: Bump | None = None) -> None:
    """Bumps the profiles' revisions and writes one cdp.profile.changed per change, carrying the
    profile's traits, computed traits, identifiers and event count after the change (the
    transaction). `bump`: the
    revisions moved already (`bump_of`, `fold_computed`), with what the changes carry."""
    if not changes:
        return
    from .declared_store import COMPUTED_SQL

    if bump is None or bump.figures is None:
        bump = bump_of(changes, outbox)
        if outbox.discarding:  # a rebuild: the revisions move as they did live; nothing is published
            await conn.execute(BUMP_SQL, bump.ids, bump.floors)
            return
        bump.figures = {pid: _figure(*rest) for pid, *rest in await conn.fetch(
            EMIT_SQL, bump.ids, bump.floors)}
    if outbox.discarding:
        return
    figures = bump.figures
    missing = [c.profile_id for c in changes if c.computed is None]
    read_back = dict(await conn.fetch(COMPUTED_SQL, missing)) if missing else {}
    for c in changes:
        revision, count, traits, idents = figures.get(c.profile_id, (0, 0, None, []))
        comp = c.computed if c.computed is not None else (read_back.get(c.profile_id) or "{}").encode()
        outbox.add(envelope.make(
            "cdp.profile.changed",
            profile_events.ProfileChanged(
                profile_id=c.profile_id, changed_traits=c.changed_traits, event_count=count, event_id=c.event_id,
                event_ids=c.event_ids, linked_account_ids=c.linked_account_ids, traits_json=(traits or "{}").encode(),
                computed_json=comp, revision=revision, identifiers=idents),
            producer="profile", event_id=c.msg_id, cause=c.cause))
