"""Argument validation, token handling and addresses: no servers needed."""

from __future__ import annotations

import stat

import pytest
from click.testing import CliRunner

from cdp_cli import client
from cdp_cli.main import cli
from cdp_core.auth import verify_token


def run(*args: str, **kw):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, **kw)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--user-id", "u1", "--email", "a@example.com"],
        ["--profile-id", "p", "--anonymous-id", "a"],
    ],
)
def test_profile_get_needs_exactly_one_lookup(clean_env, args):
    r = run("profile", "get", *args)
    assert r.exit_code == 2
    assert "exactly one of --user-id, --email, --anonymous-id, --profile-id" in r.stderr


def test_profile_get_rejects_empty_value(clean_env):
    r = run("profile", "get", "--user-id", "", "--token", "t")
    assert r.exit_code == 1
    assert "--user-id must not be empty" in r.stderr


def test_profile_get_without_token_says_where_tokens_come_from(clean_env):
    r = run("profile", "get", "--user-id", "u1")
    assert r.exit_code == 1
    assert "no token" in r.stderr and "cdp dev up" in r.stderr


def test_token_issue_requires_a_known_scope(clean_env, monkeypatch):
    monkeypatch.setenv("CDP_AUTH_SECRET", "s" * 40)
    assert run("token", "issue").exit_code == 2
    r = run("token", "issue", "--scope", "root")
    assert r.exit_code == 2 and "--scope" in r.stderr


def test_token_issue_signs_with_env_secret(clean_env, monkeypatch):
    secret = "e" * 40
    monkeypatch.setenv("CDP_AUTH_SECRET", secret)
    r = run("token", "issue", "--scope", "admin", "--scope", "profiles:read", "--subject", "ops")
    assert r.exit_code == 0, r.stderr
    principal = verify_token(secret, r.stdout.strip())
    assert principal.subject == "ops"
    assert principal.scopes == {"admin", "profiles:read"}


def test_token_issue_uses_dot_cdp_secret(clean_env):
    secret, source = client.ensure_secret()
    assert source.endswith(".cdp/secret")
    r = run("token", "issue", "--scope", "events:write")
    assert r.exit_code == 0, r.stderr
    assert verify_token(secret, r.stdout.strip()).scopes == {"events:write"}


def test_token_issue_without_secret_fails_clearly(clean_env):
    r = run("token", "issue", "--scope", "admin")
    assert r.exit_code == 1
    assert "no secret" in r.stderr


def test_generated_secret_is_private_and_kept(clean_env):
    first, _ = client.ensure_secret()
    path = clean_env / ".cdp" / "secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert client.ensure_secret()[0] == first
    assert len(first) >= 32


def test_env_secret_wins_and_is_not_written(clean_env, monkeypatch):
    monkeypatch.setenv("CDP_AUTH_SECRET", "x" * 40)
    assert client.ensure_secret() == ("x" * 40, "env CDP_AUTH_SECRET")
    assert not (clean_env / ".cdp" / "secret").exists()


def test_token_precedence(clean_env, monkeypatch):
    (clean_env / ".cdp").mkdir()
    client.write_private(clean_env / ".cdp" / "token", "from-file\n")
    assert client.resolve_token() == "from-file"
    monkeypatch.setenv("CDP_TOKEN", "from-env")
    assert client.resolve_token() == "from-env"
    assert client.resolve_token("explicit") == "explicit"


def test_service_addresses(clean_env, monkeypatch):
    assert client.service_addr("profile") == "127.0.0.1:50053"
    assert client.service_addr("ingest") == "127.0.0.1:50051"
    monkeypatch.setenv("CDP_PROFILE_GRPC_PORT", "6001")
    assert client.service_addr("profile") == "127.0.0.1:6001"
    monkeypatch.setenv("CDP_PROFILE_ADDR", "profile.internal:443")
    assert client.service_addr("profile") == "profile.internal:443"
    monkeypatch.setenv("CDP_CHANNEL_GATEWAY_GRPC_PORT", "6007")
    assert client.service_addr("channel-gateway") == "127.0.0.1:6007"


def test_service_port_from_stack_record(clean_env):
    (clean_env / ".cdp").mkdir()
    (clean_env / ".cdp" / "stack.json").write_text('{"version": 1, "services": [{"name": "profile", "port": 7003}]}')
    assert client.service_addr("profile") == "127.0.0.1:7003"


def test_redact_url():
    assert client.redact_url("postgresql://u:pw@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert client.redact_url("postgresql://postgres@127.0.0.1:5/postgres") == "postgresql://postgres@127.0.0.1:5/postgres"


def test_status_without_stack(clean_env):
    r = run("dev", "status", "--json")
    assert r.exit_code == 1
    import json

    assert json.loads(r.stdout) == {"state_dir": str(clean_env / ".cdp"), "stack": None, "running": False,
                                    "components": []}


def test_down_without_stack_is_a_no_op(clean_env):
    r = run("dev", "down")
    assert r.exit_code == 0
    assert "nothing to stop" in r.stdout
