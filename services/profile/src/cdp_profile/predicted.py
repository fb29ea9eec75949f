"""Predicted traits: the prediction service's scores (`cdp.prediction.scored`) on the profile.

Each score becomes the profile's trait `predicted` (an object: purchase and churn probability,
expected purchases and predicted lifetime value in the model's horizon, the LTV percentile,
discount affinity, attribute affinities, the model version, horizon and cut-off), written
last-writer-wins by the time it was scored (ties broken by event id) like every other trait,
so GetProfile, SearchProfiles, exports, `cdp.profile.changed` and segments see it with no
extra path. A score for a profile merged since goes to its survivor; one for a profile this
service has not seen yet creates it (its events follow).
"""

from __future__ import annotations

import asyncpg
import orjson

from cdp.prediction.v1 import events_pb2 as prediction_events
from cdp_core import envelope
from cdp_core.consumer import Delivery, Projection, handles
from cdp_core.outbox import OutboxWriter

from .projection import UPSERT_TRAITS, Change, emit_changes, lock_profiles

TRAIT = "predicted"


def predicted_value(p: prediction_events.PredictionScored) -> dict:
    """The trait's value for one score (the JSON object segments and exports read)."""
    value = {
        "purchase_probability": p.purchase_probability,
        "expected_purchases": p.expected_purchases,
        "predicted_ltv": p.predicted_ltv,
        "ltv_percentile": p.ltv_percentile,
        "discount_affinity": p.discount_affinity,
        "affinities": {a.attribute: {"value": a.value, "score": a.score} for a in p.affinities},
        "model_version": p.model_version,
        "horizon_days": p.horizon_days,
        "as_of": envelope.from_ts(p.as_of).isoformat() if p.HasField("as_of") else None,
        "scored_at": envelope.from_ts(p.scored_at).isoformat(),
    }
    if p.HasField("churn_probability"):  # absent for profiles that never ordered
        value["churn_probability"] = p.churn_probability
    return value


class PredictionProjection(Projection):
    name = "profile-predictions"
    source = "prediction"
    subjects = ["cdp.prediction.scored"]

    @handles("cdp.prediction.scored", batch=True)
    async def on_scored(self, conn: asyncpg.Connection, ds: list[Delivery], outbox: OutboxWriter) -> None:
        scores = [(d, d.payload(prediction_events.PredictionScored)) for d in ds]
        canon = await lock_profiles(conn, {p.profile_id for _, p in scores if p.profile_id})
        winners: dict[str, tuple] = {}  # profile -> (scored at, event id, value, delivery)
        for d, p in scores:
            if not p.profile_id:
                d.reject("a score without a profile id")
                continue
            pid = canon.get(p.profile_id, p.profile_id)
            candidate = (envelope.from_ts(p.scored_at), d.envelope.event_id, predicted_value(p), d)
            if pid not in winners or candidate[:2] > winners[pid][:2]:
                winners[pid] = candidate
        if not winners:
            return
        pids = sorted(winners)
        await conn.execute("INSERT INTO profiles (profile_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING", pids)
        changed = {row[0] for row in await conn.fetch(
            UPSERT_TRAITS, pids, [TRAIT] * len(pids),
            [orjson.dumps(winners[p][2]).decode() for p in pids],
            [winners[p][0] for p in pids], [winners[p][1] for p in pids])}
        await emit_changes(conn, outbox, [Change(
            profile_id=pid, event_id=winners[pid][1], event_ids=[winners[pid][1]], changed_traits=[TRAIT],
            cause=winners[pid][3].envelope, msg_id=envelope.derived_id("profile.changed", winners[pid][1]))
            for pid in pids if pid in changed])
