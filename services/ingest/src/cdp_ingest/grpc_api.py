"""IngestService: proto <-> domain mapping, and appending to the log of record."""

from __future__ import annotations

import uuid

from cdp.ingest.v1 import ingest_pb2, ingest_pb2_grpc

from cdp_core import envelope
from cdp_core.bus import Bus
from cdp_core.grpc_server import current_principal

from .domain import Accepted, build_event, subject_for

SERVICE = "cdp.ingest.v1.IngestService"
SCOPES = {f"/{SERVICE}/Track": "events:write", f"/{SERVICE}/Identify": "events:write"}


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self, bus: Bus):
        self.bus = bus

    async def _append(self, accepted: Accepted) -> None:
        env = envelope.make(
            subject_for(accepted.event.kind),
            accepted.event,
            producer="ingest",
            event_id=accepted.event_id,
            occurred_at=accepted.occurred_at,
        )
        await self.bus.publish_envelopes([env])  # returns once JetStream has stored it

    def _source(self) -> str:
        p = current_principal.get()
        return f"grpc:{p.subject}" if p else "grpc"

    async def Track(self, request: ingest_pb2.TrackRequest, context) -> ingest_pb2.TrackResponse:
        received = envelope.now()
        accepted = build_event("track", request.common, source_id=self._source(), received_at=received,
                               event=request.event, properties_json=request.properties_json, new_id=str(uuid.uuid4()))
        await self._append(accepted)
        return ingest_pb2.TrackResponse(event_id=accepted.event_id, received_at=envelope.ts(received))

    async def Identify(self, request: ingest_pb2.IdentifyRequest, context) -> ingest_pb2.IdentifyResponse:
        received = envelope.now()
        accepted = build_event("identify", request.common, source_id=self._source(), received_at=received,
                               traits_json=request.traits_json, new_id=str(uuid.uuid4()))
        await self._append(accepted)
        return ingest_pb2.IdentifyResponse(event_id=accepted.event_id, received_at=envelope.ts(received))
