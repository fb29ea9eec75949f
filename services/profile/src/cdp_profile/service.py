"""The profile service: 360-degree profiles projected from the identity stream."""

from __future__ import annotations

from pathlib import Path

from cdp.profile.v1 import profile_pb2_grpc
from cdp_core.service import Runtime, ServiceSpec

from .grpc_api import SCOPES, SERVICE, ProfileServicer
from .projection import ProfileProjection


def add_servicers(rt: Runtime, server) -> None:
    profile_pb2_grpc.add_ProfileServiceServicer_to_server(ProfileServicer(rt.pool), server)


SPEC = ServiceSpec(
    name="profile",
    grpc_services=[SERVICE],
    scopes=SCOPES,
    add_servicers=add_servicers,
    migrations=Path(__file__).parent / "migrations",
    consumes=["identity"],
    projections=lambda rt: [ProfileProjection()],
)
