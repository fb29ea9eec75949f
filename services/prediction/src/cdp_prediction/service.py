"""The prediction service: features projected from the identity stream, models trained and
kept in a registry, every profile scored (after training, on a schedule, online when its
features change) and published as cdp.prediction.scored."""

from __future__ import annotations

from pathlib import Path

from cdp.prediction.v1 import prediction_pb2_grpc
from cdp_core.service import Runtime, ServiceSpec

from .grpc_api import SCOPES, SERVICE, PredictionServicer
from .projection import PredictionProjection
from .scoring import Options, Scorer


def _scorer(rt: Runtime) -> Scorer:
    if "scorer" not in rt.extras:
        rt.extras["scorer"] = Scorer(rt.pool, Options(rt.settings))
    return rt.extras["scorer"]


def add_servicers(rt: Runtime, server) -> None:
    prediction_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(rt.pool, _scorer(rt)), server)


async def on_start(rt: Runtime) -> None:
    _scorer(rt).start()


async def on_stop(rt: Runtime) -> None:
    if "scorer" in rt.extras:
        await rt.extras["scorer"].stop()


SPEC = ServiceSpec(
    name="prediction",
    grpc_services=[SERVICE],
    scopes=SCOPES,
    add_servicers=add_servicers,
    migrations=Path(__file__).parent / "migrations",
    consumes=["identity"],
    projections=lambda rt: [PredictionProjection()],
    on_start=on_start,
    on_stop=on_stop,
    replay_keeps=["prediction_models", "prediction_scores"],  # trained models and their last scores
)
