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
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import grpc

from cdp_core import envelope
from cdp_core.bus import Bus, Outgoing
from cdp_core.cache import TtlCache
from cdp_core.errors import CdpError, InvalidArgument
from cdp_core.failed import JSON, Rejection, record_rejections
from cdp_core.logs import get_logger

from .domain.calls import Call, Source, accept, call_to_json
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


@dataclass
class Outcome:
    index: int
    event_id: str = ""
    error: str = ""
    failed_event_id: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.error


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
                violations = []
                if plan is not None:
                    violations, action = plan.check(a.event.kind, a.event.event, a.properties, a.traits)
                    if violations:
                        self.stats.violated(source.source_id, a.event.event or a.event.kind, violations, action)
                        if action == "block":
                            raise InvalidArgument("; ".join(violations), field="tracking plan")
                        if action == "flag":
                            a.event.violations.extend(violations)
                    violations = list(a.event.violations)
                accepted.append(a)
                outcomes.append(Outcome(i, event_id=a.event_id, violations=violations))
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
            for a in accepted:
                subject = subject_for(a.event.kind)
                if last[0] is not a.occurred_at:
                    last = (a.occurred_at, envelope.ts_fields(a.occurred_at))
                messages.append(Outgoing(subject, envelope.encode(subject, a.event, producer="ingest",
                                                                  event_id=a.event_id, occurred_at=last[1],
                                                                  recorded_at=recorded), a.event_id, {}))
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
