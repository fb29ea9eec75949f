"""The prediction service end to end over a simulated world: resolved events in, a trained
and activated model, every profile scored and published, online re-scoring, bad input."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from cdp.identity.v1 import events_pb2 as identity_events
from cdp.ingest.v1 import events_pb2 as ingest_events
from cdp.prediction.v1 import prediction_pb2 as pb
from cdp.prediction.v1 import prediction_pb2_grpc
from cdp_core import envelope
from cdp_core.bus import Outgoing
from cdp_core.testing import eventually
from cdp_prediction.features import observe
from cdp_sim import World

pytestmark = pytest.mark.component
H = 28


def world_events(people: int = 700, days: int = 100, seed: int = 5):
    """Identity's resolved events for a simulated world with perfect identity: the Segment
    messages and the POS receipts (as Order Completed), each with its person as profile id."""
    world = World.generate(people=people, days=days, seed=seed)
    start = datetime.combine(world.cfg.start_date, datetime.min.time(), tzinfo=UTC)
    out, receipts = [], defaultdict(list)
    for day in world.run():
        for _ts, _seq, msg, person, mid in day.segment:
            ev = ingest_events.EventCollected(
                kind=msg["type"], message_id=mid, event=msg.get("event") or "", name=msg.get("name") or "",
                properties_json=json.dumps(msg.get("properties") or {}), context_json=json.dumps(msg.get("context") or {}),
                source_kind="web")
            ev.timestamp.CopyFrom(envelope.ts(datetime.fromisoformat(msg["timestamp"].replace("Z", "+00:00"))))
            out.append((f"p{person:07d}", mid, ev))
        for ts_ms, _seq, row, person in day.pos:
            receipts[row["receipt_id"]].append((ts_ms, person, row))
    for rid, lines in receipts.items():
        ts_ms, person, head = lines[0]
        props = {"order_id": rid, "store_id": head["store_id"], "total": float(head["receipt_total"]),
                 "coupon": head["coupon"], "products": [{"category": r["category"], "price": float(r["unit_price"])}
                                                        for _, _, r in lines]}
        ev = ingest_events.EventCollected(kind="track", message_id=rid, event="Order Completed",
                                          properties_json=json.dumps(props), source_kind="pos")
        ev.timestamp.CopyFrom(envelope.ts(start + timedelta(milliseconds=ts_ms)))
        out.append((f"p{person:07d}", rid, ev))
    return world, start + timedelta(days=days), out


def resolved_env(pid: str, event_id: str, ev) -> envelope.Envelope:
    msg = identity_events.IdentityResolved(event=ev, profile_id=pid, event_id=event_id)
    return envelope.make("cdp.identity.resolved", msg, producer="identity", event_id="r-" + event_id)


async def publish(stack, envs: list[envelope.Envelope]) -> None:
    bus = stack.services["prediction"].runtime.bus
    for i in range(0, len(envs), 1000):
        await bus.publish_batch([Outgoing.from_envelope(e) for e in envs[i:i + 1000]])


async def observation_count(stack) -> int:
    async with stack.services["prediction"].runtime.pool.acquire() as conn:
        return await conn.fetchval("SELECT count(*) FROM prediction_observations")


async def train(client, cutoff: datetime, horizon: int, activate: bool = True) -> list:
    req = pb.TrainModelRequest(horizon_days=horizon, activate=activate)
    req.cutoff.CopyFrom(envelope.ts(cutoff))
    return [m async for m in client.TrainModel(req)]


async def test_train_score_predict_and_refuse(stack):
    world, world_cutoff, events = world_events()
    expected = sum(len(observe(e.kind, e.event or e.name, 0.0, json.loads(e.properties_json or "{}"),
                               json.loads(e.context_json or "{}"), e.source_kind)) for _, _, e in events)
    await publish(stack, [resolved_env(p, mid, e) for p, mid, e in events])
    await eventually(lambda: _equals(observation_count(stack), expected), timeout=240)
    profiles = len({p for p, _, _ in events})

    async with stack.channel("prediction") as ch:
        client = prediction_pb2_grpc.PredictionServiceStub(ch)
        assert not (await client.ListModels(pb.ListModelsRequest())).models
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await client.Predict(pb.PredictRequest(profile_id="p0000001"))
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "no active model" in e.value.details()

        # bad input: clear errors, nothing registered
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await train(client, world_cutoff - timedelta(days=H), 0)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "horizon_days" in e.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await train(client, world_cutoff - timedelta(days=3), H)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "no data after the cutoff for labels" in e.value.details()
        assert not (await client.ListModels(pb.ListModelsRequest())).models

        progress = await train(client, world_cutoff - timedelta(days=H), H)
        stages = [m.stage for m in progress]
        assert {"load", "features", "train purchase", "train ltv", "score", "done"} <= set(stages)
        info = progress[-1].model
        assert info.version == 1 and info.active and info.horizon_days == H
        metrics = json.loads(info.metrics_json)
        assert {"model", "rfm", "bgnbd", "pareto_nbd"} <= set(metrics["purchase"])
        assert metrics["purchase"]["model"]["auc"] > 0.55

        exported = [m async for m in client.ExportPredictions(pb.ExportPredictionsRequest())]
        assert len(exported) == profiles
        assert all(0 <= x.purchase_probability <= 1 and x.model_version == 1 for x in exported)
        assert [x.profile_id for x in exported] == sorted(x.profile_id for x in exported)

        # every score went out as cdp.prediction.scored
        await eventually(lambda: _at_least(scored_count(stack), profiles), timeout=60)

        # a rebuild from the log gives the same history; the registry and scores are kept
        before_rows = await observation_rows(stack)
        status = await stack.replay("prediction", timeout=240)
        assert status.state == "done", status
        assert await observation_rows(stack) == before_rows
        assert [m.version for m in (await client.ListModels(pb.ListModelsRequest())).models] == [1]
        assert len([x async for x in client.ExportPredictions(pb.ExportPredictionsRequest())]) == profiles

        # unknown versions: NOT_FOUND, the active model unchanged
        for call in (client.GetModel(pb.GetModelRequest(version=99)),
                     client.ActivateModel(pb.ActivateModelRequest(version=99))):
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await call
            assert e.value.code() == grpc.StatusCode.NOT_FOUND
        assert (await client.GetModel(pb.GetModelRequest(version=1))).active

        buyer = next(p for p, _, e in events if e.event == "Order Completed")
        req = pb.PredictRequest(profile_id=buyer, explain_top=3)
        req.as_of.CopyFrom(envelope.ts(world_cutoff))
        got = await client.Predict(req)
        assert got.prediction.profile_id == buyer and got.prediction.HasField("churn_probability")
        assert {x.target for x in got.explanations} == {"purchase", "churn", "discount", "purchases", "ltv"}
        assert all(len(x.contributions) == 3 for x in got.explanations)
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await client.Predict(pb.PredictRequest(profile_id="nobody"))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND

        # online: a new order re-scores its profile (debounced), and only after it
        before = {x.profile_id: x.scored_at.ToDatetime() for x in exported}
        ev = ingest_events.EventCollected(kind="track", event="Order Completed",
                                          properties_json=json.dumps({"total": 80.0}), source_kind="web")
        ev.timestamp.CopyFrom(envelope.ts(envelope.now()))
        await publish(stack, [resolved_env(buyer, "new-order-1", ev)])

        async def rescored():
            rows = [x async for x in client.ExportPredictions(pb.ExportPredictionsRequest())]
            mine = next(x for x in rows if x.profile_id == buyer)
            return mine.scored_at.ToDatetime() > before[buyer]
        await eventually(rescored, timeout=30)

        # forgetting deletes the profile's history and score
        forget = identity_events.ProfileForgotten(profile_id=buyer, profile_ids=[buyer])
        await publish(stack, [envelope.make("cdp.identity.forgotten", forget, producer="identity")])

        async def gone():
            try:
                await client.Predict(pb.PredictRequest(profile_id=buyer))
            except grpc.aio.AioRpcError as e:
                return e.code() == grpc.StatusCode.NOT_FOUND
            return False
        await eventually(gone, timeout=30)


async def observation_rows(stack) -> list:
    async with stack.services["prediction"].runtime.pool.acquire() as conn:
        return [tuple(r) for r in await conn.fetch("SELECT * FROM prediction_observations ORDER BY 1, 2, 3")]


async def scored_count(stack) -> int:
    bus = stack.services["prediction"].runtime.bus
    info = await bus.js.stream_info("CDP_PREDICTION")
    return info.state.messages


async def _equals(aw, n):
    return (await aw) == n


async def _at_least(aw, n):
    return (await aw) >= n

