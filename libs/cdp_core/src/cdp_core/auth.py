"""Bearer tokens: HS256 JWTs signed with CDP_AUTH_SECRET, carrying scopes.

Scopes: events:write, profiles:read, profiles:write, segments:read, segments:write,
admin (admin grants every scope). A service maps each RPC to the scope it needs.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt

from .errors import PermissionDenied, Unauthenticated

ISSUER = "cdp"
ALGORITHM = "HS256"
ADMIN = "admin"
KNOWN_SCOPES = frozenset(
    {"events:write", "profiles:read", "profiles:write", "segments:read", "segments:write", "predictions:read", "predictions:write",
     "failed:admin", ADMIN}
)


@dataclass(frozen=True)
class Principal:
    subject: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if ADMIN not in self.scopes and scope not in self.scopes:
            raise PermissionDenied(f"token for {self.subject!r} lacks scope {scope!r}")


def issue_token(secret: str, subject: str, scopes: list[str] | set[str], ttl_s: int = 30 * 24 * 3600) -> str:
    unknown = set(scopes) - KNOWN_SCOPES
    if unknown:
        raise ValueError(f"unknown scopes: {sorted(unknown)}")
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": subject,
        "scope": " ".join(sorted(scopes)),
        "iat": now,
        "exp": now + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


_VERIFIED: dict[tuple[str, str], tuple[Principal, float]] = {}
_VERIFIED_MAX = 10_000


def verify_token(secret: str, token: str) -> Principal:
    """Verifies a token; a verified one is remembered until it expires (clients send the
    same token on every call, and HMAC + JSON decoding per call is measurable)."""
    hit = _VERIFIED.get((secret, token))
    if hit is not None:
        if hit[1] > time.time():
            return hit[0]
        del _VERIFIED[(secret, token)]
        raise Unauthenticated("bearer token expired")
    principal, exp = _verify(secret, token)
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.clear()
    _VERIFIED[(secret, token)] = (principal, exp)
    return principal


def _verify(secret: str, token: str) -> tuple[Principal, float]:
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], issuer=ISSUER, options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("bearer token expired") from None
    except jwt.InvalidTokenError as e:
        raise Unauthenticated(f"invalid bearer token ({type(e).__name__})") from None
    return (Principal(subject=str(claims["sub"]), scopes=frozenset(str(claims.get("scope", "")).split())),
            float(claims["exp"]))


def principal_from_metadata(secret: str, metadata) -> Principal:
    """Reads `authorization: Bearer <jwt>` from gRPC invocation metadata."""
    value = None
    for key, val in metadata or ():
        if key == "authorization":
            value = val
            break
    if not value:
        raise Unauthenticated("missing authorization metadata (expected 'Bearer <token>')")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
    return verify_token(secret, token.strip())
