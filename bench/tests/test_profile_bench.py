"""The profile benchmark at a tiny size, so it cannot rot: its shape and its bookkeeping
(every event projected, latency samples matched, sizes measured), never its speed."""

from __future__ import annotations

import json

import pytest

from cdp.identity.v1 import events_pb2 as identity_events
from cdp_bench.cli import parser, render
from cdp_bench.profile import make_workload, run_profile_bench, workload_shape
from cdp_core import envelope


def test_the_workload_is_resolved_segment_commerce_with_a_heavy_tail():
    wl = make_workload(3000, events_per_profile=20, seed=3)
    assert len(wl.messages) == 3000 and len({m.msg_id for m in wl.messages}) == 3000
    shape = workload_shape(wl)
    assert 80 <= shape["profiles"] <= 250
    assert shape["events_per_profile_max"] > 4 * shape["events_per_profile_p50"]
    assert {"page", "identify", "Product Viewed", "Product Added", "Order Completed"} <= set(shape["kinds"])
    env = envelope.decode(wl.messages[0].data)
    assert env.type == "cdp.identity.resolved"
    r = envelope.unpack(env, identity_events.IdentityResolved)
    assert r.profile_id and r.event_id and r.event.kind and r.identifiers
    assert [(i.type, i.value) for i in r.new_identifiers] == [(i.type, i.value) for i in r.identifiers]
    orders = [envelope.unpack(envelope.decode(m.data), identity_events.IdentityResolved).event for m in wl.messages]
    order = next(e for e in orders if e.event == "Order Completed")
    assert json.loads(order.properties_json)["products"]


@pytest.mark.component
async def test_profile_bench_smoke_at_a_tiny_size():
    r = await run_profile_bench(events=600, events_per_profile=10, repetitions=1, rate=100, seconds=1,
                                latency_repetitions=1, seed=2)
    json.dumps(r)  # plain JSON
    t = r["throughput"]
    assert all(run["events"] == 600 and run["timeline_rows"] == 600 and run["failed"] == 0 for run in t["runs"])
    assert t["vs_fetch_ack"]["figure"] > 0 and t["vs_fetch_ack"]["baseline"] > 0 and t["vs_copy"]["baseline"] > 0
    lat = t["latency"]
    assert lat["missing"] == 0 and lat["p99"]["figure"] > 0 and lat["p99"]["baseline"] > 0
    assert lat["sample_in_profile_store"].split("/")[0] == lat["sample_in_profile_store"].split("/")[1]
    assert t["disk"]["profiles"] > 0 and t["disk"]["total_mb_per_million_profiles"] > 0
    assert t["replay"]["built"] is True and t["replay"]["events_per_s"] == t["vs_fetch_ack"]["figure"]
    cc = t["compute_ceiling"]
    assert cc["events"] == 600 and all(v > 0 for v in cc["per_event_us"].values())
    assert cc["ceiling_events_per_s"] == 1e6 / cc["total_us"]
    text = render(r)
    assert "events projected/s" in text and "p99" in text and "per million profiles" in text
    assert "the computed traits alone" in text
    assert parser().parse_args(["profile", "--events", "10", "--skip", "latency"]).events == 10
