"""The profile service: 360-degree profiles projected from the identity stream, with the
prediction service's scores as predicted traits (predicted.py)."""

from __future__ import annotations

from pathlib import Path

from cdp.profile.v1 import profile_pb2_grpc
from cdp_core.service import Runtime, ServiceSpec

from . import computing, traits_api
from .grpc_api import SCOPES, SERVICE, ProfileServicer
from .predicted import PredictionProjection
from .projection import ProfileProjection


def add_servicers(rt: Runtime, server) -> None:
    servicer = rt.extras["servicer"] = ProfileServicer(rt.pool, rt.bus)
    profile_pb2_grpc.add_ProfileServiceServicer_to_server(servicer, server)
    traits_api.add_to_server(rt, server)  # TraitService (declared computed traits)


async def on_start(rt: Runtime) -> None:
    await traits_api.on_start(rt)  # the declared traits' backfiller
    rt.extras["recomputer"] = computing.Recomputer(rt.pool)
    rt.extras["recomputer"].start()


async def on_stop(rt: Runtime) -> None:
    if "recomputer" in rt.extras:
        await rt.extras["recomputer"].stop()
    await traits_api.on_stop(rt)


async def on_drain(rt: Runtime) -> None:
    rt.extras["servicer"].close()  # change streams end now, not at the end of the grace period


SPEC = ServiceSpec(
    name="profile",
    grpc_services=[SERVICE, traits_api.SERVICE],
    scopes={**SCOPES, **traits_api.SCOPES},
    add_servicers=add_servicers,
    migrations=Path(__file__).parent / "migrations",
    consumes=["identity", "prediction"],
    projections=lambda rt: [ProfileProjection(), PredictionProjection()],
    on_drain=on_drain,
    on_start=on_start,
    on_stop=on_stop,
    replay_keeps=["trait_definitions"],  # what operators set; everything else is rebuilt from the log
    replay_finish=computing.drain,  # computed traits of the rebuilt tables, before they are swapped in
)
