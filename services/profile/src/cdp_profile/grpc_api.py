"""ProfileService: proto <-> storage mapping only."""

from __future__ import annotations

import json

import asyncpg

from cdp.common.v1 import identifier_pb2
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_core import envelope
from cdp_core.errors import InvalidArgument, NotFound

from .projection import canonical

SERVICE = "cdp.profile.v1.ProfileService"
SCOPES = {f"/{SERVICE}/GetProfile": "profiles:read"}
LOOKUP_TYPES = ("user_id", "anonymous_id", "email", "phone", "device_id")


class ProfileServicer(profile_pb2_grpc.ProfileServiceServicer):
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def GetProfile(self, request: profile_pb2.GetProfileRequest, context) -> profile_pb2.GetProfileResponse:
        async with self.pool.acquire() as conn:
            pid = await self._lookup(conn, request)
            return profile_pb2.GetProfileResponse(profile=await self._load(conn, pid))

    async def _lookup(self, conn, request) -> str:
        which = request.WhichOneof("lookup")
        if which == "profile_id":
            pid = request.profile_id.strip()
            if not pid:
                raise InvalidArgument("must not be empty", field="profile_id")
        elif which == "identifier":
            t, v = request.identifier.type, request.identifier.value.strip()
            if t not in LOOKUP_TYPES:
                raise InvalidArgument(f"unknown identifier type; known: {', '.join(LOOKUP_TYPES)}",
                                      field="identifier.type")
            if not v:
                raise InvalidArgument("must not be empty", field="identifier.value")
            if t == "email":
                v = v.lower()
            pid = await conn.fetchval("SELECT profile_id FROM profile_identifiers WHERE type = $1 AND value = $2", t, v)
            if pid is None:
                raise NotFound("no profile has this identifier", field="identifier")
        else:
            raise InvalidArgument("give profile_id or identifier", field="lookup")
        return await canonical(conn, pid)

    async def _load(self, conn, pid: str) -> profile_pb2.Profile:
        row = await conn.fetchrow("SELECT * FROM profiles WHERE profile_id = $1 AND merged_into IS NULL", pid)
        if row is None:
            raise NotFound("no such profile", field="profile_id")
        ids = await conn.fetch("SELECT type, value FROM profile_identifiers WHERE profile_id = $1 ORDER BY type, value",
                               pid)
        traits = await conn.fetch(
            "SELECT name, value::text AS value, updated_at, event_id FROM profile_traits WHERE profile_id = $1 "
            "ORDER BY name", pid)
        merged = await conn.fetch("SELECT profile_id FROM profiles WHERE merged_into = $1 ORDER BY profile_id", pid)
        p = profile_pb2.Profile(
            profile_id=pid,
            identifiers=[identifier_pb2.Identifier(type=r["type"], value=r["value"]) for r in ids],
            traits=[profile_pb2.Trait(name=t["name"], value_json=json.dumps(json.loads(t["value"])),
                                      updated_at=envelope.ts(t["updated_at"]), event_id=t["event_id"])
                    for t in traits],
            event_count=row["event_count"],
            merged_profile_ids=[r["profile_id"] for r in merged],
        )
        if row["first_seen"]:
            p.first_seen.CopyFrom(envelope.ts(row["first_seen"]))
            p.last_seen.CopyFrom(envelope.ts(row["last_seen"]))
        return p
