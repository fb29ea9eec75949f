"""IdentityService: proto <-> domain mapping; the graph work is in graphstore."""

from __future__ import annotations

import json
import uuid

import asyncpg

from cdp.common.v1 import identifier_pb2
from cdp.identity.v1 import events_pb2 as identity_events
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp_core import envelope
from cdp_core.errors import FailedPrecondition, InvalidArgument, NotFound
from cdp_core.outbox import OutboxWriter

from . import graphstore as gs
from .config import DEFAULT_YAML, ConfigStore
from .graph import Graph, Link
from .normalize import InvalidIdentifier, check

SERVICE = "cdp.identity.v1.IdentityService"
_READ = ("ResolveIdentifier", "GetIdentityGraph", "ListMerges", "ExportGraph", "GetRules", "ListCandidates")
_WRITE = ("SplitProfile", "ForgetProfile", "ApplyRules", "ReviewCandidate", "EstimateMatchModel")
MAX_ESTIMATE_RECORDS = 200_000
DEFAULT_ESTIMATE_RECORDS = 50_000
MIN_ESTIMATE_RECORDS = 50
SCOPES = {**{f"/{SERVICE}/{m}": "profiles:read" for m in _READ},
          **{f"/{SERVICE}/{m}": "profiles:write" for m in _WRITE}}
MAX_PAGE = 1000
DEFAULT_PAGE = 100
MAX_SPLIT_IDENTIFIERS = 1000


def _page(size: int, token: str) -> tuple[int, int]:
    if size < 0 or size > MAX_PAGE:
        raise InvalidArgument(f"must be between 0 and {MAX_PAGE}", field="page_size")
    try:
        offset = int(token) if token else 0
    except ValueError:
        raise InvalidArgument("is not a token this service issued", field="page_token") from None
    if offset < 0:
        raise InvalidArgument("is not a token this service issued", field="page_token")
    return size or DEFAULT_PAGE, offset


def _next(offset: int, size: int, got: int) -> str:
    return str(offset + size) if got == size else ""


def _json_text(v) -> str:
    """A jsonb column as JSON text (asyncpg returns it as text unless a codec is set)."""
    if v is None:
        return ""
    return v if isinstance(v, str) else json.dumps(v)


def _merge_pb(r: asyncpg.Record) -> identity_pb2.Merge:
    m = identity_pb2.Merge(
        merge_id=r["merge_id"], survivor_profile_id=r["survivor_id"], merged_profile_id=r["merged_id"],
        rule=r["rule"], identifier=identifier_pb2.Identifier(type=r["identifier_type"], value=r["identifier_value"]),
        event_id=r["event_id"], confidence=r["confidence"], survivor_reason=r["survivor_reason"],
        details_json=_json_text(r["details"]), undone_by_split=r["undone_by"] or "")
    m.merged_at.FromDatetime(r["merged_at"])
    return m


# Open candidate pairs with each side's live profile (a merged profile's survivor) as a and b.
_LIVE_CANDIDATES = (
    "SELECT c.*, coalesce(pa.merged_into, pa.profile_id) AS a, coalesce(pb.merged_into, pb.profile_id) AS b "
    "FROM candidates c JOIN profiles pa ON pa.profile_id = c.profile_id "
    "JOIN profiles pb ON pb.profile_id = c.other_profile_id WHERE c.status = 'open'")

class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, pool: asyncpg.Pool, config: ConfigStore, js=None):
        self.pool, self.config, self.js = pool, config, js

    async def _key(self, conn: asyncpg.Connection, ident, field: str) -> gs.Key:
        cfg = await self.config.current(conn)
        if ident.type not in cfg.types:
            raise InvalidArgument(f"unknown identifier type; known: {', '.join(cfg.types.all)}", field=f"{field}.type")
        try:
            return (ident.type, check(ident.type, ident.value, default_region=cfg.default_region, types=cfg.types))
        except InvalidIdentifier as e:
            raise InvalidArgument(e.reason, field=f"{field}.value") from None

    async def _profile(self, conn: asyncpg.Connection, ref, field: str = "profile") -> str:
        """The live profile a reference names (a merged profile id names its survivor)."""
        which = ref.WhichOneof("lookup")
        if which == "identifier":
            key = await self._key(conn, ref.identifier, f"{field}.identifier")
            pid = await conn.fetchval("SELECT profile_id FROM identifiers WHERE type = $1 AND value = $2", *key)
            if pid is None:
                raise NotFound("no profile has this identifier", field=f"{field}.identifier")
            return pid
        if which != "profile_id" or not ref.profile_id:
            raise InvalidArgument("give a profile_id or an identifier", field=field)
        row = await conn.fetchrow("SELECT merged_into FROM profiles WHERE profile_id = $1", ref.profile_id)
        if row is None:
            raise NotFound("no such profile", field=f"{field}.profile_id")
        return row["merged_into"] or ref.profile_id

    async def ResolveIdentifier(self, request, context) -> identity_pb2.ResolveIdentifierResponse:
        async with self.pool.acquire() as conn:
            key = await self._key(conn, request.identifier, "identifier")
            pid = await conn.fetchval("SELECT profile_id FROM identifiers WHERE type = $1 AND value = $2", *key)
            if pid is None:
                raise NotFound("no profile has this identifier", field="identifier")
            rows = await conn.fetch("SELECT type, value FROM identifiers WHERE profile_id = $1 ORDER BY type, value", pid)
        return identity_pb2.ResolveIdentifierResponse(
            profile_id=pid, identifiers=[identifier_pb2.Identifier(type=r["type"], value=r["value"]) for r in rows])

    async def GetIdentityGraph(self, request, context) -> identity_pb2.IdentityGraph:
        async with self.pool.acquire() as conn:
            pid = await self._profile(conn, request.profile)
            ids = await conn.fetch("SELECT type, value, first_event_id, first_seq FROM identifiers "
                                   "WHERE profile_id = $1 ORDER BY first_seq, type, value", pid)
            merged = await conn.fetch("SELECT profile_id FROM profiles WHERE merged_into = $1 ORDER BY profile_id", pid)
            merges = await conn.fetch("SELECT * FROM merges WHERE survivor_id = $1 AND undone_by IS NULL "
                                      "ORDER BY merged_at, merge_id", pid)
            count = await conn.fetchval("SELECT count(*) FROM resolutions WHERE profile_id = $1", pid)
        return identity_pb2.IdentityGraph(
            profile_id=pid,
            identifiers=[identity_pb2.GraphIdentifier(identifier=identifier_pb2.Identifier(type=r[0], value=r[1]),
                                                      first_event_id=r[2], first_seq=r[3]) for r in ids],
            merged_profile_ids=[r[0] for r in merged], merges=[_merge_pb(r) for r in merges], event_count=count)

    async def ListMerges(self, request, context) -> identity_pb2.ListMergesResponse:
        size, offset = _page(request.page_size, request.page_token)
        async with self.pool.acquire() as conn:
            pid = await self._profile(conn, request.profile)
            ids = [pid, *(r[0] for r in await conn.fetch("SELECT profile_id FROM profiles WHERE merged_into = $1", pid))]
            rows = await conn.fetch(
                "SELECT * FROM merges WHERE survivor_id = ANY($1::text[]) OR merged_id = ANY($1::text[]) "
                "ORDER BY merged_at DESC, merge_id LIMIT $2 OFFSET $3", ids, size, offset)
        return identity_pb2.ListMergesResponse(merges=[_merge_pb(r) for r in rows],
                                               next_page_token=_next(offset, size, len(rows)))

    async def SplitProfile(self, request, context) -> identity_pb2.SplitProfileResponse:
        if not request.identifiers:
            raise InvalidArgument("name at least one identifier to separate", field="identifiers")
        if len(request.identifiers) > MAX_SPLIT_IDENTIFIERS:
            raise InvalidArgument(f"at most {MAX_SPLIT_IDENTIFIERS} identifiers", field="identifiers")
        if self.js is None:
            raise InvalidArgument("this server cannot read the log of record", field="profile")
        outbox = OutboxWriter()
        async with self.pool.acquire() as conn, conn.transaction():
            pid = await self._profile(conn, request.profile)
            named = [await self._key(conn, i, f"identifiers[{n}]") for n, i in enumerate(request.identifiers)]
            await gs.lock_profiles(conn, {pid})
            mine = {(r[0], r[1]) for r in await conn.fetch(
                "SELECT type, value FROM identifiers WHERE profile_id = $1", pid)}
            missing = [n for n, k in enumerate(named) if k not in mine]
            if missing:
                raise InvalidArgument("is not an identifier of this profile", field=f"identifiers[{missing[0]}]")
            side = set(named)
            if side >= mine:
                raise InvalidArgument("would leave the profile with no identifier: keep at least one",
                                      field="identifiers")
            split_id = str(uuid.uuid4())
            await conn.executemany(
                "INSERT INTO separations (type, value, split_id, side) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                [(t, v, split_id, 1 if (t, v) in side else 0) for t, v in sorted(mine)])
            cfg = await self.config.current(conn)
            done = await gs.rebuild_profiles(conn, self.js, cfg.rules, {pid}, split_id=split_id, rule="manual",
                                             reason=request.reason or "split by an operator", profile_id=pid,
                                             outbox=outbox)
            await outbox.flush(conn)
        return identity_pb2.SplitProfileResponse(
            split_id=split_id, events_rebuilt=done.events,
            profiles=[identity_pb2.ProfileGraphEntry(profile_id=p, identifiers=[gs.ident(k) for k in ks])
                      for p, ks in sorted(done.profiles.items())])

    async def ForgetProfile(self, request, context) -> identity_pb2.ForgetProfileResponse:
        outbox = OutboxWriter()
        async with self.pool.acquire() as conn, conn.transaction():
            pid = await self._profile(conn, request.profile)
            ids, n = await gs.forget(conn, pid)
            outbox.add(envelope.make(
                "cdp.identity.forgotten",
                identity_events.ProfileForgotten(profile_id=pid, profile_ids=ids, reason=request.reason),
                producer="identity", event_id=envelope.derived_id("forgotten", pid)))
            await outbox.flush(conn)
        return identity_pb2.ForgetProfileResponse(profile_ids=ids, identifiers_forgotten=n)

    async def ExportGraph(self, request, context):
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            current: identity_pb2.ProfileGraphEntry | None = None
            async for t, v, pid in conn.cursor("SELECT type, value, profile_id FROM identifiers "
                                               "ORDER BY profile_id, type, value", prefetch=5000):
                if current is None or current.profile_id != pid:
                    if current is not None:
                        yield current
                    current = identity_pb2.ProfileGraphEntry(profile_id=pid)
                current.identifiers.append(identifier_pb2.Identifier(type=t, value=v))
            if current is not None:
                yield current

    async def _rules(self, conn: asyncpg.Connection) -> identity_pb2.Rules:
        cfg = await self.config.current(conn)
        out = identity_pb2.Rules(yaml=cfg.yaml if cfg.version else DEFAULT_YAML.lstrip(), version=cfg.version)
        at = await self.config.applied_at(conn, cfg.version) if cfg.version else None
        if at is not None:
            out.applied_at.FromDatetime(at)
        return out

    async def GetRules(self, request, context) -> identity_pb2.Rules:
        async with self.pool.acquire() as conn:
            return await self._rules(conn)

    async def ApplyRules(self, request, context) -> identity_pb2.Rules:
        cfg = self.config.parse(request.yaml)  # RulesError (InvalidArgument) names the field at fault
        if request.dry_run:
            return identity_pb2.Rules(yaml=cfg.yaml)
        async with self.pool.acquire() as conn:
            await self.config.apply(conn, request.yaml)
            return await self._rules(conn)

    async def ListCandidates(self, request, context) -> identity_pb2.ListCandidatesResponse:
        """Open pairs under their live profiles (a profile merged since the pair was found is
        shown as its survivor; a pair that has become one profile is no longer listed)."""
        size, offset = _page(request.page_size, request.page_token)
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT * FROM (SELECT DISTINCT ON (a, b) * FROM ({_LIVE_CANDIDATES}) c WHERE a <> b "
                "ORDER BY a, b, probability DESC) x ORDER BY probability DESC, a, b LIMIT $1 OFFSET $2", size, offset)
        out = identity_pb2.ListCandidatesResponse(next_page_token=_next(offset, size, len(rows)))
        for r in rows:
            c = out.candidates.add(profile_id=r["a"], other_profile_id=r["b"],
                                   probability=r["probability"], weight=r["weight"],
                                   details_json=_json_text(r["details"]), event_id=r["event_id"])
            c.found_at.FromDatetime(r["found_at"])
        return out

    async def ReviewCandidate(self, request, context) -> identity_pb2.ReviewCandidateResponse:
        if not request.profile_id or not request.other_profile_id:
            raise InvalidArgument("name both profiles of the candidate pair", field="profile_id")
        outbox = OutboxWriter()
        async with self.pool.acquire() as conn, conn.transaction():
            ids = [await self._profile(conn, identity_pb2.ProfileRef(profile_id=p), f)
                   for p, f in ((request.profile_id, "profile_id"), (request.other_profile_id, "other_profile_id"))]
            pairs = await conn.fetch(
                f"SELECT * FROM ({_LIVE_CANDIDATES}) c WHERE (a, b) IN (($1, $2), ($2, $1)) "
                "ORDER BY probability DESC, profile_id, other_profile_id", *ids)
            if not pairs or ids[0] == ids[1]:
                raise NotFound("no open candidate pair with these profiles", field="profile_id")
            await conn.execute("SELECT 1 FROM candidates WHERE (profile_id, other_profile_id) IN "
                               "(SELECT * FROM unnest($1::text[], $2::text[])) FOR UPDATE",
                               [r["profile_id"] for r in pairs], [r["other_profile_id"] for r in pairs])
            row = pairs[0]  # the strongest evidence for the pair; all its rows take the decision
            decided = ([r["profile_id"] for r in pairs], [r["other_profile_id"] for r in pairs])
            if not request.accept:
                await conn.execute("UPDATE candidates SET status = 'rejected' WHERE (profile_id, other_profile_id) IN "
                                   "(SELECT * FROM unnest($1::text[], $2::text[]))", *decided)
                return identity_pb2.ReviewCandidateResponse(status="rejected")
            a, b = ids
            cfg = await self.config.current(conn)
            nodes = await gs.load_nodes(conn, {a, b})
            g = Graph(cfg.rules, nodes, separations=await gs.separations(conn, {k for n in nodes for k in n.keys()}))
            if a == b or len(g.nodes) != 2:
                raise FailedPrecondition("the two profiles are one profile already", field="profile_id")
            why = g.link_conflict(a, b)
            if why is not None:
                raise FailedPrecondition(f"the rules forbid this merge: {why}", field="profile_id")
            ka, kb = (min(g.nodes[p].keys(), key=cfg.rules.sort_key) for p in (a, b))
            seq = max(r[0] for r in await conn.fetch(
                "SELECT first_seq FROM identifiers WHERE (type, value) IN (($1, $2), ($3, $4))", *ka, *kb))
            details = {"reviewed": True, "reason": request.reason, "candidate": json.loads(row["details"])
                       if isinstance(row["details"], str) else row["details"]}
            lk = Link(seq, row["event_id"], ka, kb, "review", row["probability"], details)
            m = g.link(lk)
            await gs.write(conn, g, [])
            await gs.keep_review(conn, lk, m)
            await conn.execute("UPDATE candidates SET status = 'accepted' WHERE (profile_id, other_profile_id) IN "
                               "(SELECT * FROM unnest($1::text[], $2::text[]))", *decided)
            outbox.add(gs.merged_event(m, row["event_id"], None))
            await outbox.flush(conn)
        return identity_pb2.ReviewCandidateResponse(status="accepted", survivor_profile_id=m.survivor,
                                                    merged_profile_id=m.merged)

    async def EstimateMatchModel(self, request, context) -> identity_pb2.EstimateMatchModelResponse:
        import asyncio

        import yaml

        from .matching import MatchModel, MatchRecord

        n = request.max_records or DEFAULT_ESTIMATE_RECORDS
        if not 0 < n <= MAX_ESTIMATE_RECORDS:
            raise InvalidArgument(f"must be between 1 and {MAX_ESTIMATE_RECORDS}", field="max_records")
        async with self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT record FROM match_records ORDER BY record_id LIMIT $1", n)
        if len(rows) < MIN_ESTIMATE_RECORDS:
            raise FailedPrecondition(f"{len(rows)} offline records stored; EM needs at least {MIN_ESTIMATE_RECORDS}",
                                     field="max_records")
        records = [MatchRecord.from_dict(json.loads(r[0]) if isinstance(r[0], str) else r[0]) for r in rows]
        model = await asyncio.get_running_loop().run_in_executor(None, lambda: MatchModel.estimate(records))
        out = identity_pb2.EstimateMatchModelResponse(model_yaml=yaml.safe_dump(model.to_dict(), sort_keys=False),
                                                      records=len(records))
        if request.apply:
            async with self.pool.acquire() as conn:
                cfg = await self.config.current(conn)
                doc = yaml.safe_load(cfg.yaml if cfg.version else DEFAULT_YAML) or {}
                doc.setdefault("matching", {})["model"] = model.to_dict()
                applied, _ = await self.config.apply(conn, yaml.safe_dump(doc, sort_keys=False))
                out.version = applied.version
        return out
