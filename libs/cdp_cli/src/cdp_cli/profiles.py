"""Profile look-ups over ProfileService.GetProfile."""

from __future__ import annotations

import grpc

from cdp.common.v1 import identifier_pb2
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc

from .client import RPC_TIMEOUT_S, CliError, rpc_error, stub

# --flag -> identifier type; "profile_id" looks up by the profile's own id.
LOOKUPS = {
    "user_id": "user_id",
    "email": "email",
    "anonymous_id": "anonymous_id",
    "profile_id": "profile_id",
}


def lookup_request(kind: str, value: str) -> profile_pb2.GetProfileRequest:
    if kind not in LOOKUPS:
        raise ValueError(f"unknown lookup {kind!r}")
    if not value:
        raise CliError(f"--{kind.replace('_', '-')} must not be empty")
    if kind == "profile_id":
        return profile_pb2.GetProfileRequest(profile_id=value)
    return profile_pb2.GetProfileRequest(identifier=identifier_pb2.Identifier(type=LOOKUPS[kind], value=value))


def describe(req: profile_pb2.GetProfileRequest) -> str:
    if req.WhichOneof("lookup") == "profile_id":
        return f"profile_id={req.profile_id}"
    return f"{req.identifier.type}={req.identifier.value}"


class ProfileNotFound(CliError):
    pass


async def get_profile(req: profile_pb2.GetProfileRequest, token: str) -> profile_pb2.Profile:
    """The profile, or a CliError (ProfileNotFound for NOT_FOUND)."""
    async with stub("profile", profile_pb2_grpc.ProfileServiceStub, token) as s:
        try:
            resp = await s.GetProfile(req, timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                raise ProfileNotFound(f"no profile found for {describe(req)}") from None
            raise rpc_error("profile", e) from None
    return resp.profile
