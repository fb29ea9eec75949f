"""Predictions end to end: a simulated world imported through ingest (`cdp import events`),
resolved by identity, projected by the prediction service; `cdp predict train|list|show|
explain|export` against it; the scores reach the profiles as their `predicted` trait and the
predefined `high-value` audience follows them."""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pytest

from cdp_cli.testing import run_cdp
from cdp_core.testing import eventually
from cdp_core.testing.stack import Stack
from cdp_sim import World

pytestmark = pytest.mark.integration


def json_lines(text: str) -> list[dict]:
    """The JSON objects cdp printed (the in-process services log to the same stdout)."""
    return [json.loads(x) for x in text.splitlines() if x.startswith("{")]
H = 28
ENV = {"CDP_PREDICTION_DEBOUNCE_S": "0.3", "CDP_PREDICTION_POLL_S": "0.2", "CDP_PREDICTION_MIN_POSITIVES": "5",
       "CDP_PREDICTION_MIN_PROFILES": "100"}


@pytest.fixture
async def stack(fresh_nats_url, database_server_url, auth_secret):
    from cdp_identity.service import SPEC as IDENTITY
    from cdp_ingest.service import SPEC as INGEST
    from cdp_prediction.service import SPEC as PREDICTION
    from cdp_profile.service import SPEC as PROFILE
    from cdp_segment.service import SPEC as SEGMENT

    s = Stack(fresh_nats_url, database_server_url, auth_secret, "itp_" + os.urandom(4).hex(), env=ENV)
    await s.start(INGEST, IDENTITY, PREDICTION, PROFILE, SEGMENT)
    try:
        yield s
    finally:
        await s.stop()


async def test_predictions_from_imported_events(stack, tmp_path, monkeypatch):
    # 350 people (12.5k events, over 100 profiles, enough buyers to train on): the
    # import and the projections scale with the events, and 700 people doubled the test's time
    world = World.generate(people=350, days=100, seed=5)
    manifest = world.write(tmp_path / "world")
    events = tmp_path / "world" / "events.jsonl"
    n_events = sum(1 for _ in open(events, encoding="utf-8"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CDP_TOKEN", stack.token)
    for name in ("ingest", "prediction"):
        monkeypatch.setenv(f"CDP_{name.upper()}_GRPC_PORT", str(stack.services[name].grpc.port))

    await run_cdp("import", "events", str(events), "--source", "sim")
    pool = stack.services["prediction"].runtime.pool

    async def projected():
        async with pool.acquire() as conn:
            return await conn.fetchval("SELECT count(DISTINCT event_id) FROM prediction_observations") == n_events
    await eventually(projected, timeout=300, interval=0.5)

    r = await run_cdp("predict", "train", "--cutoff", manifest["cutoff"], "--horizon-days", "0", code=1)
    assert "horizon_days" in r.stderr
    cutoff = (world.cfg.start_date + timedelta(days=world.cfg.days - H)).isoformat()
    r = await run_cdp("predict", "train", "--cutoff", cutoff, "--horizon-days", str(H), "--json")
    model = json_lines(r.stdout)[-1]
    assert model["version"] == 1 and model["active"] and model["horizon_days"] == H
    assert {"model", "rfm", "bgnbd", "pareto_nbd"} <= set(model["metrics"]["purchase"])

    listed = json_lines((await run_cdp("predict", "list", "--json")).stdout)[-1]["models"]
    assert [m["version"] for m in listed] == [1] and listed[0]["active"]
    r = await run_cdp("predict", "show", "7", code=1)
    assert "not found" in r.stderr

    lines = json_lines((await run_cdp("predict", "export", "--jsonl")).stdout)
    async with pool.acquire() as conn:
        profiles = await conn.fetchval("SELECT count(DISTINCT profile_id) FROM prediction_observations")
    assert len(lines) == profiles > 100
    for line in lines:
        assert {"profile_id", "purchase_probability", "churn_probability", "expected_purchases",
                "predicted_ltv"} <= set(line)
        assert 0 <= line["purchase_probability"] <= 1 and line["predicted_ltv"] >= 0

    buyer = max(lines, key=lambda x: x["predicted_ltv"])["profile_id"]
    r = await run_cdp("predict", "explain", "--profile", buyer, "--top", "3", "--as-of", manifest["cutoff"], "--json")
    got = json_lines(r.stdout)[-1]
    assert got["profile_id"] == buyer and set(got["explanations"]) == {"purchase", "churn", "discount", "purchases",
                                                                        "ltv"}
    assert all(len(v) == 3 for v in got["explanations"].values())

    # the scores reach the profiles (trait `predicted`) and the segments (high-value: LTV
    # percentile at least 90)
    from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
    from cdp.segment.v1 import segment_pb2, segment_pb2_grpc

    profiles = profile_pb2_grpc.ProfileServiceStub(stack.channel("profile"))
    segments = segment_pb2_grpc.SegmentServiceStub(stack.channel("segment"))

    async def predicted(pid: str) -> dict | None:
        try:
            p = await profiles.GetProfile(profile_pb2.GetProfileRequest(profile_id=pid))
        except Exception:  # noqa: BLE001 - not projected yet
            return None
        got = {t.name: json.loads(t.value_json) for t in p.profile.traits}.get("predicted")
        return got if got and got.get("model_version") == 1 else None

    mine = await eventually(lambda: predicted(buyer), timeout=120, interval=0.5)
    assert 0 <= mine["purchase_probability"] <= 1 and mine["predicted_ltv"] >= 0
    assert {"expected_purchases", "ltv_percentile", "discount_affinity", "affinities", "horizon_days"} <= set(mine)
    assert mine["horizon_days"] == H
    sample = [line["profile_id"] for line in lines[:40]] + [buyer]
    for pid in sample:
        got = await eventually(lambda pid=pid: predicted(pid), timeout=120, interval=0.5)

        async def follows(pid=pid, high=got["ltv_percentile"] >= 90):
            r = await segments.IsMember(segment_pb2.IsMemberRequest(name="high-value", profile_id=pid))
            return r.member == high
        assert await eventually(follows, timeout=60), pid
