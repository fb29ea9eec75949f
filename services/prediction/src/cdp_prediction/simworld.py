"""The simulator's world as a `History` keyed by the true person (perfect identity), with its
ground truth: what the accuracy benchmark and the tests train and score on. Takes a
`cdp_sim.World` (duck-typed: this module does not import the simulator)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from .features import ITEM, ORDER, STORE, History, Observation, observe, price_band, to_days


@dataclass
class SimData:
    history: History
    truth: dict[str, dict]  # person_id -> truth record
    start: float  # days since the epoch
    cutoff: float  # the world's cutoff: the first unobserved day
    horizon_days: int


def _ts(msg: dict) -> float:
    return to_days(datetime.fromisoformat(msg["timestamp"].replace("Z", "+00:00")))


def load_world(world) -> SimData:
    cfg = world.cfg
    start_dt = datetime.combine(cfg.start_date, datetime.min.time(), tzinfo=UTC)
    start = to_days(start_dt)
    rows: list[tuple[str, Observation]] = []
    receipts: dict[str, list] = defaultdict(list)
    for out in world.run():
        for _ts_ms, _seq, msg, person, _mid in out.segment:
            pid = f"p{person:07d}"
            kind = msg["type"]
            name = msg.get("event") or msg.get("name") or ""
            for o in observe(kind, name, _ts(msg), msg.get("properties"), msg.get("context")):
                rows.append((pid, o))
        for ts_ms, _seq, row, person in out.pos:
            receipts[row["receipt_id"]].append((start + ts_ms / 86_400_000, f"p{person:07d}", row))
    for lines in receipts.values():
        t, pid, head = lines[0]
        total = float(head["receipt_total"] or 0)
        discount = bool(head["coupon"]) or any(float(r["line_discount"] or 0) > 0 for _, _, r in lines)
        rows.append((pid, Observation(t, ORDER, total, discount, STORE)))
        for _, _, r in lines:
            price = float(r["unit_price"] or 0)
            rows.append((pid, Observation(t, ITEM, price, False, STORE, r["category"] or None, None, None, None,
                                          price_band(price))))
    truth = {t["person_id"]: t for t in world.truth()}
    return SimData(History.from_observations(rows), truth, start, start + cfg.days, cfg.horizon)
