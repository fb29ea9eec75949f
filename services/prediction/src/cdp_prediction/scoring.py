"""Scoring with the active model: every profile (after training or activation, on the batch
schedule, on request) and online, for profiles whose features changed (debounced: a profile
is scored once its events have been quiet for CDP_PREDICTION_DEBOUNCE_S, however many arrived).

Each score is stored (prediction_scores) and published as cdp.prediction.scored through the
outbox in the same transaction. The CPU work (features, XGBoost) runs in a worker thread so
the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime

import asyncpg
import numpy as np

from cdp.prediction.v1 import events_pb2
from cdp_core import envelope, logs
from cdp_core.consumer import TRANSIENT
from cdp_core.outbox import OutboxWriter
from cdp_core.settings import Settings

from . import store
from .features import to_days
from .models import Model, Scores, score

log = logs.get_logger(__name__)
SUBJECT = "cdp.prediction.scored"


class Options:
    def __init__(self, settings: Settings):
        opt = settings.option
        self.debounce_s = float(opt("CDP_PREDICTION_DEBOUNCE_S", "5"))
        self.poll_s = float(opt("CDP_PREDICTION_POLL_S", "1"))
        self.score_interval_s = float(opt("CDP_PREDICTION_SCORE_INTERVAL_S", "86400"))  # 0: no schedule
        self.prune_interval_s = float(opt("CDP_PREDICTION_PRUNE_INTERVAL_S", "3600"))
        self.retention_days = float(opt("CDP_PREDICTION_RETENTION_DAYS", "730"))
        self.max_observations = int(opt("CDP_PREDICTION_MAX_OBSERVATIONS", "5000"))
        self.chunk = int(opt("CDP_PREDICTION_SCORE_CHUNK", "5000"))
        self.online_batch = int(opt("CDP_PREDICTION_ONLINE_BATCH", "500"))
        self.threads = int(opt("CDP_PREDICTION_THREADS", "1"))
        # data sufficiency (models.TrainConfig): below these, training refuses and says why
        self.min_profiles = int(opt("CDP_PREDICTION_MIN_PROFILES", "200"))
        self.min_positives = int(opt("CDP_PREDICTION_MIN_POSITIVES", "25"))
        # what one training may read into memory (about 40 bytes an observation, plus features)
        self.max_train_observations = int(opt("CDP_PREDICTION_MAX_TRAIN_OBSERVATIONS", "60000000"))
        if (self.debounce_s < 0 or self.poll_s <= 0 or self.score_interval_s < 0 or self.prune_interval_s <= 0
                or self.chunk < 1 or self.max_observations < 1 or self.retention_days <= 0):
            raise ValueError("CDP_PREDICTION_* scoring options must be positive numbers")


def scored_event(pid_index: int, s: Scores, version: int, horizon: int, as_of: datetime,
                 scored_at: datetime) -> events_pb2.PredictionScored:
    i = pid_index
    ev = events_pb2.PredictionScored(
        profile_id=s.profile_ids[i], model_version=version, horizon_days=horizon,
        purchase_probability=float(s.purchase_probability[i]), expected_purchases=float(s.expected_purchases[i]),
        predicted_ltv=float(s.predicted_ltv[i]), ltv_percentile=float(s.ltv_percentile[i]),
        discount_affinity=float(s.discount_affinity[i]),
        affinities=[events_pb2.AttributeAffinity(attribute=a, value=v[i][0] or "", score=v[i][1])
                    for a, v in s.affinities.items()])
    if not np.isnan(s.churn_probability[i]):
        ev.churn_probability = float(s.churn_probability[i])
    ev.as_of.CopyFrom(envelope.ts(as_of))
    ev.scored_at.CopyFrom(envelope.ts(scored_at))
    return ev


class Scorer:
    def __init__(self, pool: asyncpg.Pool, options: Options):
        self.pool, self.o = pool, options
        self._model: tuple[int, Model] | None = None
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        self._batch_lock = asyncio.Lock()
        self.last_batch = self.last_prune = time.monotonic()

    async def active(self) -> tuple[int, Model] | None:
        """The active model, reloaded when another replica or an RPC changed it."""
        async with self.pool.acquire() as conn:
            version = await store.active_version(conn)
            if version is None:
                return None
            if self._model is None or self._model[0] != version:
                self._model = (version, await store.load_bundle(conn, version))
        return self._model

    async def _write(self, conn: asyncpg.Connection, version: int, model: Model, s: Scores, as_of: datetime) -> None:
        scored_at = envelope.now()
        await store.save_scores(conn, version, s, as_of, scored_at)
        out = OutboxWriter()
        stamp = as_of.isoformat()
        for i, pid in enumerate(s.profile_ids):
            out.add(envelope.make(SUBJECT, scored_event(i, s, version, model.horizon_days, as_of, scored_at),
                                  producer="prediction",
                                  event_id=envelope.derived_id("prediction.scored", pid, str(version), stamp)))
        await out.flush(conn)

    async def score_ids(self, ids: list[str], as_of: datetime, active=None) -> Scores | None:
        """Scores these profiles (stored and published); None without an active model."""
        active = active or await self.active()
        if active is None or not ids:
            return None
        version, model = active
        async with self.pool.acquire() as conn:
            h = await store.load_history(conn, ids)
        if not h.n:
            return None
        s = await asyncio.to_thread(score, model, h, to_days(as_of), self.o.threads)
        async with self.pool.acquire() as conn, conn.transaction():
            await self._write(conn, version, model, s, as_of)
        return s

    async def score_all(self, as_of: datetime | None = None, progress: Callable[[int, int, int], None] | None = None) -> int:
        """Scores every profile with events, chunk by chunk; returns how many were scored."""
        async with self._batch_lock:
            active = await self.active()
            if active is None:
                return 0
            as_of = as_of or envelope.now()
            started = envelope.now()
            async with self.pool.acquire() as conn:
                total = await conn.fetchval("SELECT count(DISTINCT profile_id) FROM prediction_observations")
                done = 0
                async for ids in store.profile_chunks(conn, self.o.chunk):
                    s = await self.score_ids(ids, as_of, active)
                    done += len(s.profile_ids) if s else 0
                    if progress:
                        progress(done, total, active[0])
                # what this pass scored needs no online scoring for changes made before it started
                await conn.execute("DELETE FROM prediction_dirty WHERE changed_at < $1", started)
            self.last_batch = time.monotonic()
            log.info("scored every profile", profiles=done, model_version=active[0])
            return done

    async def score_dirty(self) -> int:
        """Online scoring: profiles quiet for the debounce period since their last change."""
        if await self.active() is None:
            return 0
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT profile_id, changed_at FROM prediction_dirty WHERE changed_at < now() - make_interval(secs => $1) "
                "ORDER BY changed_at LIMIT $2", self.o.debounce_s, self.o.online_batch)
        if not rows:
            return 0
        ids = [r[0] for r in rows]
        await self.score_ids(ids, envelope.now())
        async with self.pool.acquire() as conn:
            # a change that came in while scoring keeps its row (changed_at moved on)
            await conn.execute("DELETE FROM prediction_dirty d USING unnest($1::text[], $2::timestamptz[]) AS x(p, c) "
                               "WHERE d.profile_id = x.p AND d.changed_at = x.c", ids, [r[1] for r in rows])
        return len(ids)

    async def prune(self) -> int:
        """Keeps the stored history bounded: drops observations older than the retention and
        the oldest beyond the per-profile cap."""
        horizon = to_days(envelope.now()) - self.o.retention_days
        async with self.pool.acquire() as conn:
            a = await conn.execute("DELETE FROM prediction_observations WHERE t < $1", horizon)
            b = await conn.execute(
                "DELETE FROM prediction_observations o USING (SELECT profile_id, event_id, seq FROM ("
                "SELECT profile_id, event_id, seq, row_number() OVER (PARTITION BY profile_id "
                "ORDER BY t DESC, event_id DESC, seq) AS rn FROM prediction_observations) r WHERE rn > $1) x "
                "WHERE o.profile_id = x.profile_id AND o.event_id = x.event_id AND o.seq = x.seq",
                self.o.max_observations)
        return int(a.split()[-1]) + int(b.split()[-1])

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.score_dirty()
                if time.monotonic() - self.last_prune >= self.o.prune_interval_s:
                    pruned = await self.prune()
                    self.last_prune = time.monotonic()
                    log.info("pruned observations", rows=pruned)
                if self.o.score_interval_s and time.monotonic() - self.last_batch >= self.o.score_interval_s:
                    await self.score_all()
            except TRANSIENT as e:  # the same transient errors the consumer runner retries
                log.warning("scoring round failed; retrying", error=repr(e)[:300])
            try:
                await asyncio.wait_for(self._stopping.wait(), self.o.poll_s)
            except TimeoutError:
                pass

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="prediction-scorer")

    async def stop(self) -> None:
        """Stops the loop; a scoring pass in flight is cancelled (its open transaction rolls
        back; the profiles stay marked and are scored after the restart)."""
        self._stopping.set()
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
