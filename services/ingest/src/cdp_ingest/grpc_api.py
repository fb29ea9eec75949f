"""IngestService and SourceService: proto <-> domain mapping only. Every call goes
through the Pipeline."""

from __future__ import annotations

import json
from collections.abc import Callable

from cdp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from cdp_core import envelope
from cdp_core.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from cdp_core.grpc_server import current_principal

from .domain.calls import MAX_BATCH_BYTES, MAX_BATCH_CALLS, Call, Source, call_to_json
from .domain.tracking_plan import compile_plan
from .pipeline import Outcome, Pipeline
from .sources import SourceRecord, SourceRegistry

SERVICE = "cdp.ingest.v1.IngestService"
SOURCE_SERVICE = "cdp.ingest.v1.SourceService"
SCOPES = {f"/{SERVICE}/{m}": "events:write"
          for m in ("Track", "Identify", "Page", "Screen", "Group", "Alias", "Batch", "ImportEvents")}
WRITE_KEY_METADATA = "x-cdp-write-key"
BATCH_CONTENT_TYPE = "application/vnd.cdp.ingest.batch+protobuf"
MAX_IMPORT_REJECTIONS_SHOWN = 100

# Segment field names (used by the domain) -> the names a gRPC caller sees
GRPC_NAMES = {
    "messageId": "common.message_id", "userId": "common.user_id", "anonymousId": "common.anonymous_id",
    "context": "common.context_json", "integrations": "common.integrations_json", "timestamp": "common.timestamp",
    "sentAt": "common.sent_at", "identifiers": "common.identifiers", "properties": "properties_json",
    "traits": "traits_json", "groupId": "group_id", "previousId": "previous_id", "type": "call",
}


def call_from_proto(kind: str, req, path: str = "") -> Call:
    c = req.common
    # One positional constructor call with the kind's own fields (Call's field order: kind,
    # message_id, user_id, anonymous_id, event, name, category, group_id, previous_id,
    # properties, traits, context, integrations, timestamp, sent_at, identifiers, path,
    # names); timestamps are converted only when set.
    event = name = category = group_id = previous_id = ""
    properties = traits = None
    if kind == "track":
        event, properties = req.event, req.properties_json
    elif kind == "identify":
        traits = req.traits_json
    elif kind == "page" or kind == "screen":
        name, category, properties = req.name, req.category, req.properties_json
    elif kind == "group":
        group_id, traits = req.group_id, req.traits_json
    elif kind == "alias":
        previous_id = req.previous_id
    ids = c.identifiers
    return Call(
        kind, c.message_id, c.user_id, c.anonymous_id, event, name, category, group_id, previous_id,
        properties, traits, c.context_json, c.integrations_json,
        envelope.from_ts(c.timestamp) if c.HasField("timestamp") else None,
        envelope.from_ts(c.sent_at) if c.HasField("sent_at") else None,
        [(i.type, i.value) for i in ids] if ids else (),
        path, GRPC_NAMES,
    )


def calls_of(items, offset: int = 0) -> list[Call]:
    calls = []
    append = calls.append
    for i, item in enumerate(items, offset):
        kind = item.WhichOneof("call")
        if kind is None:
            raise InvalidArgument("is empty: set one of track, identify, page, screen, group, alias",
                                  field=f"calls[{i}]")
        append(call_from_proto(kind, getattr(item, kind), f"calls[{i}]"))
    return calls


_CallResult = ingest_pb2.CallResult


def result_of(o: Outcome) -> ingest_pb2.CallResult:
    if not o.error and not o.violations and not o.failed_event_id:  # an accepted call: only what is set
        return _CallResult(index=o.index, event_id=o.event_id)
    return _CallResult(index=o.index, event_id=o.event_id, error=o.error,
                       failed_event_id=o.failed_event_id, violations=o.violations)


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self, pipeline: Pipeline, sources: SourceRegistry):
        self.pipeline, self.sources = pipeline, sources
        self._rates: dict[str, float] = {}  # write-key source id -> its own rate (0: the default)

    async def _source(self, context, write_key: str, kept: Callable[[], object]) -> Source:
        """The write key's source (from the request or x-cdp-write-key metadata) — admitted
        by its rate limit as each call is submitted — or, without a key, the caller's
        token subject as a trusted `server` source (not rate-limited). An unknown key or a
        disabled source refuses the request, which is kept in failed events as Segment
        JSON (`kept()`), so it can be replayed once the source is fixed."""
        if not write_key:
            write_key = dict(context.invocation_metadata() or ()).get(WRITE_KEY_METADATA, "")
        if not write_key:
            p = current_principal.get()
            subject = p.subject if p else "anonymous"
            return Source(f"token:{subject}", subject, "server")
        rec = await self.sources.by_write_key(write_key)
        if rec is None or not rec.enabled:
            error = Unauthenticated("unknown write key") if rec is None else \
                PermissionDenied(f"source {rec.name!r} is disabled")
            try:
                data = kept()
            except InvalidArgument:  # not even a call: keep what can be said of it
                data = {"unparseable": True}
            if rec is None:
                data = {**data, "writeKey": write_key} if isinstance(data, dict) else data
            fid = await self.pipeline.reject_request("ingest.grpc", str(error), json.dumps(data, default=str).encode(),
                                                     source_id=rec.source_id if rec else None)
            error.args = (f"{error} (kept as failed event {fid})",)
            raise error
        self._rates[rec.source_id] = rec.rate_limit_per_s
        return rec.source

    def _admit(self, source: Source, n: int) -> None:
        if source.source_id in self._rates:
            self.pipeline.admit(source.source_id, n, self._rates[source.source_id])

    async def _one(self, kind: str, request, context):
        source = await self._source(context, "", lambda: call_to_json(call_from_proto(kind, request)))
        self._admit(source, 1)
        received = envelope.now()
        [o] = await self.pipeline.submit([call_from_proto(kind, request)], source, entry="ingest.grpc",
                                         received_at=received)
        if not o.ok:
            raise InvalidArgument(f"{o.error} (kept as failed event {o.failed_event_id})")
        return o.event_id, envelope.ts(received)

    async def Track(self, request, context):
        event_id, received = await self._one("track", request, context)
        return ingest_pb2.TrackResponse(event_id=event_id, received_at=received)

    async def Identify(self, request, context):
        event_id, received = await self._one("identify", request, context)
        return ingest_pb2.IdentifyResponse(event_id=event_id, received_at=received)

    async def Page(self, request, context):
        event_id, received = await self._one("page", request, context)
        return ingest_pb2.PageResponse(event_id=event_id, received_at=received)

    async def Screen(self, request, context):
        event_id, received = await self._one("screen", request, context)
        return ingest_pb2.ScreenResponse(event_id=event_id, received_at=received)

    async def Group(self, request, context):
        event_id, received = await self._one("group", request, context)
        return ingest_pb2.GroupResponse(event_id=event_id, received_at=received)

    async def Alias(self, request, context):
        event_id, received = await self._one("alias", request, context)
        return ingest_pb2.AliasResponse(event_id=event_id, received_at=received)

    async def Batch(self, request: ingest_pb2.BatchRequest, context) -> ingest_pb2.BatchResponse:
        source = await self._source(context, request.write_key,
                                    lambda: {"batch": [call_to_json(c) for c in calls_of(request.calls)]})
        size = request.ByteSize()
        reason = None
        if size > MAX_BATCH_BYTES:
            reason = f"batch is {size} bytes; the limit is {MAX_BATCH_BYTES}"
        elif len(request.calls) > MAX_BATCH_CALLS:
            reason = f"batch has {len(request.calls)} calls; the limit is {MAX_BATCH_CALLS}"
        if reason:
            fid = await self.pipeline.reject_request("ingest.grpc", reason, request.SerializeToString(),
                                                     source_id=source.source_id, content_type=BATCH_CONTENT_TYPE)
            raise InvalidArgument(f"{reason} (kept as failed event {fid})", field="calls")
        calls = calls_of(request.calls)
        self._admit(source, len(calls))
        received = envelope.now()
        outcomes = await self.pipeline.submit(calls, source, entry="ingest.grpc", received_at=received)
        accepted = sum(o.ok for o in outcomes)
        return ingest_pb2.BatchResponse(accepted=accepted, rejected=len(outcomes) - accepted,
                                        results=[result_of(o) for o in outcomes], received_at=envelope.ts(received))

    async def ImportEvents(self, request_iterator, context) -> ingest_pb2.ImportEventsResponse:
        source = None
        accepted = rejected = offset = 0
        shown: list[ingest_pb2.CallResult] = []
        async for req in request_iterator:
            if source is None:
                source = await self._source(context, req.write_key,
                                            lambda req=req: {"batch": [call_to_json(c) for c in calls_of(req.calls)]})
            calls = calls_of(req.calls, offset)
            self._admit(source, len(calls))
            for o in await self.pipeline.submit(calls, source, entry="ingest.import"):
                if o.ok:
                    accepted += 1
                else:
                    rejected += 1
                    if len(shown) < MAX_IMPORT_REJECTIONS_SHOWN:
                        o.index += offset  # the call's place in the whole stream
                        shown.append(result_of(o))
            offset += len(calls)
        return ingest_pb2.ImportEventsResponse(accepted=accepted, rejected=rejected, rejections=shown)


def source_message(rec: SourceRecord) -> ingest_pb2.Source:
    m = ingest_pb2.Source(source_id=rec.source_id, name=rec.name, kind=rec.kind, enabled=rec.enabled,
                          write_key_hint=rec.write_key_hint, accepted=rec.accepted, rejected=rec.rejected,
                          rate_limit_per_s=rec.rate_limit_per_s)
    m.created_at.CopyFrom(envelope.ts(rec.created_at))
    return m


class SourceServicer(ingest_pb2_grpc.SourceServiceServicer):
    def __init__(self, pipeline: Pipeline, sources: SourceRegistry):
        self.pipeline, self.sources = pipeline, sources

    async def CreateSource(self, request, context):
        rec, key = await self.sources.create(request.name, request.kind, request.webhook_secret,
                                             request.rate_limit_per_s)
        return ingest_pb2.CreateSourceResponse(source=source_message(rec), write_key=key)

    async def ListSources(self, request, context):
        return ingest_pb2.ListSourcesResponse(sources=[source_message(r) for r in await self.sources.list()])

    async def RotateSourceKey(self, request, context):
        rec, key = await self.sources.rotate(request.name)
        return ingest_pb2.RotateSourceKeyResponse(source=source_message(rec), write_key=key)

    async def DisableSource(self, request, context):
        return ingest_pb2.DisableSourceResponse(source=source_message(await self.sources.set_enabled(request.name, False)))

    async def EnableSource(self, request, context):
        return ingest_pb2.EnableSourceResponse(source=source_message(await self.sources.set_enabled(request.name, True)))

    async def ApplyTrackingPlan(self, request, context):
        p = request.plan
        rec = await self.sources.by_name(p.source_name)
        plan = compile_plan(rec.source_id, p.mode, p.unplanned_events, p.events_json, p.identify_traits_schema_json)
        await self.pipeline.pool.execute(
            "INSERT INTO tracking_plans (source_id, mode, unplanned_events, events, identify_traits_schema) "
            "VALUES ($1, $2, $3, $4::jsonb, $5::jsonb) ON CONFLICT (source_id) DO UPDATE SET mode = excluded.mode, "
            "unplanned_events = excluded.unplanned_events, events = excluded.events, "
            "identify_traits_schema = excluded.identify_traits_schema, updated_at = now()",
            rec.source_id, plan.mode, plan.unplanned_events, json.dumps(plan.raw_events),
            json.dumps(plan.raw_identify) if plan.raw_identify is not None else None)
        self.pipeline.plans.invalidate()
        return ingest_pb2.ApplyTrackingPlanResponse(plan=await self._plan(rec))

    async def GetTrackingPlan(self, request, context):
        return ingest_pb2.GetTrackingPlanResponse(plan=await self._plan(await self.sources.by_name(request.source_name)))

    async def _plan(self, rec: SourceRecord) -> ingest_pb2.TrackingPlan:
        row = await self.pipeline.pool.fetchrow("SELECT * FROM tracking_plans WHERE source_id = $1", rec.source_id)
        if row is None:
            raise NotFound("this source has no tracking plan", field="source_name")
        plan = ingest_pb2.TrackingPlan(source_name=rec.name, mode=row["mode"], unplanned_events=row["unplanned_events"],
                                       events_json=row["events"], identify_traits_schema_json=row["identify_traits_schema"] or "")
        plan.updated_at.CopyFrom(envelope.ts(row["updated_at"]))
        return plan

    async def ListViolations(self, request, context):
        args, where = [], ""
        if request.source_name:
            rec = await self.sources.by_name(request.source_name)
            args, where = [rec.source_id], "WHERE v.source_id = $1"
        rows = await self.pipeline.pool.fetch(
            "SELECT s.name, v.event, v.message, v.action, v.count, v.last_seen FROM violations v "
            f"JOIN sources s USING (source_id) {where} ORDER BY v.count DESC, s.name, v.event LIMIT 1000", *args)
        out = []
        for r in rows:
            v = ingest_pb2.Violation(source_name=r["name"], event=r["event"], message=r["message"], action=r["action"],
                                     count=r["count"])
            v.last_seen.CopyFrom(envelope.ts(r["last_seen"]))
            out.append(v)
        return ingest_pb2.ListViolationsResponse(violations=out)
