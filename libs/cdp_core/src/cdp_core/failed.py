"""Failed events: what a service could not process, kept with the reason and the
original bytes, listable and replayable over gRPC (cdp.common.v1.FailedEventService,
served by every service) and with `cdp failed list|show|replay`.

Two kinds share one table (cdp_failed_events): 'consumer' (a log message a projection
could not apply; the consumer runner records it and terminates the message) and
'rejected' (a call ingest refused; recorded before the caller is answered).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
from google.protobuf import json_format

from cdp.common.v1 import failed_pb2, failed_pb2_grpc

from . import envelope
from .errors import InvalidArgument, NotFound
from .logs import get_logger

log = get_logger(__name__)
JSON = "application/json"
ENVELOPE = "application/vnd.cdp.envelope+protobuf"
MAX_PAGE = 1000


@dataclass(frozen=True)
class Rejection:
    reason: str
    data: bytes
    content_type: str = JSON
    event_id: str | None = None


async def record_rejections(conn: asyncpg.Connection | asyncpg.Pool, consumer: str, source_id: str | None,
                            rejections: list[Rejection]) -> list[int]:
    """Stores rejected calls; returns their failed-event ids (in order)."""
    if not rejections:
        return []
    rows = await conn.fetch(
        "INSERT INTO cdp_failed_events (kind, consumer, source_id, event_id, reason, data, content_type) "
        "SELECT 'rejected', $1, $2, e, r, d, c FROM unnest($3::text[], $4::text[], $5::bytea[], $6::text[]) "
        "WITH ORDINALITY AS t(e, r, d, c, n) ORDER BY n RETURNING id",
        consumer, source_id,
        [r.event_id for r in rejections], [r.reason[:2000] for r in rejections],
        [r.data for r in rejections], [r.content_type for r in rejections],
    )
    return [r["id"] for r in rows]


# Replays one failed event (a row of cdp_failed_events) inside the transaction that
# marks it replayed; raises to report a failure (the transaction then rolls back).
Replayer = Callable[[asyncpg.Connection, asyncpg.Record], Awaitable[None]]


def _message(row: asyncpg.Record) -> failed_pb2.FailedEvent:
    m = failed_pb2.FailedEvent(
        id=row["id"], kind=row["kind"], consumer=row["consumer"], stream=row["stream"] or "",
        stream_seq=row["stream_seq"] or 0, subject=row["subject"] or "", event_id=row["event_id"] or "",
        source_id=row["source_id"] or "", reason=row["reason"], attempts=row["attempts"],
        replay_result=row["replay_result"] or "", size_bytes=len(row["data"]), content_type=row["content_type"],
    )
    m.failed_at.CopyFrom(envelope.ts(row["failed_at"]))
    if row["replayed_at"]:
        m.replayed_at.CopyFrom(envelope.ts(row["replayed_at"]))
    return m


def data_as_text(row: asyncpg.Record) -> str:
    data = bytes(row["data"])
    if row["content_type"] == ENVELOPE:
        try:
            return json_format.MessageToJson(envelope.decode(data))
        except Exception:  # noqa: BLE001 - undecodable: that may be why it failed
            return ""
    try:
        return data.decode()
    except UnicodeDecodeError:
        return ""


class FailedEventServicer(failed_pb2_grpc.FailedEventServiceServicer):
    def __init__(self, pool: asyncpg.Pool, replayer_for: Callable[[asyncpg.Record], Replayer | None]):
        self.pool = pool
        self.replayer_for = replayer_for

    async def ListFailedEvents(self, request, context) -> failed_pb2.ListFailedEventsResponse:
        size = request.page_size or 100
        if not 0 < size <= MAX_PAGE:
            raise InvalidArgument(f"must be between 1 and {MAX_PAGE}", field="page_size")
        filters, args = [], []
        for col in ("kind", "consumer"):
            if getattr(request, col):
                args.append(getattr(request, col))
                filters.append(f"{col} = ${len(args)}")
        pending_sql = " AND ".join(["replayed_at IS NULL", *filters])
        where = list(filters) if request.include_replayed else ["replayed_at IS NULL", *filters]
        list_args = list(args)
        if request.before_id:
            list_args.append(request.before_id)
            where.append(f"id < ${len(list_args)}")
        list_args.append(size)
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT * FROM cdp_failed_events WHERE {' AND '.join(where) or 'TRUE'} "
                f"ORDER BY id DESC LIMIT ${len(list_args)}", *list_args)
            total = await conn.fetchval(f"SELECT count(*) FROM cdp_failed_events WHERE {pending_sql}", *args)
        return failed_pb2.ListFailedEventsResponse(events=[_message(r) for r in rows], pending_total=total)

    async def GetFailedEvent(self, request, context) -> failed_pb2.GetFailedEventResponse:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM cdp_failed_events WHERE id = $1", request.id)
        if row is None:
            raise NotFound("no failed event with this id", field="id")
        return failed_pb2.GetFailedEventResponse(event=_message(row), data=bytes(row["data"]), data_text=data_as_text(row))

    async def ReplayFailedEvents(self, request, context) -> failed_pb2.ReplayFailedEventsResponse:
        if not request.ids and not request.all:
            raise InvalidArgument("give ids, or all=true to replay every pending failed event", field="ids")
        async with self.pool.acquire() as conn:
            if request.ids:
                rows = await conn.fetch("SELECT * FROM cdp_failed_events WHERE id = ANY($1::bigint[]) ORDER BY id",
                                        list(request.ids))
                missing = set(request.ids) - {r["id"] for r in rows}
                if missing:
                    raise NotFound(f"no failed events with ids {sorted(missing)}", field="ids")
            else:
                rows = await conn.fetch("SELECT * FROM cdp_failed_events WHERE replayed_at IS NULL ORDER BY id LIMIT $1",
                                        MAX_PAGE)
        results = []
        for row in rows:
            results.append(await self._replay(row))
        return failed_pb2.ReplayFailedEventsResponse(results=results)

    async def _replay(self, row: asyncpg.Record) -> failed_pb2.ReplayResult:
        if row["replayed_at"] is not None:
            return failed_pb2.ReplayResult(id=row["id"], ok=True, detail="already replayed")
        replayer = self.replayer_for(row)
        if replayer is None:
            return failed_pb2.ReplayResult(id=row["id"], ok=False, detail=f"nothing here replays {row['consumer']!r}")
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await replayer(conn, row)
                await conn.execute(
                    "UPDATE cdp_failed_events SET replayed_at = now(), replay_result = 'ok', attempts = attempts + 1 "
                    "WHERE id = $1", row["id"])
        except Exception as e:  # noqa: BLE001 - reported to the operator and kept pending
            detail = f"{type(e).__name__}: {e}"[:2000]
            await self.pool.execute(
                "UPDATE cdp_failed_events SET attempts = attempts + 1, replay_result = $2 WHERE id = $1", row["id"], detail)
            log.warning("replay failed", failed_event_id=row["id"], error=type(e).__name__)
            return failed_pb2.ReplayResult(id=row["id"], ok=False, detail=detail)
        return failed_pb2.ReplayResult(id=row["id"], ok=True, detail="replayed")

