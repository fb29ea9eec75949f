"""ProfileService: proto <-> storage mapping only (validation and SQL pieces in queries.py)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import asyncpg

from cdp.common.v1 import identifier_pb2
from cdp.profile.v1 import events_pb2 as profile_events
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_core import envelope
from cdp_core.bus import Bus, stream_name
from cdp_core.errors import InvalidArgument, NotFound, Unavailable
from cdp_core.logs import get_logger

from . import accounts
from . import queries as q
from .declared_store import COMPUTED_SQL

log = get_logger(__name__)

SERVICE = "cdp.profile.v1.ProfileService"
METHODS = ("GetProfile", "BatchGetProfiles", "SearchProfiles", "GetTimeline", "ExportProfiles", "GetAccount",
           "StreamProfileChanges", "GetPersonData")
SCOPES = {f"/{SERVICE}/{m}": "profiles:read" for m in METHODS}
KINDS = ("track", "identify", "page", "screen", "group", "alias")
EXPORT_CHUNK = 500
PERSON_EVENTS_CHUNK = 500  # events per GetPersonData message
CHANGES_SUBJECT = "cdp.profile.changed"
CHANGES_STREAM = stream_name("profile")
MAX_ACCOUNT_ID = 512  # as ingest limits groupId
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LIVE = "merged_into IS NULL AND event_count > 0"  # a profile that exists and is no one's alias


def _micros(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(microseconds=1)


def _json_text(text: str | None) -> str:
    """A jsonb column's text as the API gives JSON (compact-spaced as json.dumps writes it)."""
    if text is None:
        return ""
    return json.dumps(json.loads(text))


class Found:
    """The outcome of one look-up: the live profile id, and the merged id asked for if any."""

    __slots__ = ("profile_id", "merged_profile_id")

    def __init__(self, profile_id: str, merged_profile_id: str = ""):
        self.profile_id, self.merged_profile_id = profile_id, merged_profile_id


async def resolve(conn: asyncpg.Connection, lookups: list[tuple[str, str, str]]) -> list[Found | None]:
    """Each look-up's live profile (merged ids answer with their survivor), None when not found.
    Three statements whatever the number of look-ups."""
    ids = sorted({a for kind, a, _ in lookups if kind == "profile_id"})
    pairs = sorted({(a, b) for kind, a, b in lookups if kind == "identifier"})
    by_identifier: dict[tuple[str, str], str] = {}
    if pairs:
        by_identifier = {(r[0], r[1]): r[2] for r in await conn.fetch(
            "SELECT i.type, i.value, i.profile_id FROM unnest($1::text[], $2::text[]) AS x(t, v) "
            "JOIN profile_identifiers i ON i.type = x.t AND i.value = x.v",
            [p[0] for p in pairs], [p[1] for p in pairs])}
    candidates = sorted(set(ids) | set(by_identifier.values()))
    rows = {r[0]: (r[1], r[2]) for r in await conn.fetch(
        "SELECT profile_id, merged_into, event_count FROM profiles WHERE profile_id = ANY($1::text[])", candidates)}
    survivors = sorted({m for m, _ in rows.values() if m} - set(rows))
    if survivors:
        rows.update({r[0]: (r[1], r[2]) for r in await conn.fetch(
            "SELECT profile_id, merged_into, event_count FROM profiles WHERE profile_id = ANY($1::text[])",
            survivors)})

    def live(pid: str | None, asked_id: bool) -> Found | None:
        if pid is None or pid not in rows:
            return None
        merged_into, _ = rows[pid]
        if merged_into is None:
            return Found(pid)
        if merged_into in rows and rows[merged_into][0] is None:
            return Found(merged_into, pid if asked_id else "")
        return None

    return [live(a, True) if kind == "profile_id" else live(by_identifier.get((a, b)), False)
            for kind, a, b in lookups]


async def load_profiles(conn: asyncpg.Connection, pids: list[str], mask: q.Mask) -> dict[str, profile_pb2.Profile]:
    """The live profiles among `pids`, filled as the mask says; one statement per part asked for."""
    rows = await conn.fetch("SELECT profile_id, event_count, first_seen, last_seen FROM profiles "
                            "WHERE profile_id = ANY($1::text[]) AND merged_into IS NULL", pids)
    out: dict[str, profile_pb2.Profile] = {}
    for r in rows:
        p = profile_pb2.Profile(profile_id=r["profile_id"])
        if mask.has("event_count"):
            p.event_count = r["event_count"]
        if r["first_seen"] is not None:
            if mask.has("first_seen"):
                p.first_seen.CopyFrom(envelope.ts(r["first_seen"]))
            if mask.has("last_seen"):
                p.last_seen.CopyFrom(envelope.ts(r["last_seen"]))
        out[p.profile_id] = p
    live = sorted(out)
    if not live:
        return out
    if mask.has("identifiers"):
        for r in await conn.fetch("SELECT profile_id, type, value FROM profile_identifiers "
                                  "WHERE profile_id = ANY($1::text[]) ORDER BY profile_id, type, value", live):
            out[r[0]].identifiers.append(identifier_pb2.Identifier(type=r[1], value=r[2]))
    if mask.has("traits"):
        sql = ("SELECT t.profile_id, t.name, t.value::text, t.updated_at, t.event_id, e.source_id, e.source_kind "
               "FROM profile_traits t LEFT JOIN profile_events e ON e.event_id = t.event_id "
               "WHERE t.profile_id = ANY($1::text[])")
        args: list = [live]
        if mask.trait_names is not None:
            sql += " AND t.name = ANY($2::text[])"
            args.append(sorted(mask.trait_names))
        for r in await conn.fetch(sql + " ORDER BY t.profile_id, t.name", *args):
            out[r[0]].traits.append(_trait(*r[1:]))
    if mask.has("merged_profile_ids"):
        for r in await conn.fetch("SELECT merged_into, profile_id FROM profiles WHERE merged_into = ANY($1::text[]) "
                                  "ORDER BY merged_into, profile_id", live):
            out[r[0]].merged_profile_ids.append(r[1])
    if mask.has("account_ids"):
        for pid, ids in (await accounts.account_ids_of(conn, live)).items():
            out[pid].account_ids.extend(ids)
    if mask.has("computed_json"):
        for pid, value in await conn.fetch(COMPUTED_SQL, live):  # built-in + "declared" (declared_store.py)
            out[pid].computed_json = value
    return out


def _trait(name: str, value: str, updated_at: datetime, event_id: str, source_id: str | None = None,
           source_kind: str | None = None) -> profile_pb2.Trait:
    return profile_pb2.Trait(name=name, value_json=_json_text(value), updated_at=envelope.ts(updated_at),
                             event_id=event_id, source_id=source_id or "", source_kind=source_kind or "")


def _not_found(lookup: tuple[str, str, str]) -> NotFound:
    if lookup[0] == "identifier":
        return NotFound("no profile has this identifier", field="identifier")
    return NotFound("no such profile", field="profile_id")


def _timeline_event(r: asyncpg.Record) -> profile_pb2.TimelineEvent:
    e = profile_pb2.TimelineEvent(
        event_id=r["event_id"], kind=r["kind"], event=r["event_name"] or "", source_id=r["source_id"] or "",
        source_kind=r["source_kind"] or "", channel=r["channel"] or "",
        properties_json=_json_text(r["properties"]), traits_json=_json_text(r["traits"]),
        context_json=_json_text(r["context"]))
    e.occurred_at.CopyFrom(envelope.ts(r["occurred_at"]))
    if r["received_at"] is not None:
        e.received_at.CopyFrom(envelope.ts(r["received_at"]))
    return e


class ProfileServicer(profile_pb2_grpc.ProfileServiceServicer):
    def __init__(self, pool: asyncpg.Pool, bus: Bus | None = None):
        self.pool = pool
        self.bus = bus  # StreamProfileChanges reads CDP_PROFILE through it
        self.closing = asyncio.Event()  # set at shutdown: change streams end

    def close(self) -> None:
        """Shutdown has begun: every StreamProfileChanges call ends (UNAVAILABLE, with the
        sequence to resume from) instead of holding the server's grace period."""
        self.closing.set()

    async def GetProfile(self, request: profile_pb2.GetProfileRequest, context) -> profile_pb2.GetProfileResponse:
        lookup = q.lookup_of(request)
        mask = q.parse_mask(request.field_mask.paths)
        async with self.pool.acquire() as conn:
            found = (await resolve(conn, [lookup]))[0]
            profile = (await load_profiles(conn, [found.profile_id], mask)).get(found.profile_id) if found else None
        if profile is None:
            if lookup[0] == "identifier":
                raise NotFound("no profile has this identifier", field="identifier")
            raise NotFound("no such profile", field="profile_id")
        return profile_pb2.GetProfileResponse(profile=profile, merged_profile_id=found.merged_profile_id)

    async def BatchGetProfiles(self, request: profile_pb2.BatchGetProfilesRequest,
                               context) -> profile_pb2.BatchGetProfilesResponse:
        if len(request.lookups) > q.MAX_BATCH:
            raise InvalidArgument(f"at most {q.MAX_BATCH} look-ups a call", field="lookups")
        lookups = [q.lookup_of(lk, field=f"lookups[{i}]") for i, lk in enumerate(request.lookups)]
        mask = q.parse_mask(request.field_mask.paths)
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            found = await resolve(conn, lookups)
            profiles = await load_profiles(conn, sorted({f.profile_id for f in found if f}), mask)
        out = profile_pb2.BatchGetProfilesResponse()
        for lk, f in zip(request.lookups, found, strict=True):
            res = out.results.add(lookup=lk)
            if f is not None and f.profile_id in profiles:
                res.found = True
                res.profile.CopyFrom(profiles[f.profile_id])
                res.merged_profile_id = f.merged_profile_id
        return out

    async def SearchProfiles(self, request: profile_pb2.SearchProfilesRequest,
                             context) -> profile_pb2.SearchProfilesResponse:
        size = q.page_size(request.page_size)
        mask = q.parse_mask(request.field_mask.paths)
        conds, params = q.trait_conditions(request.filters, first_param=3)
        fp = q.fingerprint("search", q.filters_key(request.filters))
        after = q.decode_token(request.page_token, fp, 1)
        if after is not None and not isinstance(after[0], str):
            raise InvalidArgument("is not a token this service issued", field="page_token")
        sql = ("SELECT p.profile_id FROM profiles p WHERE p.merged_into IS NULL AND p.event_count > 0 "
               "AND p.profile_id > $1 " + "".join(f"AND {c} " for c in conds) + "ORDER BY p.profile_id LIMIT $2")
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            ids = [r[0] for r in await conn.fetch(sql, after[0] if after else "", size + 1, *params)]
            more = len(ids) > size
            ids = ids[:size]
            profiles = await load_profiles(conn, ids, mask)
        out = profile_pb2.SearchProfilesResponse(profiles=[profiles[i] for i in ids if i in profiles])
        if more:
            out.next_page_token = q.encode_token(fp, ids[-1])
        return out

    async def GetTimeline(self, request: profile_pb2.GetTimelineRequest, context) -> profile_pb2.GetTimelineResponse:
        lookup = q.lookup_of(request)
        size = q.page_size(request.page_size)
        kinds, names = list(request.kinds), list(request.event_names)
        if len(kinds) > q.MAX_TIMELINE_KINDS:
            raise InvalidArgument(f"at most {q.MAX_TIMELINE_KINDS} kinds", field="kinds")
        for i, k in enumerate(kinds):
            if k not in KINDS:
                raise InvalidArgument(f"must be one of {', '.join(KINDS)}", field=f"kinds[{i}]")
        if len(names) > q.MAX_TIMELINE_NAMES:
            raise InvalidArgument(f"at most {q.MAX_TIMELINE_NAMES} event names", field="event_names")
        for i, n in enumerate(names):
            if not n or len(n) > q.MAX_NAME:
                raise InvalidArgument(f"must be 1 to {q.MAX_NAME} characters", field=f"event_names[{i}]")
        since = envelope.from_ts(request.since) if request.HasField("since") else None
        until = envelope.from_ts(request.until) if request.HasField("until") else None
        if since is not None and until is not None and until <= since:
            raise InvalidArgument("must be after since", field="until")
        fp = q.fingerprint("timeline", list(lookup), sorted(kinds), sorted(names),
                           since and _micros(since), until and _micros(until))
        pos = q.decode_token(request.page_token, fp, 2)
        if pos is not None and not (isinstance(pos[0], int) and isinstance(pos[1], str)):
            raise InvalidArgument("is not a token this service issued", field="page_token")

        where, args = ["profile_id = $1"], []

        def arg(v) -> str:
            args.append(v)
            return f"${len(args) + 1}"

        if kinds:
            where.append(f"kind = ANY({arg(sorted(set(kinds)))}::text[])")
        if names:
            where.append(f"event_name = ANY({arg(sorted(set(names)))}::text[])")
        if since is not None:
            where.append(f"occurred_at >= {arg(since)}")
        if until is not None:
            where.append(f"occurred_at < {arg(until)}")
        if pos is not None:
            where.append(f"(occurred_at, event_id) < ({arg(EPOCH + timedelta(microseconds=pos[0]))}, {arg(pos[1])})")
        sql = ("SELECT event_id, kind, event_name, source_id, source_kind, channel, properties::text AS properties, "
               "traits::text AS traits, context::text AS context, occurred_at, received_at FROM profile_events "
               f"WHERE {' AND '.join(where)} ORDER BY occurred_at DESC, event_id DESC LIMIT {arg(size + 1)}")
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            found = (await resolve(conn, [lookup]))[0]
            if found is None:
                if lookup[0] == "identifier":
                    raise NotFound("no profile has this identifier", field="identifier")
                raise NotFound("no such profile", field="profile_id")
            rows = await conn.fetch(sql, found.profile_id, *args)
        out = profile_pb2.GetTimelineResponse(profile_id=found.profile_id, merged_profile_id=found.merged_profile_id,
                                              events=[_timeline_event(r) for r in rows[:size]])
        if len(rows) > size:
            last = rows[size - 1]
            out.next_page_token = q.encode_token(fp, _micros(last["occurred_at"]), last["event_id"])
        return out

    async def ExportProfiles(self, request: profile_pb2.ExportProfilesRequest, context):
        mask = q.parse_mask(request.field_mask.paths)
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            after = ""
            while True:
                ids = [r[0] for r in await conn.fetch(
                    f"SELECT profile_id FROM profiles WHERE {LIVE} AND profile_id > $1 ORDER BY profile_id LIMIT $2",
                    after, EXPORT_CHUNK)]
                if not ids:
                    return
                profiles = await load_profiles(conn, ids, mask)
                for pid in ids:
                    yield profiles[pid]
                after = ids[-1]

    async def GetAccount(self, request: profile_pb2.GetAccountRequest, context) -> profile_pb2.GetAccountResponse:
        account_id = request.account_id
        if not account_id.strip():
            raise InvalidArgument("must not be empty", field="account_id")
        if len(account_id) > MAX_ACCOUNT_ID:
            raise InvalidArgument(f"must be at most {MAX_ACCOUNT_ID} characters", field="account_id")
        size = q.page_size(request.page_size)
        fp = q.fingerprint("account", account_id)
        after = q.decode_token(request.page_token, fp, 1)
        if after is not None and not isinstance(after[0], str):
            raise InvalidArgument("is not a token this service issued", field="page_token")
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            got = await accounts.load_account(conn, account_id, size, after[0] if after else "")
        if got is None:
            raise NotFound("no such account (no group call named it)", field="account_id")
        head, figures = got["head"], got["figures"]
        account = profile_pb2.Account(
            account_id=head["account_id"], traits=[_trait(*r) for r in got["traits"]],
            first_seen=envelope.ts(head["first_seen"]), last_seen=envelope.ts(head["last_seen"]),
            user_count=figures["users"], revenue_total=float(figures["revenue_total"]), order_count=figures["orders"])
        if figures["last_activity_at"] is not None:
            account.last_activity_at.CopyFrom(envelope.ts(figures["last_activity_at"]))
        out = profile_pb2.GetAccountResponse(account=account, users=[profile_pb2.AccountUser(
            profile_id=r["profile_id"], first_linked_at=envelope.ts(r["first_linked_at"]),
            last_linked_at=envelope.ts(r["last_linked_at"])) for r in got["users"]])
        if got["more"]:
            out.next_page_token = q.encode_token(fp, got["users"][-1]["profile_id"])
        return out

    async def StreamProfileChanges(self, request: profile_pb2.StreamProfileChangesRequest, context):
        """cdp.profile.changed as they are stored in CDP_PROFILE (Bus.follow). Filtering by
        profile is done here: the subject does not carry the id."""
        wanted = set(q.profile_ids(request.profile_ids))
        if self.bus is None:
            raise Unavailable("the profile service is shutting down; call again")
        start = request.from_sequence if request.WhichOneof("start") == "from_sequence" else None
        async for seq, env in self.bus.follow(CHANGES_STREAM, CHANGES_SUBJECT, from_sequence=start,
                                              closing=self.closing, who="profile"):
            try:
                change = envelope.unpack(env, profile_events.ProfileChanged)
            except Exception as e:  # noqa: BLE001 - a foreign message on the subject is skipped, not fatal
                log.warning("not a profile change; skipped", sequence=seq, error=str(e)[:200])
                continue
            if wanted and change.profile_id not in wanted:
                continue
            yield profile_pb2.ProfileChange(sequence=seq, event_id=env.event_id, recorded_at=env.recorded_at,
                                            change=change)

    async def GetPersonData(self, request: profile_pb2.GetPersonDataRequest, context):
        """The access answer (GDPR art. 15, CCPA right to know): one REPEATABLE READ snapshot,
        the person first, then every event oldest first in chunks."""
        lookup = q.lookup_of(request)
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            found = (await resolve(conn, [lookup]))[0]
            profile = (await load_profiles(conn, [found.profile_id], q.ALL)).get(found.profile_id) if found else None
            if profile is None:
                raise _not_found(lookup)
            person = profile_pb2.Person(
                profile_id=profile.profile_id, merged_profile_ids=profile.merged_profile_ids,
                identifiers=profile.identifiers, traits=profile.traits, computed_json=profile.computed_json,
                event_count=profile.event_count, generated_at=envelope.ts(envelope.now()),
                accounts=[profile_pb2.AccountMembership(
                    account_id=r["account_id"], first_linked_at=envelope.ts(r["first_linked_at"]),
                    last_linked_at=envelope.ts(r["last_linked_at"]))
                    for r in await accounts.memberships_of(conn, profile.profile_id)])
            if profile.HasField("first_seen"):
                person.first_seen.CopyFrom(profile.first_seen)
                person.last_seen.CopyFrom(profile.last_seen)
            yield profile_pb2.PersonDataPart(person=person)
            sql = ("SELECT event_id, kind, event_name, source_id, source_kind, channel, properties::text AS properties, "
                   "traits::text AS traits, context::text AS context, occurred_at, received_at FROM profile_events "
                   "WHERE profile_id = $1 AND ($2::timestamptz IS NULL OR (occurred_at, event_id) > ($2, $3)) "
                   "ORDER BY occurred_at, event_id LIMIT $4")
            after: tuple = (None, "")
            while True:
                rows = await conn.fetch(sql, profile.profile_id, after[0], after[1], PERSON_EVENTS_CHUNK)
                if not rows:
                    return
                yield profile_pb2.PersonDataPart(events=[_timeline_event(r) for r in rows])
                after = (rows[-1]["occurred_at"], rows[-1]["event_id"])
