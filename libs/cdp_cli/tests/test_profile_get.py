"""`cdp profile get` against an in-process fake ProfileService: status codes to exit codes."""

from __future__ import annotations

import json
from concurrent import futures

import grpc
import pytest
from click.testing import CliRunner

from cdp.common.v1 import identifier_pb2
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_cli.main import cli
from cdp_core.embedded import free_port


class FakeProfiles(profile_pb2_grpc.ProfileServiceServicer):
    def __init__(self):
        self.requests: list[tuple[profile_pb2.GetProfileRequest, dict]] = []

    def GetProfile(self, request, context):
        self.requests.append((request, dict(context.invocation_metadata())))
        if request.WhichOneof("lookup") == "identifier" and request.identifier.value == "u-1":
            return profile_pb2.GetProfileResponse(profile=profile_pb2.Profile(
                profile_id="p-1", event_count=3,
                identifiers=[identifier_pb2.Identifier(type="user_id", value="u-1")],
                traits=[profile_pb2.Trait(name="plan", value_json='"pro"')]))
        if request.profile_id == "denied":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "token lacks scope 'profiles:read'")
        context.abort(grpc.StatusCode.NOT_FOUND, "no such profile")


@pytest.fixture
def fake(clean_env, monkeypatch):
    servicer = FakeProfiles()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    profile_pb2_grpc.add_ProfileServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    monkeypatch.setenv("CDP_PROFILE_ADDR", f"127.0.0.1:{port}")
    monkeypatch.setenv("CDP_TOKEN", "tok-123")
    yield servicer
    server.stop(None)


def run(*args: str):
    return CliRunner().invoke(cli, ["profile", "get", *args], catch_exceptions=False)


def test_found_prints_json_and_sends_bearer_token(fake):
    r = run("--user-id", "u-1", "--json")
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["profile_id"] == "p-1"
    assert d["traits"] == {"plan": "pro"}
    assert d["computed"]["event_count"] == 3
    req, metadata = fake.requests[0]
    assert req.identifier == identifier_pb2.Identifier(type="user_id", value="u-1")
    assert metadata["authorization"] == "Bearer tok-123"


def test_found_human_output(fake):
    r = run("--user-id", "u-1")
    assert r.exit_code == 0, r.stderr
    assert "p-1" in r.stdout and "plan" in r.stdout


@pytest.mark.parametrize("flag,kind", [("--email", "email"), ("--anonymous-id", "anonymous_id")])
def test_identifier_lookups(fake, flag, kind):
    run(flag, "x")
    assert fake.requests[0][0].identifier.type == kind


def test_profile_id_lookup_and_explicit_token(fake):
    r = run("--profile-id", "p-9", "--token", "explicit")
    assert r.exit_code == 1
    req, metadata = fake.requests[0]
    assert req.profile_id == "p-9"
    assert metadata["authorization"] == "Bearer explicit"


def test_not_found_is_exit_1_with_message(fake):
    r = run("--user-id", "nobody", "--json")
    assert r.exit_code == 1
    assert r.stdout == ""
    assert "no profile found for user_id=nobody" in r.stderr


def test_permission_denied(fake):
    r = run("--profile-id", "denied")
    assert r.exit_code == 1
    assert "lacks a scope" in r.stderr


def test_unavailable_suggests_dev_up(clean_env, monkeypatch):
    monkeypatch.setenv("CDP_PROFILE_ADDR", f"127.0.0.1:{free_port()}")
    r = CliRunner().invoke(cli, ["profile", "get", "--user-id", "u", "--token", "t"], catch_exceptions=False)
    assert r.exit_code == 1
    assert "is the stack running? try `cdp dev up`" in r.stderr
