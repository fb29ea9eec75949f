"""The one path of every call into the log of record, whatever its entry point
(gRPC, HTTP, webhooks, imports, replays):

validate (domain.calls.accept) -> tracking plan -> append the accepted calls to
CDP_INGEST in one batch, awaiting every ack -> keep the rejected ones in failed events
with the reason and their original bytes -> count.

Answers go back only after both the appends and the rejections are durable.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

import asyncpg
import grpc

from cdp_core import envelope
from cdp_core.bus import Bus, Outgoing
from cdp_core.cache import TtlCache
from cdp_core.errors import CdpError, InvalidArgument
from cdp_core.failed import JSON, Rejection, record_rejections
from cdp_core.logs import get_logger

from .domain.calls import EVENT_TYPE_URL, KINDS, Call, Source, accept, call_to_json
from .domain.ratelimit import RateLimiter
from .domain.tracking_plan import TrackingPlan, compile_plan

log = get_logger(__name__)
PLAN_CACHE_TTL_S = 5.0


class RateLimited(CdpError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, retry_after_s: int):
        super().__init__(f"rate limit exceeded; retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


def subject_for(kind: str) -> str:
    return f"cdp.ingest.event.{kind}"


_SUBJECTS = {k: subject_for(k) for k in KINDS}
_NO_VIOLATIONS: tuple[str, ...] = ()
_NO_HEADERS: dict[str, str] = {}  # the bus reads an Outgoing's headers, never changes them


class Outcome:
    """What became of one call: its event id (and flagged violations), or why it was refused."""

    __slots__ = ("index", "event_id", "error", "failed_event_id", "violations")

    def __init__(self, index: int, event_id: str = "", error: str = "", failed_event_id: int = 0,
                 violations: Sequence[str] = ()):
        self.index, self.event_id, self.error, self.failed_event_id = index, event_id, error, failed_event_id
        self.violations = violations  # flagged tracking-plan violations (a list, or () when none)

    @property
    def ok(self) -> bool:
        return not self.error

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Outcome):
            return NotImplemented
        return (self.index, self.event_id, self.error, self.failed_event_id, list(self.violations)) == \
            (other.index, other.event_id, other.error, other.failed_event_id, list(other.violations))

    def __repr__(self) -> str:
        return (f"Outcome(index={self.index!r}, event_id={self.event_id!r}, error={self.error!r}, "
                f"failed_event_id={self.failed_event_id!r}, violations={self.violations!r})")


class Stats:
    """Accepted/rejected counts per source and violation counts, flushed every second
    (a crash loses at most the last second of these statistics, never an event)."""

    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool
        self.counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self.violations: dict[tuple[str, str, str, str], int] = defaultdict(int)

    def count(self, source_id: str, accepted: int, rejected: int) -> None:
        c = self.counts[source_id]
        c[0] += accepted
        c[1] += rejected

    def violated(self, source_id: str, event: str, messages: list[str], action: str) -> None:
        for m in messages:
            self.violations[(source_id, event, m, action or "allow")] += 1

    async def flush(self) -> None:
        counts, self.counts = self.counts, defaultdict(lambda: [0, 0])
        violations, self.violations = self.violations, defaultdict(int)
        if counts:
            await self.pool.execute(
                "UPDATE sources s SET accepted = s.accepted + c.a, rejected = s.rejected + c.r "
                "FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS c(id, a, r) WHERE s.source_id = c.id",
                list(counts), [v[0] for v in counts.values()], [v[1] for v in counts.values()])
        if violations:
            keys = list(violations)
            await self.pool.execute(
                "INSERT INTO violations (source_id, event, message, action, count, last_seen) "
                "SELECT s, e, m, a, n, now() FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[]) "
                "AS v(s, e, m, a, n) ON CONFLICT (source_id, event, message, action) DO UPDATE "
                "SET count = violations.count + excluded.count, last_seen = excluded.last_seen",
                [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], [k[3] for k in keys],
                [violations[k] for k in keys])

    async def run(self, stop: asyncio.Event, interval_s: float = 1.0) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except TimeoutError:
                pass
            try:
                await self.flush()
            except (OSError, asyncpg.PostgresError) as e:
                log.warning("statistics flush failed", error=type(e).__name__)


class Plans:
    """Compiled tracking plans per source, cached for a few seconds per replica."""

    def __init__(self, pool: asyncpg.Pool, clock=time.monotonic):
        self.pool = pool
        self._cache: TtlCache[str, TrackingPlan | None] = TtlCache(PLAN_CACHE_TTL_S, clock=clock)

    def invalidate(self) -> None:
        self._cache.clear()

    async def get(self, source_id: str) -> TrackingPlan | None:
        return await self._cache.get(source_id, self._load)

    async def _load(self, source_id: str) -> TrackingPlan | None:
        row = await self.pool.fetchrow("SELECT * FROM tracking_plans WHERE source_id = $1", source_id)
        if row is None:
            return None
        return compile_plan(source_id, row["mode"], row["unplanned_events"], row["events"],
                            row["identify_traits_schema"] or "")


class Pipeline:
    def __init__(self, bus: Bus, pool: asyncpg.Pool, *, default_rate_per_s: float = 0):
        self.bus, self.pool = bus, pool
        self.plans = Plans(pool)
        self.stats = Stats(pool)
        self.limiter = RateLimiter(default_rate_per_s)

    def admit(self, source_id: str, n: int, rate: float = 0) -> None:
        """Raises RateLimited when the source has used up its rate."""
        wait = self.limiter.check(source_id, n, rate)
        if wait:
            raise RateLimited(wait)

    async def submit(self, calls: list[Call], source: Source, *, entry: str, record: bool = True,
                     received_at: datetime | None = None) -> list[Outcome]:
        """Appends the valid calls, keeps the rejected ones; one Outcome per call, in order."""
        received_at = received_at or envelope.now()
        plan = await self.plans.get(source.source_id)
        outcomes: list[Outcome] = []
        accepted: list = []
        rejected: list[tuple[Outcome, Rejection]] = []
        for i, call in enumerate(calls):
            try:
                a = accept(call, source, received_at)
                violations = _NO_VIOLATIONS
                if plan is not None:
                    found, action = plan.check(a.kind, a.event_name, a.properties, a.traits)
                    if found:
                        self.stats.violated(source.source_id, a.event_name or a.kind, found, action)
                        if action == "block":
                            raise InvalidArgument("; ".join(found), field="tracking plan")
                        if action == "flag":
                            violations = list(found)
                # what the envelope needs (the parsed properties and traits are let go now)
                accepted.append((a.event_id, a.kind, a.occurred_at, a.payload(violations)))
                outcomes.append(Outcome(i, a.event_id, "", 0, violations))
            except InvalidArgument as e:
                o = Outcome(i, error=str(e))
                outcomes.append(o)
                rejected.append((o, Rejection(str(e), json.dumps(call_to_json(call), default=str).encode(), JSON)))
        if accepted:
            # The envelopes' bytes, as envelope.make(...).SerializeToString() gives them; the
            # batch is recorded at one instant.
            recorded = envelope.ts_fields(envelope.now())
            last: tuple = (None, None)
            messages = []
            append = messages.append
            encode = envelope.encode_raw
            for event_id, kind, occurred_at, payload in accepted:
                subject = _SUBJECTS[kind]
                if last[0] is not occurred_at:
                    last = (occurred_at, envelope.ts_fields(occurred_at))
                append(Outgoing(subject, encode(subject, EVENT_TYPE_URL, payload, producer="ingest", event_id=event_id,
                                                occurred_at=last[1], recorded_at=recorded), event_id, _NO_HEADERS))
            await self.bus.publish_batch(messages)  # durable once this returns
        if rejected and record:
            ids = await record_rejections(self.pool, entry, source.source_id, [r for _, r in rejected])
            for (o, _), fid in zip(rejected, ids, strict=True):
                o.failed_event_id = fid
        self.stats.count(source.source_id, len(accepted), len(rejected))
        return outcomes

    async def reject_request(self, entry: str, reason: str, data: bytes, *, source_id: str | None = None,
                             content_type: str = JSON) -> int:
        """Keeps a request refused as a whole (unknown key, bad body, too large)."""
        [fid] = await record_rejections(self.pool, entry, source_id, [Rejection(reason, data, content_type)])
        if source_id:
            self.stats.count(source_id, 0, 1)
        return fid
