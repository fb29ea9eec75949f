"""The prediction projection converges whatever the order of arrival, follows merges and
forgets."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

import cdp_prediction
from cdp.identity.v1 import events_pb2 as identity_events
from cdp.ingest.v1 import events_pb2 as ingest_events
from cdp_core import envelope
from cdp_core.settings import with_database
from cdp_core.store import open_store
from cdp_core.testing import apply_envelopes
from cdp_prediction.projection import PredictionProjection

pytestmark = pytest.mark.component
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def resolved(i: int, profile: str, event: str, props: dict, minutes: int) -> envelope.Envelope:
    ev = ingest_events.EventCollected(kind="track", event=event, properties_json=json.dumps(props), source_kind="web")
    ev.timestamp.CopyFrom(envelope.ts(T0 + timedelta(minutes=minutes)))
    msg = identity_events.IdentityResolved(event=ev, profile_id=profile, event_id=f"e{i:03d}")
    return envelope.make("cdp.identity.resolved", msg, producer="identity", event_id=f"r-e{i:03d}")


def story() -> list[envelope.Envelope]:
    envs = [resolved(i, "P1", "Product Viewed", {"category": "Bags", "price": 40}, i) for i in range(6)]
    envs += [resolved(i, "P2", "Order Completed", {"total": 50.0, "coupon": "X",
                                                   "products": [{"category": "Shoes", "price": 50}]}, i)
             for i in range(6, 10)]
    msg = identity_events.ProfilesMerged(survivor_profile_id="P1", merged_profile_id="P2", rule="shared-identifier")
    envs.append(envelope.make("cdp.identity.merged", msg, producer="identity", event_id="m-1"))
    envs.append(resolved(10, "P2", "Product Added", {"category": "Shoes", "price": 50}, 30))  # after the merge
    envs.append(resolved(11, "P3", "Email Opened", {}, 31))
    return envs


async def apply_all(url: str, envs: list[envelope.Envelope]) -> dict:
    pool = await open_store(url, "prediction", Path(cdp_prediction.__file__).parent / "migrations")
    projection = PredictionProjection()
    try:
        await apply_envelopes(pool, projection, envs)
        async with pool.acquire() as conn:
            return {
                "rows": [tuple(r) for r in await conn.fetch(
                    "SELECT profile_id, event_id, seq, t, code, value, discount, channel, category, price_band "
                    "FROM prediction_observations ORDER BY 1, 2, 3")],
                "merged": [tuple(r) for r in await conn.fetch("SELECT * FROM prediction_merged ORDER BY 1")],
                "dirty": sorted(r[0] for r in await conn.fetch("SELECT profile_id FROM prediction_dirty")),
            }
    finally:
        await pool.close()


async def fresh(database_server_url: str) -> str:
    name = "t_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(database_server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    return name


async def drop(database_server_url: str, name: str) -> None:
    admin = await asyncpg.connect(database_server_url)
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


async def test_shuffled_input_gives_the_same_projection(database_server_url):
    results = []
    for seed in (None, 1, 2, 3):
        order = story()
        if seed is not None:
            random.Random(seed).shuffle(order)
        name = await fresh(database_server_url)
        try:
            results.append(await apply_all(with_database(database_server_url, name), order))
        finally:
            await drop(database_server_url, name)
    for other in results[1:]:
        assert other["rows"] == results[0]["rows"] and other["merged"] == results[0]["merged"]
    rows = results[0]["rows"]
    assert {r[0] for r in rows} == {"P1", "P3"}  # everything of P2 is on the survivor
    assert len([r for r in rows if r[0] == "P1"]) == 6 + 4 * 2 + 1  # views; orders + items; the late add
    order = next(r for r in rows if r[1] == "e006" and r[2] == 0)
    assert order[5] == 50.0 and order[6] is True  # total, discount (coupon)
    item = next(r for r in rows if r[1] == "e006" and r[2] == 1)
    assert item[8] == "Shoes" and item[9] == "mid"
    assert results[0]["merged"] == [("P2", "P1")]
    assert "P2" not in results[0]["dirty"] and {"P1", "P3"} <= set(results[0]["dirty"])


async def test_forgetting_deletes_every_row(database_server_url):
    name = await fresh(database_server_url)
    try:
        forget = identity_events.ProfileForgotten(profile_id="P1", profile_ids=["P1"])
        envs = story() + [envelope.make("cdp.identity.forgotten", forget, producer="identity", event_id="f-1")]
        got = await apply_all(with_database(database_server_url, name), envs)
        assert {r[0] for r in got["rows"]} == {"P3"}
        assert got["merged"] == [] and got["dirty"] == ["P3"]
    finally:
        await drop(database_server_url, name)


class _Settings:
    def __init__(self, **opts):
        self.opts = opts

    def option(self, name: str, default: str) -> str:
        return self.opts.get(name, default)


async def test_prune_keeps_the_history_bounded(database_server_url):
    from cdp_prediction.features import to_days
    from cdp_prediction.scoring import Options, Scorer

    name = await fresh(database_server_url)
    try:
        url = with_database(database_server_url, name)
        pool = await open_store(url, "prediction", Path(cdp_prediction.__file__).parent / "migrations")
        try:
            now = to_days(envelope.now())
            rows = [("A", f"a{i}", 0, now - i, 1) for i in range(6)] + [("B", "b-old", 0, now - 1000, 1),
                                                                       ("B", "b-new", 0, now - 1, 1)]
            async with pool.acquire() as conn:
                await conn.executemany("INSERT INTO prediction_observations (profile_id, event_id, seq, t, code, channel) "
                                       "VALUES ($1, $2, $3, $4, $5, 0)", rows)
            scorer = Scorer(pool, Options(_Settings(CDP_PREDICTION_MAX_OBSERVATIONS="3",
                                                    CDP_PREDICTION_RETENTION_DAYS="730")))
            assert await scorer.prune() == 3 + 1
            async with pool.acquire() as conn:
                left = [tuple(r) for r in await conn.fetch(
                    "SELECT profile_id, event_id FROM prediction_observations ORDER BY 1, 2")]
            assert left == [("A", "a0"), ("A", "a1"), ("A", "a2"), ("B", "b-new")]  # the newest 3; the old one gone
            with pytest.raises(ValueError, match="positive"):
                Options(_Settings(CDP_PREDICTION_MAX_OBSERVATIONS="0"))
        finally:
            await pool.close()
    finally:
        await drop(database_server_url, name)
