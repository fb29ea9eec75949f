"""The world's shapes stay within the bounds stated in docs/simulator.md (seed 11, 2000 people, 60 days)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta

import pytest

from cdp_sim.engine import madrid_offset_h

PLACEHOLDERS = {"test@test.com", "noemail@noemail.com", "no@email.com", "a@a.com", "sinemail@gmail.com"}
SESSION_STARTS = {("page", "Home"), ("track", "Application Opened")}


def local(ts: str) -> datetime:
    t = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return t + timedelta(hours=madrid_offset_h(t.date()))


def metrics(out) -> dict:
    m: dict = {}
    # who is anonymous-only: people with web/app sessions whose messages never carry a userId or e-mail
    sessions_by_person: Counter = Counter()
    named = set()
    per_person_events: Counter = Counter()
    weekday: Counter = Counter()
    hour: Counter = Counter()
    for e in out.events:
        pid = out.owner[e["messageId"]]
        per_person_events[pid] += 1
        if e.get("userId") or (e.get("traits") or {}).get("email") or (e.get("context", {}).get("traits") or {}):
            named.add(pid)
        key = (e["type"], e.get("name") if e["type"] == "page" else e.get("event"))
        if key in SESSION_STARTS:
            sessions_by_person[pid] += 1
            t = local(e["timestamp"])
            weekday[t.weekday()] += 1
            hour[t.hour] += 1
    visitors = [p for p in sessions_by_person]
    m["anonymous_only_share"] = sum(1 for p in visitors if p not in named) / len(visitors)
    counts = sorted(per_person_events.values(), reverse=True)
    top = counts[: max(1, len(counts) // 10)]
    m["top10_event_share"] = sum(top) / sum(counts)
    orders = [t["observed"]["orders"] for t in out.truth if t["observed"]["orders"] > 0]
    orders.sort(reverse=True)
    m["buyers"] = len(orders)
    m["single_order_buyer_share"] = sum(1 for o in orders if o == 1) / len(orders)
    m["top10_buyer_order_share"] = sum(orders[: max(1, len(orders) // 10)]) / sum(orders)
    m["max_orders_over_mean"] = orders[0] / (sum(orders) / len(orders))
    m["sunday_over_saturday_sessions"] = weekday[6] / weekday[5]
    m["evening_over_night_sessions"] = sum(hour[h] for h in (19, 20, 21, 22)) / max(1, sum(hour[h] for h in (3, 4, 5, 6)))
    joined = [t for t in out.truth if t["traits"]["join_date"] < out.manifest["cutoff"]]
    m["churned_by_cutoff_share"] = sum(1 for t in joined if not t["outcomes"]["alive_at_cutoff"]) / len(joined)
    alive = [t for t in joined if t["outcomes"]["alive_at_cutoff"]]
    m["churn_in_window_share"] = sum(1 for t in alive if t["outcomes"]["churned_in_window"]) / len(alive)
    m["future_purchase_share"] = sum(1 for t in alive if t["outcomes"]["purchased"]) / len(alive)
    m["crm_placeholder_email_share"] = sum(1 for r in out.crm if r["email"].strip().lower() in PLACEHOLDERS) / len(out.crm)
    receipts = {}
    for r in out.pos:
        receipts[r["receipt_id"]] = r
    m["pos_placeholder_email_share"] = sum(1 for r in receipts.values() if r["customer_email"].strip().lower() in PLACEHOLDERS) / len(receipts)
    m["pos_anonymous_receipt_share"] = sum(1 for r in receipts.values() if not (r["loyalty_id"] or r["customer_last_name"] or r["customer_email"] or r["customer_phone"])) / len(receipts)
    m["pos_sunday_share"] = sum(1 for r in receipts.values() if datetime.fromisoformat(r["purchased_at"]).weekday() == 6) / len(receipts)
    shared = defaultdict(int)
    for t in out.truth:
        for i in t["identifiers"]:
            if i.get("shared_with"):
                shared[i["type"]] += 1
    m["people_with_shared_device_or_email"] = sum(
        1 for t in out.truth if any(i.get("shared_with") and i["type"] in ("anonymous_id", "device_id", "email") for i in t["identifiers"])) / len(out.truth)
    return m

BOUNDS = {  # metric: (low, high) -- the same table is in docs/simulator.md
    "anonymous_only_share": (0.40, 0.70),
    "top10_event_share": (0.30, 1.0),
    "single_order_buyer_share": (0.50, 0.85),
    "top10_buyer_order_share": (0.18, 1.0),
    "max_orders_over_mean": (2.5, float("inf")),
    "sunday_over_saturday_sessions": (1.30, 2.10),
    "evening_over_night_sessions": (10.0, float("inf")),
    "churned_by_cutoff_share": (0.25, 0.50),
    "churn_in_window_share": (0.07, 0.22),
    "future_purchase_share": (0.08, 0.25),
    "crm_placeholder_email_share": (0.02, 0.07),
    "pos_placeholder_email_share": (0.003, 0.06),
    "pos_anonymous_receipt_share": (0.25, 0.55),
    "pos_sunday_share": (0.0, 0.03),
    "people_with_shared_device_or_email": (0.02, 0.15),
}


@pytest.fixture(scope="module")
def measured(out):
    return metrics(out)


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_within_bounds(measured, name):
    lo, hi = BOUNDS[name]
    assert lo <= measured[name] <= hi, f"{name}={measured[name]:.3f} not in [{lo}, {hi}]"


def test_preferences_show_in_what_people_buy(out):
    """People buy mostly from their preferred categories (3 of 15 categories)."""
    prefs = {t["person_id"]: set(t["traits"]["preferred_categories"]) for t in out.truth}
    hits = total = 0
    for e in out.events:
        if e.get("event") == "Order Completed":
            pid = out.owner[e["messageId"]]
            for p in e["properties"]["products"]:
                total += 1
                hits += p["category"] in prefs[pid]
    assert total > 100
    assert hits / total > 0.5  # 3/15 = 0.2 by chance
