"""Settings from the environment: the names and defaults of DESIGN.md, "Interfaces"."""

from __future__ import annotations

import pytest

from cdp_core.settings import (
    DEFAULT_DATABASE_URL,
    DEFAULT_HTTP_PORT,
    DEFAULT_NATS_URL,
    SERVICES,
    Settings,
    database_name,
    env_key,
    with_database,
)

SECRET = {"CDP_AUTH_SECRET": "s3cret"}

DESIGN_PORTS = {
    "ingest": 50051,
    "identity": 50052,
    "profile": 50053,
    "segment": 50054,
    "prediction": 50055,
    "journey": 50056,
    "channel-gateway": 50057,
    "analytics": 50058,
}


def test_every_service_of_the_design_has_its_default_port():
    assert SERVICES == DESIGN_PORTS
    for service, port in DESIGN_PORTS.items():
        assert Settings.from_env(service, dict(SECRET)).grpc_port == port


def test_defaults_when_only_the_secret_is_set():
    s = Settings.from_env("profile", dict(SECRET))
    assert s.service == "profile"
    assert s.nats_url == DEFAULT_NATS_URL
    assert s.database_server_url == DEFAULT_DATABASE_URL
    assert s.database_url == with_database(DEFAULT_DATABASE_URL, "cdp_profile")
    assert s.database_url.endswith("/cdp_profile")
    assert s.http_port == DEFAULT_HTTP_PORT == 8088
    assert s.auth_secret == "s3cret"
    assert s.log_level == "info"
    assert s.grpc_host == "0.0.0.0"
    assert s.shutdown_grace_s == 10.0


def test_each_service_uses_its_own_database_on_the_shared_server():
    env = {**SECRET, "CDP_DATABASE_URL": "postgresql://u:pw@db.example:6543/postgres?sslmode=require"}
    s = Settings.from_env("identity", env)
    assert s.database_server_url == env["CDP_DATABASE_URL"]
    assert s.database_url == "postgresql://u:pw@db.example:6543/cdp_identity?sslmode=require"


def test_service_database_url_overrides_the_shared_server():
    env = {
        **SECRET,
        "CDP_DATABASE_URL": "postgresql://u@shared:5432/postgres",
        "CDP_SEGMENT_DATABASE_URL": "postgresql://v@elsewhere:5433/segments",
    }
    s = Settings.from_env("segment", env)
    assert s.database_url == "postgresql://v@elsewhere:5433/segments"
    assert s.database_server_url == "postgresql://u@shared:5432/postgres"
    # the override of one service does not leak into another
    assert Settings.from_env("profile", env).database_url == "postgresql://u@shared:5432/cdp_profile"


def test_empty_service_database_url_falls_back_to_the_shared_server():
    env = {**SECRET, "CDP_DATABASE_URL": "postgresql://u@shared:5432/postgres", "CDP_INGEST_DATABASE_URL": ""}
    assert Settings.from_env("ingest", env).database_url == "postgresql://u@shared:5432/cdp_ingest"


def test_channel_gateway_env_names_use_an_underscore():
    assert env_key("channel-gateway") == "CHANNEL_GATEWAY"
    assert database_name("channel-gateway") == "cdp_channel_gateway"
    env = {
        **SECRET,
        "CDP_DATABASE_URL": "postgresql://u@shared:5432/postgres",
        "CDP_CHANNEL_GATEWAY_GRPC_PORT": "6000",
    }
    s = Settings.from_env("channel-gateway", env)
    assert s.grpc_port == 6000
    assert s.database_url == "postgresql://u@shared:5432/cdp_channel_gateway"
    env["CDP_CHANNEL_GATEWAY_DATABASE_URL"] = "postgresql://u@other:1/cg"
    assert Settings.from_env("channel-gateway", env).database_url == "postgresql://u@other:1/cg"


def test_overrides_of_every_variable():
    env = {
        **SECRET,
        "CDP_NATS_URL": "nats://nats.example:4333",
        "CDP_ANALYTICS_GRPC_PORT": "7001",
        "CDP_HTTP_PORT": "9999",
        "CDP_LOG_LEVEL": "debug",
        "CDP_GRPC_HOST": "127.0.0.1",
        "CDP_SHUTDOWN_GRACE_S": "2.5",
    }
    s = Settings.from_env("analytics", env)
    assert (s.nats_url, s.grpc_port, s.http_port, s.log_level, s.grpc_host, s.shutdown_grace_s) == (
        "nats://nats.example:4333",
        7001,
        9999,
        "debug",
        "127.0.0.1",
        2.5,
    )
    # another service's port variable does not apply
    assert Settings.from_env("ingest", env).grpc_port == 50051


@pytest.mark.parametrize("env", [{}, {"CDP_AUTH_SECRET": ""}])
def test_missing_auth_secret_is_an_error(env):
    with pytest.raises(ValueError, match="CDP_AUTH_SECRET"):
        Settings.from_env("ingest", env)


def test_unknown_service_is_an_error():
    with pytest.raises(ValueError, match="unknown service"):
        Settings.from_env("billing", dict(SECRET))


def test_from_env_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("CDP_AUTH_SECRET", "from-os")
    monkeypatch.setenv("CDP_JOURNEY_GRPC_PORT", "6123")
    s = Settings.from_env("journey")
    assert (s.auth_secret, s.grpc_port) == ("from-os", 6123)
