"""The ingest service: the front door and the writer of the log of record (CDP_INGEST).

Options (environment): CDP_INGEST_RATE_LIMIT_PER_S — default events/s per write-key
source (token bucket, 2 s of burst; 0 turns limiting off; a source may set its own);
CDP_INGEST_GC_FREEZE (default 1) and CDP_INGEST_GC_THRESHOLD (default 5000) — how the
garbage collector is tuned once the service started (see tune_gc; 0 leaves each as Python has it).
"""

from __future__ import annotations

import asyncio
import gc
import json
from pathlib import Path

from cdp.ingest.v1 import ingest_pb2_grpc
from cdp_core.failed import JSON
from cdp_core.service import Runtime, ServiceSpec

from .domain.calls import Source, call_from_json
from .grpc_api import SCOPES, SERVICE, SOURCE_SERVICE, IngestServicer, SourceServicer
from .http_edge import HttpEdge
from .pipeline import Pipeline
from .sources import SourceRegistry

DEFAULT_RATE_LIMIT_PER_S = "5000"
DEFAULT_GC_THRESHOLD = "5000"


def add_servicers(rt: Runtime, server) -> None:
    pipeline = Pipeline(rt.bus, rt.pool, default_rate_per_s=float(
        rt.settings.option("CDP_INGEST_RATE_LIMIT_PER_S", DEFAULT_RATE_LIMIT_PER_S)))
    sources = SourceRegistry(rt.pool)
    rt.extras.update(pipeline=pipeline, sources=sources)
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(IngestServicer(pipeline, sources), server)
    ingest_pb2_grpc.add_SourceServiceServicer_to_server(SourceServicer(pipeline, sources), server)


async def on_start(rt: Runtime) -> None:
    stop = rt.extras["stop"] = asyncio.Event()
    edge = HttpEdge(rt.extras["pipeline"], rt.extras["sources"], host=rt.settings.grpc_host,
                    port=rt.settings.http_port, shutdown_grace_s=rt.settings.shutdown_grace_s)
    await edge.start()
    rt.extras["http_edge"] = edge
    rt.extras["stats_task"] = asyncio.create_task(rt.extras["pipeline"].stats.run(stop), name="ingest-stats")
    tune_gc(freeze=rt.settings.option("CDP_INGEST_GC_FREEZE", "1") != "0",
            threshold=int(rt.settings.option("CDP_INGEST_GC_THRESHOLD", DEFAULT_GC_THRESHOLD)))


def tune_gc(*, freeze: bool, threshold: int) -> None:
    """The garbage collector, for a process whose requests allocate many short-lived objects
    (HTTP bodies parsed into dicts and lists, a few thousand per batch request):

    - freeze: what is alive once started (modules, servers, pools, caches) lives as long as
      the process, so it is moved out of the collector's sight (gc.freeze); full collections
      then walk only what requests allocate. Before this they walked every object of the
      process and took about a fifth of its time under load.
    - threshold: the youngest generation is collected every `threshold` allocations instead
      of 700 (0 keeps Python's). At 700, a request's objects were promoted to the oldest
      generation while still in use, and once requests queued (open loop, past the peak for
      a moment) full collections walked every queued request, more often the longer the
      queue: 4.3 of 12 s of CPU, and answers 3 s late at a rate it otherwise sustains. At
      5000 they mostly die young; a young collection then takes about 0.6 ms.
    """
    gc.collect()
    if freeze:
        gc.freeze()
    if threshold > 0:
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(threshold, older, oldest)


async def on_drain(rt: Runtime) -> None:
    if "http_edge" in rt.extras:  # stop accepting, finish in-flight requests
        await rt.extras["http_edge"].stop()


async def on_stop(rt: Runtime) -> None:
    rt.extras["stop"].set()
    await rt.extras["stats_task"]
    await rt.extras["pipeline"].stats.flush()


async def replay_rejected(rt: Runtime, conn, row) -> None:
    """Submits a rejected call (or request) again, after a fix; raises if it is still refused."""
    if row["content_type"] != JSON:
        raise ValueError(f"a {row['content_type']} request cannot be replayed; send it again, split or fixed")
    pipeline: Pipeline = rt.extras["pipeline"]
    sources: SourceRegistry = rt.extras["sources"]
    obj = json.loads(bytes(row["data"]))
    batch = obj.get("batch") if isinstance(obj, dict) else None
    source_id = row["source_id"]
    if source_id and source_id.startswith("token:"):
        source = Source(source_id, source_id.removeprefix("token:"), "server")
    else:
        rec = await sources.by_id(source_id) if source_id else (
            await sources.by_write_key(obj.get("writeKey", "")) if isinstance(obj, dict) else None)
        if rec is None:
            raise ValueError("its source (write key) is still unknown")
        if not rec.enabled:
            raise ValueError(f"source {rec.name!r} is still disabled")
        source = rec.source
    if isinstance(batch, list):
        calls = [call_from_json(item, path=f"batch[{i}]", defaults=obj) for i, item in enumerate(batch)]
    else:  # a single-call route ("ingest.http:track") names the kind its body may omit
        entry_kind = row["consumer"].partition(":")[2] or None
        calls = [call_from_json(obj, kind=obj.get("type") or entry_kind if isinstance(obj, dict) else None)]
    for i, call in enumerate(calls):  # a call without a messageId keeps one id across replays
        if not call.message_id:
            call.message_id = f"replay-{row['id']}-{i}"
    outcomes = await pipeline.submit(calls, source, entry="ingest.replay", record=False)
    errors = [o.error for o in outcomes if not o.ok]
    if errors:
        raise ValueError("; ".join(errors[:5]))


SPEC = ServiceSpec(
    name="ingest",
    grpc_services=[SERVICE, SOURCE_SERVICE],
    scopes=SCOPES,
    add_servicers=add_servicers,
    migrations=Path(__file__).parent / "migrations",
    replay_rejected=replay_rejected,
    on_start=on_start,
    on_drain=on_drain,
    on_stop=on_stop,
)
