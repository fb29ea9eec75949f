"""Settings from the environment (names in DESIGN.md, "Interfaces")."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

SERVICES: dict[str, int] = {
    "ingest": 50051,
    "identity": 50052,
    "profile": 50053,
    "segment": 50054,
    "prediction": 50055,
    "journey": 50056,
    "channel-gateway": 50057,
    "analytics": 50058,
}
DEFAULT_HTTP_PORT = 8088
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_DUPLICATE_WINDOW_S = 7200.0  # JetStream's Nats-Msg-Id window on the service's own stream


def env_key(service: str) -> str:
    """'channel-gateway' -> 'CHANNEL_GATEWAY'."""
    return service.upper().replace("-", "_")


def database_name(service: str) -> str:
    return "cdp_" + service.replace("-", "_")


def with_database(server_url: str, database: str) -> str:
    """The same server URL, pointing at another database."""
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


@dataclass(frozen=True)
class Settings:
    service: str
    nats_url: str
    database_server_url: str
    database_url: str
    grpc_port: int
    http_port: int
    auth_secret: str
    log_level: str
    grpc_host: str = "0.0.0.0"
    shutdown_grace_s: float = 10.0
    duplicate_window_s: float = DEFAULT_DUPLICATE_WINDOW_S  # CDP_DUPLICATE_WINDOW_S
    # every CDP_* variable, for service-specific options (see `option`)
    environ: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def option(self, name: str, default: str) -> str:
        """A service-specific setting, e.g. option("CDP_INGEST_RATE_LIMIT_PER_S", "5000")."""
        return self.environ.get(name, default)

    @classmethod
    def from_env(cls, service: str, environ: os._Environ | dict | None = None) -> Settings:
        env = os.environ if environ is None else environ
        if service not in SERVICES:
            raise ValueError(f"unknown service {service!r}; known: {', '.join(SERVICES)}")
        key = env_key(service)
        server = env.get("CDP_DATABASE_URL", DEFAULT_DATABASE_URL)
        secret = env.get("CDP_AUTH_SECRET", "")
        if not secret:
            raise ValueError("CDP_AUTH_SECRET is required (the HMAC secret that signs bearer tokens)")
        window = float(env.get("CDP_DUPLICATE_WINDOW_S", DEFAULT_DUPLICATE_WINDOW_S))
        if not window > 0:
            raise ValueError("CDP_DUPLICATE_WINDOW_S must be a positive number of seconds")
        return cls(
            service=service,
            nats_url=env.get("CDP_NATS_URL", DEFAULT_NATS_URL),
            database_server_url=server,
            database_url=env.get(f"CDP_{key}_DATABASE_URL") or with_database(server, database_name(service)),
            grpc_port=int(env.get(f"CDP_{key}_GRPC_PORT", SERVICES[service])),
            http_port=int(env.get("CDP_HTTP_PORT", DEFAULT_HTTP_PORT)),
            auth_secret=secret,
            log_level=env.get("CDP_LOG_LEVEL", "info"),
            grpc_host=env.get("CDP_GRPC_HOST", "0.0.0.0"),
            shutdown_grace_s=float(env.get("CDP_SHUTDOWN_GRACE_S", "10")),
            duplicate_window_s=window,
            environ={k: v for k, v in env.items() if k.startswith("CDP_")},
        )
