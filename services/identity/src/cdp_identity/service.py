"""The identity service: resolves every event of the log of record to a profile."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cdp.identity.v1 import identity_pb2_grpc
from cdp_core.service import Runtime, ServiceSpec

from .config import REGION_OPTION, TYPES_OPTION, ConfigStore
from .grpc_api import SCOPES, SERVICE, IdentityServicer
from .normalize import DEFAULT_REGION
from .projection import IdentityProjection
from .retention import DEFAULT_RETENTION_DAYS, RETENTION_OPTION, retention_days, run_pruning


def config_store(rt: Runtime) -> ConfigStore:
    """One per process, shared by the projection and the API."""
    if "config" not in rt.extras:
        types = tuple(t.strip() for t in rt.settings.option(TYPES_OPTION, "").split(",") if t.strip())
        rt.extras["config"] = ConfigStore(default_types=types,
                                          default_region=rt.settings.option(REGION_OPTION, DEFAULT_REGION))
    return rt.extras["config"]


def add_servicers(rt: Runtime, server) -> None:
    identity_pb2_grpc.add_IdentityServiceServicer_to_server(IdentityServicer(rt.pool, config_store(rt), rt.bus.js),
                                                            server)


async def on_start(rt: Runtime) -> None:
    """Starts pruning seen event ids older than CDP_IDENTITY_DEDUP_RETENTION_DAYS (now, then hourly)."""
    days = retention_days(rt.settings.option(RETENTION_OPTION, DEFAULT_RETENTION_DAYS))
    stop = rt.extras["retention_stop"] = asyncio.Event()
    rt.extras["retention_task"] = asyncio.create_task(run_pruning(rt.pool, days, stop), name="identity-retention")


async def on_stop(rt: Runtime) -> None:
    if "retention_task" in rt.extras:
        rt.extras["retention_stop"].set()
        await rt.extras["retention_task"]


SPEC = ServiceSpec(
    name="identity",
    grpc_services=[SERVICE],
    scopes=SCOPES,
    add_servicers=add_servicers,
    migrations=Path(__file__).parent / "migrations",
    consumes=["ingest"],
    projections=lambda rt: [IdentityProjection(config_store(rt), rt.bus.js)],
    on_start=on_start,
    on_stop=on_stop,
    # what operators set: rules, splits (their separations) and forget tombstones
    replay_keeps=["rules", "splits", "separations", "tombstones", "reviews"],
)
