"""The identity service: resolves every event of the log of record to a profile."""

from __future__ import annotations

from pathlib import Path

from cdp.identity.v1 import identity_pb2_grpc

from cdp_core.service import Runtime, ServiceSpec

from .grpc_api import SCOPES, SERVICE, IdentityServicer
from .projection import IdentityProjection


def add_servicers(rt: Runtime, server) -> None:
    identity_pb2_grpc.add_IdentityServiceServicer_to_server(IdentityServicer(rt.pool), server)


SPEC = ServiceSpec(
    name="identity",
    grpc_services=[SERVICE],
    scopes=SCOPES,
    add_servicers=add_servicers,
    migrations=Path(__file__).parent / "migrations",
    consumes=["ingest"],
    projections=lambda rt: [IdentityProjection()],
)
