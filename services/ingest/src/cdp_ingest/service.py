"""The ingest service: the front door and the writer of the log of record (CDP_INGEST)."""

from __future__ import annotations

from cdp.ingest.v1 import ingest_pb2_grpc

from cdp_core.service import Runtime, ServiceSpec

from .grpc_api import SCOPES, SERVICE, IngestServicer


def add_servicers(rt: Runtime, server) -> None:
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(IngestServicer(rt.bus), server)


SPEC = ServiceSpec(name="ingest", grpc_services=[SERVICE], scopes=SCOPES, add_servicers=add_servicers)
