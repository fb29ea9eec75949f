"""PredictionService: proto <-> registry, training and scoring."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

import numpy as np

from cdp.prediction.v1 import events_pb2, prediction_pb2, prediction_pb2_grpc
from cdp_core import envelope, logs
from cdp_core.errors import FailedPrecondition, InvalidArgument, NotFound

from . import store
from .features import to_days
from .models import BINARY, COUNTS, InsufficientData, TrainConfig, explain, score, train
from .scoring import Scorer, scored_event

log = logs.get_logger(__name__)
SERVICE = "cdp.prediction.v1.PredictionService"
SCOPES = {
    **{f"/{SERVICE}/{m}": "predictions:read" for m in ("ListModels", "GetModel", "Predict", "ExportPredictions")},
    **{f"/{SERVICE}/{m}": "predictions:write" for m in ("TrainModel", "ActivateModel", "ScoreProfiles")},
}
MAX_HORIZON_DAYS = 365
MAX_EXPLAIN_TOP = 50
MAX_PROFILE_ID = 512
EXPORT_CHUNK = 1000


def model_info(row) -> prediction_pb2.ModelInfo:
    info = prediction_pb2.ModelInfo(
        version=row["version"], horizon_days=row["horizon_days"], churn_days=row["churn_days"],
        features=json.loads(row["features"]), metrics_json=row["metrics"], importance_json=row["importance"],
        active=row["active"], info_json=row["info"])
    info.cutoff.CopyFrom(envelope.ts(row["cutoff"]))
    info.trained_at.CopyFrom(envelope.ts(row["trained_at"]))
    return info


async def _relay(job: asyncio.Future, queue: asyncio.Queue):
    """Yields what `queue` receives until `job` is done and the queue is empty."""
    while not job.done() or not queue.empty():
        getter = asyncio.ensure_future(queue.get())
        await asyncio.wait({getter, job}, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            yield getter.result()
        else:
            getter.cancel()


def _as_of(ts) -> datetime:
    return envelope.from_ts(ts) if ts.seconds or ts.nanos else envelope.now()


class PredictionServicer(prediction_pb2_grpc.PredictionServiceServicer):
    def __init__(self, pool, scorer: Scorer):
        self.pool, self.scorer, self.threads = pool, scorer, scorer.o.threads
        self._background: set[asyncio.Task] = set()
        self._training = asyncio.Lock()  # one training at a time per replica (CPU and memory)

    async def TrainModel(self, request: prediction_pb2.TrainModelRequest, context):
        if not (request.cutoff.seconds or request.cutoff.nanos):
            raise InvalidArgument("is required", field="cutoff")
        if not 1 <= request.horizon_days <= MAX_HORIZON_DAYS:
            raise InvalidArgument(f"must be between 1 and {MAX_HORIZON_DAYS} days", field="horizon_days")
        if not 0 <= request.churn_days <= MAX_HORIZON_DAYS:
            raise InvalidArgument(f"must be between 1 and {MAX_HORIZON_DAYS} days (0: the horizon)", field="churn_days")
        cutoff = envelope.from_ts(request.cutoff)
        o = self.scorer.o
        cfg = TrainConfig(horizon_days=request.horizon_days, churn_days=request.churn_days or None,
                          nthread=self.threads, min_profiles=o.min_profiles, min_positives=o.min_positives)
        if self._training.locked():
            raise FailedPrecondition("a training is already running on this replica; try again when it is done")
        async with self._training:
            async for item in self._train(request, cutoff, cfg):
                yield item

    async def _train(self, request: prediction_pb2.TrainModelRequest, cutoff: datetime, cfg: TrainConfig):
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def progress(stage: str, done: int, total: int) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, prediction_pb2.TrainProgress(stage=stage, done=done, total=total))

        try:
            async with self.pool.acquire() as conn:
                h = await store.load_history(conn, progress=progress,
                                             max_observations=self.scorer.o.max_train_observations)
        except store.TooMuchHistory as e:
            raise FailedPrecondition(f"cannot train: {e}") from e
        if not h.n:
            raise FailedPrecondition("cannot train: no events have been projected yet")
        job = asyncio.ensure_future(asyncio.to_thread(train, h, to_days(cutoff), cfg, progress))
        async for item in _relay(job, queue):
            yield item
        try:
            model = job.result()
        except InsufficientData as e:
            raise FailedPrecondition("cannot train: " + "; ".join(e.reasons)) from e
        async with self.pool.acquire() as conn:
            version = await store.register(conn, model)
            if request.activate:
                await store.activate(conn, version)
            row = await store.get_model_row(conn, version)
        log.info("model trained", version=version, cutoff=cutoff.isoformat(), horizon_days=request.horizon_days,
                 activated=request.activate)
        if request.activate:  # every profile, with the new model
            scoring = asyncio.ensure_future(self.scorer.score_all(progress=lambda done, n, v: queue.put_nowait(
                prediction_pb2.TrainProgress(stage="score", done=done, total=n))))
            async for item in _relay(scoring, queue):
                yield item
            log.info("scored after training", profiles=scoring.result())
        yield prediction_pb2.TrainProgress(stage="done", done=1, total=1, model=model_info(row))

    async def ListModels(self, request, context) -> prediction_pb2.ListModelsResponse:
        async with self.pool.acquire() as conn:
            rows = await store.list_models(conn)
        return prediction_pb2.ListModelsResponse(models=[model_info(r) for r in rows])

    async def GetModel(self, request: prediction_pb2.GetModelRequest, context) -> prediction_pb2.ModelInfo:
        async with self.pool.acquire() as conn:
            row = await store.get_model_row(conn, request.version)
        if row is None:
            raise NotFound(f"no model version {request.version}", field="version")
        return model_info(row)

    async def ActivateModel(self, request: prediction_pb2.ActivateModelRequest, context) -> prediction_pb2.ModelInfo:
        async with self.pool.acquire() as conn:
            if not await store.activate(conn, request.version):
                raise NotFound(f"no model version {request.version}; the active model is unchanged", field="version")
            row = await store.get_model_row(conn, request.version)
        task = asyncio.create_task(self.scorer.score_all())  # every profile, in the background
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return model_info(row)

    async def Predict(self, request: prediction_pb2.PredictRequest, context) -> prediction_pb2.PredictResponse:
        pid = request.profile_id
        if not pid.strip():
            raise InvalidArgument("must not be empty", field="profile_id")
        if len(pid) > MAX_PROFILE_ID:
            raise InvalidArgument(f"must be at most {MAX_PROFILE_ID} characters", field="profile_id")
        if not 0 <= request.explain_top <= MAX_EXPLAIN_TOP:
            raise InvalidArgument(f"must be between 0 and {MAX_EXPLAIN_TOP}", field="explain_top")
        active = await self.scorer.active()
        if active is None:
            raise FailedPrecondition("no active model: train one (cdp predict train) and activate it")
        version, model = active
        as_of = _as_of(request.as_of)
        async with self.pool.acquire() as conn:
            pid = await conn.fetchval("SELECT merged_into FROM prediction_merged WHERE profile_id = $1", pid) or pid
            h = await store.load_history(conn, [pid])
        s = await asyncio.to_thread(score, model, h, to_days(as_of), self.threads) if h.n else None
        if s is None or not s.profile_ids:
            raise NotFound("no events for this profile before as_of", field="profile_id")
        out = prediction_pb2.PredictResponse(
            prediction=scored_event(0, s, version, model.horizon_days, as_of, envelope.now()))
        if request.explain_top:
            for target in (*BINARY, *COUNTS):
                top = explain(model, s.X[:1], target, request.explain_top)[0]
                out.explanations.append(prediction_pb2.TargetExplanation(target=target, contributions=[
                    prediction_pb2.Contribution(feature=f, value=0.0 if np.isnan(v) else v, contribution=c)
                    for f, v, c in top]))
        return out

    async def ScoreProfiles(self, request: prediction_pb2.ScoreProfilesRequest, context):
        if await self.scorer.active() is None:
            raise FailedPrecondition("no active model: train one (cdp predict train) and activate it")
        queue: asyncio.Queue = asyncio.Queue()
        job = asyncio.ensure_future(self.scorer.score_all(
            _as_of(request.as_of),
            lambda d, n, v: queue.put_nowait(prediction_pb2.ScoreProgress(done=d, total=n, model_version=v))))
        async for item in _relay(job, queue):
            yield item
        job.result()

    async def ExportPredictions(self, request, context):
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            after = ""
            while True:
                rows = await conn.fetch(
                    "SELECT s.*, m.horizon_days FROM prediction_scores s JOIN prediction_models m "
                    "ON m.version = s.model_version WHERE profile_id > $1 ORDER BY profile_id LIMIT $2",
                    after, EXPORT_CHUNK)
                if not rows:
                    return
                for r in rows:
                    yield stored_event(r)
                after = rows[-1]["profile_id"]


def stored_event(r) -> events_pb2.PredictionScored:
    aff = json.loads(r["affinities"])
    ev = events_pb2.PredictionScored(
        profile_id=r["profile_id"], model_version=r["model_version"], horizon_days=r["horizon_days"],
        purchase_probability=r["purchase_probability"], expected_purchases=r["expected_purchases"],
        predicted_ltv=r["predicted_ltv"], ltv_percentile=r["ltv_percentile"], discount_affinity=r["discount_affinity"],
        affinities=[events_pb2.AttributeAffinity(attribute=a, value=v["value"] or "", score=v["score"])
                    for a, v in aff.items()])
    if r["churn_probability"] is not None:
        ev.churn_probability = r["churn_probability"]
    ev.as_of.CopyFrom(envelope.ts(r["as_of"]))
    ev.scored_at.CopyFrom(envelope.ts(r["scored_at"]))
    return ev

