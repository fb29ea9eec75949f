"""SegmentService: proto <-> storage mapping (the definitions' rules live in segments.py and
definition.py; the batch evaluator in sqlgen.py)."""

from __future__ import annotations

import asyncio
import base64
import json

import asyncpg

from cdp.segment.v1 import events_pb2, segment_pb2, segment_pb2_grpc
from cdp_core import envelope
from cdp_core.bus import Bus, stream_name
from cdp_core.errors import InvalidArgument, NotFound, Unavailable
from cdp_core.logs import get_logger

from . import definition as d
from . import engine, segments, sqlgen

log = get_logger(__name__)
SERVICE = "cdp.segment.v1.SegmentService"
READS = ("GetSegment", "ListSegments", "Preview", "IsMember", "ListMembers", "ExportMembers",
         "StreamMembershipChanges", "CheckSuppression", "AuditSegment")
WRITES = ("CreateSegment", "UpdateSegment", "DeleteSegment", "ApplySegments")
SCOPES = {f"/{SERVICE}/{m}": "segments:read" for m in READS} | {f"/{SERVICE}/{m}": "segments:write" for m in WRITES}
MAX_PAGE = 1000
DEFAULT_PAGE = 100
EXPORT_CHUNK = 1000
MAX_SAMPLE = 100
MAX_DIFF = 100
CHANGES_STREAM = stream_name("segment")


def _token(last: str) -> str:
    return base64.urlsafe_b64encode(last.encode()).decode()


def _after(token: str) -> str:
    if not token:
        return ""
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("not a token this service gave", field="page_token") from None


def _channel(ch: str, field: str) -> str:
    if ch and ch not in d.CHANNELS:
        raise InvalidArgument(f"unknown channel (one of {', '.join(d.CHANNELS)})", field=field)
    return ch


SUPPRESSED = """EXISTS (SELECT 1 FROM seg_memberships s JOIN seg_segments g ON g.segment_id = s.segment_id
 WHERE s.profile_id = m.profile_id AND s.member AND g.deleted_at IS NULL
   AND g.definition -> 'suppresses' ?| ARRAY['*', $CH::text])"""


class SegmentServicer(segment_pb2_grpc.SegmentServiceServicer):
    def __init__(self, pool: asyncpg.Pool, bus: Bus | None, retention_days: int):
        self.pool, self.bus, self.retention_days = pool, bus, retention_days
        self.closing = asyncio.Event()

    def close(self) -> None:
        self.closing.set()

    # -- definitions
    async def _info(self, conn, name: str) -> segment_pb2.SegmentInfo:
        r = await conn.fetchrow(
            "SELECT s.*, s.definition::text AS body, (SELECT count(*) FROM seg_memberships m WHERE m.segment_id = "
            "s.segment_id AND m.member) AS members FROM seg_segments s WHERE name = $1 AND deleted_at IS NULL", name)
        if r is None:
            raise NotFound("no segment has this name", field="name")
        return _info(r)

    async def CreateSegment(self, request, context):
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                await segments.create(conn, request.definition, self.retention_days)
            return await self._info(conn, request.definition.name)

    async def UpdateSegment(self, request, context):
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                await segments.update(conn, request.definition, self.retention_days, request.expected_version)
            return await self._info(conn, request.definition.name)

    async def DeleteSegment(self, request, context):
        async with self.pool.acquire() as conn, conn.transaction():
            n = await segments.delete(conn, request.name, self.retention_days)
        return segment_pb2.DeleteSegmentResponse(members_exited=n)

    async def GetSegment(self, request, context):
        async with self.pool.acquire() as conn:
            return await self._info(conn, request.name)

    async def ListSegments(self, request, context):
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT s.*, s.definition::text AS body, coalesce(c.n, 0) AS members FROM seg_segments s "
                "LEFT JOIN (SELECT segment_id, count(*) n FROM seg_memberships WHERE member GROUP BY segment_id) c "
                "ON c.segment_id = s.segment_id WHERE s.deleted_at IS NULL ORDER BY s.name")
        return segment_pb2.ListSegmentsResponse(segments=[_info(r) for r in rows])

    async def ApplySegments(self, request, context):
        async with self.pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                applied = await segments.apply(conn, request.yaml, self.retention_days)
                infos = [await self._info(conn, a.name) for a in applied]
            except BaseException:
                await tx.rollback()
                raise
            if request.dry_run:
                await tx.rollback()
            else:
                await tx.commit()
        return segment_pb2.ApplySegmentsResponse(
            results=[segment_pb2.AppliedSegment(outcome=a.outcome, segment=i) for a, i in zip(applied, infos,
                                                                                               strict=True)],
            dry_run=request.dry_run)

    # -- evaluation
    async def Preview(self, request, context):
        if request.WhichOneof("what") == "yaml":
            defs = segments.parse_document(request.yaml)[1]
            if len(defs) != 1:
                raise InvalidArgument("preview one definition at a time", field="yaml")
            definition = defs[0]
        elif request.WhichOneof("what") == "definition":
            definition = request.definition
        else:
            raise InvalidArgument("give a definition or yaml", field="definition")
        size = request.sample_size or 10
        if not 0 < size <= MAX_SAMPLE:
            raise InvalidArgument(f"between 1 and {MAX_SAMPLE}", field="sample_size")
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            cat = await engine.load_catalog(conn, self.retention_days)
            compiled = d.validate(definition, cat.resolver(exclude=definition.name))
            sql, args = sqlgen.members_query(compiled.tree, envelope.now())
            count = await conn.fetchval(f"SELECT count(*) FROM ({sql}) q", *args)
            sample = [r[0] for r in await conn.fetch(f"{sql} ORDER BY p.profile_id LIMIT {size}", *args)]
            total = await conn.fetchval("SELECT count(*) FROM seg_profiles WHERE merged_into IS NULL")
        return segment_pb2.PreviewResponse(count=count, sample_profile_ids=sample, profiles_total=total)

    async def _segment_id(self, conn, name: str) -> str:
        sid = await conn.fetchval("SELECT segment_id FROM seg_segments WHERE name = $1 AND deleted_at IS NULL", name)
        if sid is None:
            raise NotFound("no segment has this name", field="name")
        return sid

    async def IsMember(self, request, context):
        if not request.profile_id:
            raise InvalidArgument("must not be empty", field="profile_id")
        async with self.pool.acquire() as conn:
            sid = await self._segment_id(conn, request.name)
            r = await conn.fetchrow("SELECT since FROM seg_memberships WHERE segment_id = $1 AND profile_id = $2 "
                                    "AND member", sid, request.profile_id)
        out = segment_pb2.IsMemberResponse(member=r is not None)
        if r is not None:
            out.since.CopyFrom(envelope.ts(r[0]))
        return out

    def _members_sql(self, channel: str) -> tuple[str, list]:
        sql = "SELECT m.profile_id, m.since FROM seg_memberships m WHERE m.segment_id = $1 AND m.member " \
              "AND m.profile_id > $2"
        args: list = []
        if channel:
            sql += " AND NOT " + SUPPRESSED.replace("$CH", "$4")
            args.append(channel)
        return sql + " ORDER BY m.profile_id LIMIT $3", args

    async def ListMembers(self, request, context):
        size = request.page_size or DEFAULT_PAGE
        if not 0 < size <= MAX_PAGE:
            raise InvalidArgument(f"between 1 and {MAX_PAGE}", field="page_size")
        channel = _channel(request.exclude_suppressed_on, "exclude_suppressed_on")
        after = _after(request.page_token)
        sql, extra = self._members_sql(channel)
        async with self.pool.acquire() as conn:
            sid = await self._segment_id(conn, request.name)
            rows = await conn.fetch(sql, sid, after, size + 1, *extra)
            total = await conn.fetchval("SELECT count(*) FROM seg_memberships WHERE segment_id = $1 AND member", sid)
        more = len(rows) > size
        rows = rows[:size]
        return segment_pb2.ListMembersResponse(
            members=[segment_pb2.Member(profile_id=r[0], since=envelope.ts(r[1])) for r in rows],
            next_page_token=_token(rows[-1][0]) if more else "", total=total)

    async def ExportMembers(self, request, context):
        channel = _channel(request.exclude_suppressed_on, "exclude_suppressed_on")
        sql, extra = self._members_sql(channel)
        after = ""
        async with self.pool.acquire() as conn:
            sid = await self._segment_id(conn, request.name)
        while True:
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(sql, sid, after, EXPORT_CHUNK, *extra)
            for r in rows:
                yield segment_pb2.Member(profile_id=r[0], since=envelope.ts(r[1]))
            if len(rows) < EXPORT_CHUNK:
                return
            after = rows[-1][0]

    async def CheckSuppression(self, request, context):
        if not request.profile_id:
            raise InvalidArgument("must not be empty", field="profile_id")
        channel = _channel(request.channel, "channel") or "*"
        async with self.pool.acquire() as conn:
            names = [r[0] for r in await conn.fetch(
                "SELECT g.name FROM seg_memberships s JOIN seg_segments g ON g.segment_id = s.segment_id "
                "WHERE s.profile_id = $1 AND s.member AND g.deleted_at IS NULL "
                "AND g.definition -> 'suppresses' ?| ARRAY['*', $2::text] ORDER BY g.name", request.profile_id, channel)]
        return segment_pb2.CheckSuppressionResponse(suppressed=bool(names), segments=names)

    async def AuditSegment(self, request, context):
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            cat = await engine.load_catalog(conn, self.retention_days)
            seg = cat.segments.get(request.name)
            if seg is None:
                raise NotFound("no segment has this name", field="name")
            sql, args = sqlgen.members_query(seg.compiled.tree, envelope.now())
            evaluated = {r[0] for r in await conn.fetch(sql, *args)}
            stored = {r[0] for r in await conn.fetch(
                "SELECT profile_id FROM seg_memberships WHERE segment_id = $1 AND member", seg.segment_id)}
        return segment_pb2.AuditSegmentResponse(
            stored_members=len(stored), evaluated_members=len(evaluated),
            only_stored=sorted(stored - evaluated)[:MAX_DIFF], only_evaluated=sorted(evaluated - stored)[:MAX_DIFF])

    async def StreamMembershipChanges(self, request, context):
        """entered/exited as stored in CDP_SEGMENT (Bus.follow)."""
        wanted = set(request.names)
        if self.bus is None:
            raise Unavailable("the segment service is shutting down; call again")
        start = request.from_sequence if request.WhichOneof("start") == "from_sequence" else None
        async for seq, env in self.bus.follow(CHANGES_STREAM, "cdp.segment.*", from_sequence=start,
                                              closing=self.closing, who="segment"):
            try:
                if env.type == "cdp.segment.entered":
                    change = segment_pb2.MembershipChange(
                        sequence=seq, entered=envelope.unpack(env, events_pb2.SegmentEntered))
                    name = change.entered.segment_name
                elif env.type == "cdp.segment.exited":
                    change = segment_pb2.MembershipChange(
                        sequence=seq, exited=envelope.unpack(env, events_pb2.SegmentExited))
                    name = change.exited.segment_name
                else:
                    continue
            except Exception as e:  # noqa: BLE001 - a foreign message is skipped, not fatal
                log.warning("not a membership change; skipped", sequence=seq, error=str(e)[:200])
                continue
            if wanted and name not in wanted:
                continue
            yield change


def _info(r) -> segment_pb2.SegmentInfo:
    definition = d.from_dict(json.loads(r["body"]))
    return segment_pb2.SegmentInfo(
        segment_id=r["segment_id"], version=r["version"], definition=definition, predefined=r["predefined"],
        created_at=envelope.ts(r["created_at"]), updated_at=envelope.ts(r["updated_at"]), member_count=r["members"],
        yaml=d.to_yaml(definition), backfill_done=r["backfilled_version"] == r["version"])

