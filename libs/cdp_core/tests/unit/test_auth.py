"""Bearer tokens: HS256 JWTs with scopes."""

from __future__ import annotations

import time

import jwt
import pytest

from cdp_core.auth import ADMIN, Principal, issue_token, principal_from_metadata, verify_token
from cdp_core.errors import PermissionDenied, Unauthenticated

SECRET = "unit-test-secret-0123456789abcdef0123456789"


def test_issue_verify_round_trip():
    token = issue_token(SECRET, "svc-a", ["events:write", "profiles:read"])
    p = verify_token(SECRET, token)
    assert p == Principal("svc-a", frozenset({"events:write", "profiles:read"}))
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], issuer="cdp")
    assert claims["exp"] > time.time()
    assert claims["jti"]


def test_each_token_is_unique():
    assert issue_token(SECRET, "a", ["admin"]) != issue_token(SECRET, "a", ["admin"])


def test_expired_token_is_unauthenticated():
    token = issue_token(SECRET, "svc", ["admin"], ttl_s=-10)
    with pytest.raises(Unauthenticated, match="expired"):
        verify_token(SECRET, token)


def test_wrong_secret_is_unauthenticated():
    token = issue_token(SECRET, "svc", ["admin"])
    with pytest.raises(Unauthenticated, match="invalid bearer token"):
        verify_token(SECRET + "x", token)


def test_wrong_issuer_or_algorithm_is_unauthenticated():
    now = int(time.time())
    foreign = jwt.encode({"iss": "someone-else", "sub": "x", "exp": now + 60}, SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated):
        verify_token(SECRET, foreign)
    unsigned = jwt.encode({"iss": "cdp", "sub": "x", "exp": now + 60}, None, algorithm="none")
    with pytest.raises(Unauthenticated):
        verify_token(SECRET, unsigned)
    no_exp = jwt.encode({"iss": "cdp", "sub": "x"}, SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated):
        verify_token(SECRET, no_exp)


def test_garbage_token_is_unauthenticated():
    with pytest.raises(Unauthenticated):
        verify_token(SECRET, "not.a.jwt")


def test_principal_from_metadata():
    token = issue_token(SECRET, "svc", ["segments:read"])
    md = (("x-other", "1"), ("authorization", f"Bearer {token}"))
    assert principal_from_metadata(SECRET, md).subject == "svc"
    # the scheme is case-insensitive
    assert principal_from_metadata(SECRET, [("authorization", f"bearer {token}")]).subject == "svc"


@pytest.mark.parametrize("md", [None, (), [("x-other", "1")], [("authorization", "")]])
def test_missing_metadata_is_unauthenticated(md):
    with pytest.raises(Unauthenticated, match="missing authorization"):
        principal_from_metadata(SECRET, md)


@pytest.mark.parametrize("value", ["Basic dXNlcjpwdw==", "Bearer", "Bearer ", "Token abc"])
def test_wrong_scheme_is_unauthenticated(value):
    with pytest.raises(Unauthenticated, match="Bearer <token>"):
        principal_from_metadata(SECRET, [("authorization", value)])


def test_scope_check_and_admin_override():
    reader = Principal("r", frozenset({"profiles:read"}))
    reader.require("profiles:read")
    with pytest.raises(PermissionDenied, match="profiles:write"):
        reader.require("profiles:write")
    with pytest.raises(PermissionDenied):
        reader.require(ADMIN)
    admin = verify_token(SECRET, issue_token(SECRET, "ops", [ADMIN]))
    for scope in ("profiles:write", "events:write", "segments:write", "anything:else", ADMIN):
        admin.require(scope)


def test_unknown_scope_is_rejected_at_issue():
    with pytest.raises(ValueError, match="unknown scopes"):
        issue_token(SECRET, "svc", ["events:write", "events:delete"])


def test_errors_carry_grpc_codes():
    import grpc

    assert Unauthenticated("x").code == grpc.StatusCode.UNAUTHENTICATED
    assert PermissionDenied("x").code == grpc.StatusCode.PERMISSION_DENIED
