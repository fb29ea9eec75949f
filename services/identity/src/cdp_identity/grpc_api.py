"""IdentityService: proto <-> domain mapping only."""

from __future__ import annotations

import asyncpg

from cdp.common.v1 import identifier_pb2
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp_core.errors import InvalidArgument, NotFound

from .domain import PRIORITY, normalize

SERVICE = "cdp.identity.v1.IdentityService"
SCOPES = {f"/{SERVICE}/ResolveIdentifier": "profiles:read"}


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def ResolveIdentifier(self, request, context) -> identity_pb2.ResolveIdentifierResponse:
        ident = request.identifier
        if ident.type not in PRIORITY:
            raise InvalidArgument(f"unknown identifier type; known: {', '.join(PRIORITY)}", field="identifier.type")
        value = normalize(ident.type, ident.value)
        if value is None:
            raise InvalidArgument("is empty or malformed", field="identifier.value")
        async with self.pool.acquire() as conn:
            pid = await conn.fetchval("SELECT profile_id FROM identifiers WHERE type = $1 AND value = $2",
                                      ident.type, value)
            if pid is None:
                raise NotFound("no profile has this identifier", field="identifier")
            rows = await conn.fetch("SELECT type, value FROM identifiers WHERE profile_id = $1 ORDER BY type, value", pid)
        return identity_pb2.ResolveIdentifierResponse(
            profile_id=pid, identifiers=[identifier_pb2.Identifier(type=r["type"], value=r["value"]) for r in rows]
        )
