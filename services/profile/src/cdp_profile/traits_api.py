"""TraitService: declared computed traits over gRPC (definitions in declared.py, storage and
backfill in declared_store.py)."""

from __future__ import annotations

import json

import asyncpg

from cdp.profile.v1 import traits_pb2, traits_pb2_grpc
from cdp_core import envelope
from cdp_core.errors import InvalidArgument, NotFound

from . import declared
from . import declared_store as store

SERVICE = "cdp.profile.v1.TraitService"
SCOPES = {
    f"/{SERVICE}/ListTraitDefinitions": "profiles:read",
    f"/{SERVICE}/ApplyTraitDefinitions": "profiles:write",
    f"/{SERVICE}/DeleteTraitDefinition": "profiles:write",
}
EXTRA = "declared_backfiller"  # Runtime.extras key


def definition_pb(defn: declared.TraitDefinition, s: store.Stored | None = None) -> traits_pb2.TraitDefinition:
    spec = defn.to_dict()
    out = traits_pb2.TraitDefinition(
        name=defn.name, description=defn.description, aggregation=defn.aggregation,
        property=spec.get("property", ""), window=defn.window_text,
        event_json=json.dumps(spec.get("event", {}), ensure_ascii=False),
        definition_json=json.dumps(spec, ensure_ascii=False))
    if s is not None:
        out.version = s.version
        out.created_at.CopyFrom(envelope.ts(s.created_at))
        out.updated_at.CopyFrom(envelope.ts(s.updated_at))
        out.backfill.done = s.backfilled_at is not None
        out.backfill.profiles_done = s.backfill_done
        out.backfill.profiles_total = s.backfill_total
        if s.backfilled_at is not None:
            out.backfill.finished_at.CopyFrom(envelope.ts(s.backfilled_at))
    return out


class TraitServicer(traits_pb2_grpc.TraitServiceServicer):
    def __init__(self, pool: asyncpg.Pool, backfiller: store.Backfiller | None = None):
        self.pool, self.backfiller = pool, backfiller

    async def ApplyTraitDefinitions(self, request: traits_pb2.ApplyTraitDefinitionsRequest,
                                    context) -> traits_pb2.ApplyTraitDefinitionsResponse:
        defs = declared.parse_document(request.yaml)  # InvalidArgument names the field at fault
        async with self.pool.acquire() as conn:
            results = await store.apply_definitions(conn, defs, dry_run=request.dry_run)
        if self.backfiller is not None and not request.dry_run:
            self.backfiller.wake.set()
        out = traits_pb2.ApplyTraitDefinitionsResponse(dry_run=request.dry_run)
        for outcome, stored, defn in results:
            out.results.add(outcome=outcome, definition=definition_pb(stored.defn if stored else defn, stored))
        return out

    async def ListTraitDefinitions(self, request, context) -> traits_pb2.ListTraitDefinitionsResponse:
        async with self.pool.acquire() as conn:
            held = await store.list_definitions(conn)
        return traits_pb2.ListTraitDefinitionsResponse(definitions=[definition_pb(s.defn, s) for s in held])

    async def DeleteTraitDefinition(self, request: traits_pb2.DeleteTraitDefinitionRequest,
                                    context) -> traits_pb2.DeleteTraitDefinitionResponse:
        if not request.name:
            raise InvalidArgument("is required", field="name")
        if len(request.name) > 64:
            raise InvalidArgument("at most 64 characters", field="name")
        async with self.pool.acquire() as conn:
            if not await store.delete_definition(conn, request.name):
                raise NotFound("no trait definition has this name", field="name")
        return traits_pb2.DeleteTraitDefinitionResponse()


def add_to_server(rt, server) -> None:
    """Registers the servicer (and the runtime's backfiller, started by `on_start`)."""
    backfiller = rt.extras.setdefault(EXTRA, store.Backfiller(rt.pool))
    traits_pb2_grpc.add_TraitServiceServicer_to_server(TraitServicer(rt.pool, backfiller), server)


async def on_start(rt) -> None:
    rt.extras.setdefault(EXTRA, store.Backfiller(rt.pool)).start()


async def on_stop(rt) -> None:
    backfiller = rt.extras.get(EXTRA)
    if backfiller is not None:
        await backfiller.stop()
