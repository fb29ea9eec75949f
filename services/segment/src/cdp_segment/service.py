"""The segment service: definitions, real-time memberships and suppression lists, projected
from the identity and profile streams (docs/services/segment.md)."""

from __future__ import annotations

from pathlib import Path

from cdp.segment.v1 import segment_pb2_grpc
from cdp_core.service import Runtime, ServiceSpec

from . import definition, engine, jobs, predefined
from .grpc_api import SCOPES, SERVICE, SegmentServicer
from .projection import IdentityProjection, ProfileStateProjection


def retention_days(rt: Runtime) -> int:
    days = int(rt.settings.option("CDP_SEGMENT_EVENT_RETENTION_DAYS", str(definition.DEFAULT_RETENTION_DAYS)))
    if not 1 <= days <= 36500:
        raise ValueError("CDP_SEGMENT_EVENT_RETENTION_DAYS must be between 1 and 36500")
    return days


def _cache(rt: Runtime) -> engine.CatalogCache:
    if "catalog" not in rt.extras:
        rt.extras["catalog"] = engine.CatalogCache(retention_days(rt))
    return rt.extras["catalog"]


def add_servicers(rt: Runtime, server) -> None:
    servicer = rt.extras["servicer"] = SegmentServicer(rt.pool, rt.bus, retention_days(rt))
    segment_pb2_grpc.add_SegmentServiceServicer_to_server(servicer, server)


async def on_start(rt: Runtime) -> None:
    await predefined.ensure(rt.pool, retention_days(rt))
    interval = float(rt.settings.option("CDP_SEGMENT_SCHEDULER_INTERVAL_S", "1.0"))
    rt.extras["jobs"] = jobs.Jobs(rt.pool, _cache(rt), retention_days(rt), interval)
    rt.extras["jobs"].start()


async def on_drain(rt: Runtime) -> None:
    rt.extras["servicer"].close()


async def on_stop(rt: Runtime) -> None:
    if "jobs" in rt.extras:
        await rt.extras["jobs"].stop()


SPEC = ServiceSpec(
    name="segment",
    grpc_services=[SERVICE],
    scopes=SCOPES,
    add_servicers=add_servicers,
    migrations=Path(__file__).parent / "migrations",
    consumes=["identity", "profile"],
    projections=lambda rt: [IdentityProjection(_cache(rt), retention_days(rt)),
                            ProfileStateProjection(_cache(rt), retention_days(rt))],
    on_start=on_start,
    on_drain=on_drain,
    on_stop=on_stop,
    # what operators set, and the memberships (their transition numbers name the events already
    # published); the projection, due times and backfills are rebuilt from the log
    replay_keeps=["seg_segments", "seg_segment_versions", "seg_stores", "seg_memberships"],
)
