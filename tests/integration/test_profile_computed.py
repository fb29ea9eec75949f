"""Computed traits through the real services: kept up to date per event and recomputed
exactly when two profiles merge."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import grpc
import pytest

from cdp.common.v1 import identifier_pb2
from cdp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_core.testing import eventually

pytestmark = pytest.mark.integration


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def common(**kw) -> ingest_pb2.EventCommon:
    kw.setdefault("message_id", str(uuid.uuid4()))
    return ingest_pb2.EventCommon(**kw)


def order(order_id: str, sku: str, price: float) -> str:
    return json.dumps({"order_id": order_id, "total": price,
                       "products": [{"product_id": sku, "sku": sku, "name": sku, "category": "Dresses", "price": price,
                                     "quantity": 1}]})


async def test_computed_traits_follow_events_and_merges(stack):
    run = uuid.uuid4().hex[:8]
    ingest = ingest_pb2_grpc.IngestServiceStub(stack.channel("ingest"))
    profiles = profile_pb2_grpc.ProfileServiceStub(stack.channel("profile"))
    anon, user = f"a-{run}", f"u-{run}"
    await ingest.Track(ingest_pb2.TrackRequest(common=common(anonymous_id=anon, timestamp=at(2026, 3, 1, 10, 0)),
                                               event="Product Viewed",
                                               properties_json=json.dumps({"sku": "D1", "category": "Dresses"})))
    await ingest.Track(ingest_pb2.TrackRequest(common=common(anonymous_id=anon, timestamp=at(2026, 3, 1, 10, 5)),
                                               event="Order Completed", properties_json=order("o1", "D1", 40.0)))
    await ingest.Track(ingest_pb2.TrackRequest(common=common(user_id=user, timestamp=at(2026, 3, 2, 9, 0)),
                                               event="Order Completed", properties_json=order("o2", "D2", 60.0)))

    async def computed_of(t: str, v: str, orders: int):
        try:
            p = (await profiles.GetProfile(profile_pb2.GetProfileRequest(
                identifier=identifier_pb2.Identifier(type=t, value=v)))).profile
        except grpc.aio.AioRpcError:
            return None
        c = json.loads(p.computed_json or "{}")
        return c if (c.get("orders") or {}).get("count") == orders else None

    before = await eventually(lambda: computed_of("anonymous_id", anon, 1))
    assert before["orders"]["revenue_total"] == 40.0
    assert [x["sku"] for x in before["products_viewed"]] == ["D1"]
    # the visitor logs in: the two profiles merge and the traits are computed from all events
    await ingest.Identify(ingest_pb2.IdentifyRequest(common=common(anonymous_id=anon, user_id=user,
                                                                   timestamp=at(2026, 3, 3, 8, 0))))
    after = await eventually(lambda: computed_of("user_id", user, 2))
    assert after["orders"]["revenue_total"] == 100.0 and after["orders"]["revenue_avg"] == 50.0
    assert [x["sku"] for x in after["products_purchased"]] == ["D2", "D1"]
    assert after["first_seen"].startswith("2026-03-01T10:00")
