"""The built-in computed traits: exact, order-independent, and right on the simulator's world."""

from __future__ import annotations

import csv
import itertools
import json
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from cdp.ingest.v1 import events_pb2
from cdp_profile import computed as computed_mod
from cdp_profile.computed import Event, Settings, compute
from cdp_sim import World

T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
_ids = itertools.count(1)

WEB = {"library": {"name": "analytics.js", "version": "next-1.70.0"}, "timezone": "Europe/Madrid", "ip": "83.1.2.3",
       "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                    "Chrome/131.0.0.0 Safari/537.36"}
APP = {"library": {"name": "analytics-swift", "version": "1.6.1"}, "app": {"name": "Moda"},
       "device": {"id": "D1", "manufacturer": "Apple", "model": "iPhone15,2", "type": "ios"},
       "os": {"name": "iOS", "version": "18.1"}, "timezone": "Europe/Madrid"}
SERVER = {"library": {"name": "analytics-node", "version": "2.2.0"}}
SHOPIFY = {"library": {"name": "cdp-shopify", "version": "1"}}


def ev(name: str, at: datetime, props: dict | None = None, *, kind: str = "track", ctx: dict | None = None,
       traits: dict | None = None, eid: str | None = None, source_kind: str = "") -> Event:
    return Event(eid or f"e{next(_ids):06d}", kind, name, at, props or {}, traits or {},
                 WEB if ctx is None else ctx, source_kind)


def product(n: int, **extra) -> dict:
    return {"product_id": f"prod_{n}", "sku": f"SKU-{n}", "name": f"Thing {n}", "category": "Dresses",
            "brand": "Marea", "variant": "Black / M", "price": 40.0, **extra}


def order(oid: str | None, *lines: dict, total: float = 40.0, **extra) -> dict:
    return {"order_id": oid, "total": total, "products": list(lines), **extra}


def skus(items: list[dict]) -> list[str]:
    return [p["sku"] for p in items]


# --- no events, bad input -----------------------------------------------------------------------


def test_no_events_gives_empty_neutral_traits():
    got = compute([], now=T0)
    assert got == {
        "first_seen": None, "last_seen": None, "sessions": 0,
        "products_viewed": [], "products_added": [], "products_purchased": [], "products_abandoned": [],
        "products_in_cart": [],
        "orders": {"count": 0, "revenue_total": 0.0, "revenue_avg": None, "first_order_at": None,
                   "last_order_at": None, "days_since_last_order": None, "refunded_total": 0.0},
        "discount_share": None, "channels": {}, "devices": [], "operating_systems": [], "browsers": [],
        "last_location": None, "preferred_hour": None,
        "affinities": {"category": {}, "brand": {}, "colour": {}, "size": {}, "price_band": {}},
        "top_affinities": {"category": None, "brand": None, "colour": None, "size": None, "price_band": None},
        "nps": None, "consent": {},
    }
    json.dumps(got)


def test_from_collected_parses_json_and_tolerates_bad_json():
    c = events_pb2.EventCollected(kind="track", event="Product Viewed", properties_json='{"sku": "A1", "price": 9.5}',
                                  traits_json="{not json", context_json="[1, 2]", source_kind="web")
    c.timestamp.FromDatetime(T0.replace(tzinfo=None))
    e = Event.from_collected("id-1", c)
    assert (e.event_id, e.kind, e.name, e.occurred_at, e.source_kind) == ("id-1", "track", "Product Viewed", T0, "web")
    assert e.properties == {"sku": "A1", "price": 9.5} and e.traits == {} and e.context == {}

    page = events_pb2.EventCollected(kind="page", name="Home", properties_json='"a string"', context_json="null")
    page.received_at.FromDatetime(T0.replace(tzinfo=None))  # no timestamp: falls back to arrival
    p = Event.from_collected("id-2", page)
    assert (p.kind, p.name, p.occurred_at, p.properties, p.context) == ("page", "Home", T0, {}, {})


def test_wrongly_typed_fields_are_ignored_not_fatal():
    events = [
        ev("Product Viewed", T0, {"sku": ["not", "a", "string"], "price": "abc"}),
        ev("Product Added", T0, {"sku": 42, "price": True, "quantity": "2"}),
        ev("Order Completed", T0, {"order_id": {"x": 1}, "total": "NaN", "products": "none"}),
        ev("Order Completed", T0, {"order_id": "o9", "total": "12.30", "products": [None, 3, {"sku": "Z"}]}),
        ev("Survey Completed", T0, {"survey_type": "nps", "score": 11}),
        ev("Home", T0, kind="identify", traits={"address": "Calle Mayor 1", "email_opt_in": "maybe"},
           ctx={"location": "here", "timezone": "Mars/Base", "consent": []}),
    ]
    got = compute(events, now=T0 + DAY)
    assert got["orders"]["count"] == 2 and got["orders"]["revenue_total"] == 12.3
    assert skus(got["products_purchased"]) == ["Z"]
    assert got["nps"] is None and got["consent"] == {}
    json.dumps(got)


# --- products: newest first, distinct, last N -----------------------------------------------------


def test_products_are_distinct_newest_first_and_capped():
    events = [ev("Product Viewed", T0 + timedelta(minutes=k), product(n)) for k, n in enumerate([1, 2, 3, 1, 4])]
    got = compute(events, now=T0 + DAY)
    assert skus(got["products_viewed"]) == ["SKU-4", "SKU-1", "SKU-3", "SKU-2"]
    assert got["products_viewed"][1]["at"] == "2026-01-10T12:03:00.000Z"
    assert skus(compute(events, now=T0 + DAY, settings=Settings(last_n=2))["products_viewed"]) == ["SKU-4", "SKU-1"]


def test_same_time_ties_break_by_event_id_and_missing_fields_come_from_older_mentions():
    events = [ev("Product Viewed", T0, product(1), eid="b"), ev("Product Viewed", T0, product(2), eid="a"),
              ev("Product Viewed", T0 - DAY, product(3, brand="Olivo"), eid="z"),
              ev("Product Viewed", T0 + DAY, {"sku": "SKU-3", "price": 12.5}, eid="y")]
    got = compute(events, now=T0 + 2 * DAY)["products_viewed"]
    assert skus(got) == ["SKU-3", "SKU-1", "SKU-2"]
    assert got[0] == {"product_id": "prod_3", "sku": "SKU-3", "name": "Thing 3", "category": "Dresses",
                      "brand": "Olivo", "price": 12.5, "at": "2026-01-11T12:00:00.000Z"}


# --- abandonment --------------------------------------------------------------------------------


def abandoned(events, now, **kw) -> list[str]:
    return skus(compute(events, now=now, settings=Settings(**kw))["products_abandoned"])


def test_abandonment_is_judged_once_the_window_has_passed():
    add = ev("Product Added", T0, product(1))
    assert abandoned([add], T0 + DAY) == ["SKU-1"]  # exactly one window later: judged
    assert abandoned([add], T0 + DAY - timedelta(microseconds=1)) == []  # still in the cart
    assert abandoned([add], T0 + timedelta(hours=2), abandon_window=timedelta(hours=2)) == ["SKU-1"]


def test_an_order_containing_the_product_in_the_window_or_since_saves_it():
    add = ev("Product Added", T0, product(1))
    now = T0 + 10 * DAY
    for at in (T0, T0 + timedelta(hours=1), T0 + DAY, T0 + 3 * DAY):  # the window's edges are inclusive
        assert abandoned([add, ev("Order Completed", at, order("o1", product(1)))], now) == [], at
    # bought before it was added, or an order of something else: still abandoned
    assert abandoned([add, ev("Order Completed", T0 - timedelta(seconds=1), order("o1", product(1)))], now) == ["SKU-1"]
    assert abandoned([add, ev("Order Completed", T0 + DAY, order("o1", product(2)))], now) == ["SKU-1"]
    # the order names the product by product_id only (another system's sku): still the same product
    assert abandoned([add, ev("Order Completed", T0 + DAY, order("o1", {"product_id": "prod_1"}))], now) == []


def test_a_removed_product_is_not_abandoned_until_added_again():
    add, rm = ev("Product Added", T0, product(1)), ev("Product Removed", T0 + timedelta(minutes=1), product(1))
    now = T0 + 10 * DAY
    assert abandoned([add, rm], now) == []
    again = ev("Product Added", T0 + 2 * DAY, product(1))
    got = compute([add, rm, again], now=now)["products_abandoned"]
    assert skus(got) == ["SKU-1"] and got[0]["at"] == "2026-01-12T12:00:00.000Z"  # judged from the latest add


def test_products_in_cart_do_not_depend_on_the_clock():
    """What is in the cart: added, not bought and not removed since, whenever it is read; the
    abandoned products are those of it whose window has passed."""
    events = [ev("Product Added", T0, product(1)), ev("Product Added", T0 + timedelta(hours=1), product(2)),
              ev("Product Added", T0 + timedelta(hours=2), product(3)),
              ev("Product Removed", T0 + timedelta(hours=3), product(2)),
              ev("Order Completed", T0 + timedelta(hours=4), order("o1", product(3)))]
    for now in (T0 + timedelta(hours=5), T0 + 10 * DAY):
        got = compute(events, now=now)
        assert skus(got["products_in_cart"]) == ["SKU-1"] and got["products_in_cart"][0]["at"] == "2026-01-10T12:00:00.000Z"
    assert abandoned(events, T0 + timedelta(hours=5)) == [] and abandoned(events, T0 + DAY) == ["SKU-1"]
    again = events + [ev("Product Added", T0 + 2 * DAY, product(3))]  # bought, then added again: in the cart
    assert skus(compute(again, now=T0 + 2 * DAY)["products_in_cart"]) == ["SKU-3", "SKU-1"]
    assert skus(compute(again, now=T0 + 2 * DAY, settings=Settings(cart_limit=1))["products_in_cart"]) == ["SKU-3"]


def test_abandoned_products_are_newest_first():
    events = [ev("Product Added", T0 + timedelta(hours=k), product(n)) for k, n in enumerate([5, 6, 7])]
    events.append(ev("Order Completed", T0 + timedelta(hours=3), order("o", product(6))))
    assert abandoned(events, T0 + 5 * DAY) == ["SKU-7", "SKU-5"]


# --- orders -------------------------------------------------------------------------------------


def test_an_order_reported_twice_counts_once_with_the_richest_report():
    web = ev("Order Completed", T0 + timedelta(seconds=1), order("1001", product(1), product(2), total=84.9,
                                                                    discount=0.0, coupon=None))
    shop = ev("Order Completed", T0, order("1001", {"product_id": "800", "sku": "SKU-1", "price": 40.0},
                                           {"product_id": "801", "sku": "SKU-2", "price": 40.0},
                                           total=84.9, coupon="VIP20"), ctx=SHOPIFY)
    store = ev("Order Completed", T0 + 3 * DAY + timedelta(hours=5), {"order_id": "R1", "store_id": "s1", "total": "15.05"},
               ctx={"library": {"name": "cdp-import"}}, source_kind="pos")
    anon = ev("Order Completed", T0 + DAY, {"revenue": 10, "products": [product(3, quantity=2)]})
    no_amount = ev("Order Completed", T0 + 2 * DAY, {"products": [product(4, price=2.5, quantity=2)]})
    refund = ev("Order Refunded", T0 + 4 * DAY, {"order_id": "1001", "refund_id": "r1", "total": 40.0})
    got = compute([web, shop, store, anon, no_amount, refund, refund], now=T0 + 10 * DAY)
    assert got["orders"] == {"count": 4, "revenue_total": 114.95, "revenue_avg": 28.74,
                             "first_order_at": "2026-01-10T12:00:01.000Z", "last_order_at": "2026-01-13T17:00:00.000Z",
                             "days_since_last_order": 6, "refunded_total": 40.0}
    assert got["discount_share"] == 0.25  # the Shopify report of 1001 names its coupon
    bought = got["products_purchased"]
    assert skus(bought) == ["SKU-4", "SKU-3", "SKU-1", "SKU-2"]
    assert bought[2]["product_id"] == "prod_1"  # the richer (web) report's catalogue id
    assert got["channels"]["store"] == {"engaged": True, "last_engagement_at": "2026-01-13T17:00:00.000Z", "events": 1}


def test_days_since_last_order_counts_whole_days():
    o = ev("Order Completed", T0, order("o"))
    assert compute([o], now=T0 + DAY - timedelta(seconds=1))["orders"]["days_since_last_order"] == 0
    assert compute([o], now=T0 + DAY)["orders"]["days_since_last_order"] == 1
    assert compute([o], now=T0 - DAY)["orders"]["days_since_last_order"] == 0  # an order after `now`


def test_discount_share_counts_coupons_and_discounts():
    events = [ev("Order Completed", T0, order("a", coupon="VIP20")),
              ev("Order Completed", T0, order("b", discount=3.5)),
              ev("Order Completed", T0, order("c", product(1, coupon="X"))),
              ev("Order Completed", T0, order("d", discount=0, coupon=""))]
    assert compute(events, now=T0)["discount_share"] == 0.75


# --- affinities ---------------------------------------------------------------------------------


def test_decay_halves_the_weight_after_one_half_life():
    now = T0 + 100 * DAY
    one = compute([ev("Product Viewed", now - 30 * DAY, product(1))], now=now)["affinities"]
    assert one["category"] == {"Dresses": 0.5}
    assert one["colour"] == {"Black": 0.5} and one["size"] == {"M": 0.5} and one["price_band"] == {"mid": 0.5}
    two = compute([ev("Product Viewed", now - 60 * DAY, product(1))], now=now)["affinities"]
    assert two["brand"] == {"Marea": 0.25}
    short = compute([ev("Product Viewed", now - 7 * DAY, product(1))], now=now,
                    settings=Settings(affinity_half_life_days=7))["affinities"]
    assert short["brand"] == {"Marea": 0.5}


def test_views_weigh_less_than_adds_less_than_purchases():
    now = T0
    events = [ev("Product Viewed", now, product(1, category="A", brand="X")),
              ev("Product Added", now, product(2, category="B", brand="X")),
              ev("Order Completed", now, order("o", product(3, category="C", brand="Y", price=120.0)))]
    got = compute(events, now=now)
    assert got["affinities"]["category"] == {"C": 5.0, "B": 3.0, "A": 1.0}
    assert got["affinities"]["brand"] == {"Y": 5.0, "X": 4.0}
    assert got["affinities"]["price_band"] == {"premium": 5.0, "mid": 4.0}
    assert got["top_affinities"] == {"category": "C", "brand": "Y", "colour": "Black", "size": "M",
                                     "price_band": "premium"}


def test_affinities_keep_the_top_n_values():
    events = [ev("Product Viewed", T0 - timedelta(hours=k), product(k, category=f"C{k}")) for k in range(8)]
    got = compute(events, now=T0, settings=Settings(affinity_top_n=3))["affinities"]["category"]
    assert list(got) == ["C0", "C1", "C2"]


# --- sessions, channels, devices, location, hour --------------------------------------------------


def test_sessions_split_on_gaps_longer_than_the_session_gap():
    gap = timedelta(minutes=30)
    events = [ev("Home", T0, kind="page"), ev("Product Viewed", T0 + gap, product(1)),  # exactly the gap: same visit
              ev("Cart", T0 + 2 * gap + timedelta(microseconds=1), kind="screen", ctx=APP),  # just over: a new one
              ev("Email Opened", T0 + 5 * gap, ctx=SERVER)]  # not a visit
    assert compute(events, now=T0)["sessions"] == 2
    assert compute(events, now=T0, settings=Settings(session_gap=timedelta(hours=2)))["sessions"] == 1


def test_channels_engagement_and_counts():
    events = [ev("Email Delivered", T0, ctx=SERVER), ev("Email Delivered", T0 + DAY, ctx=SERVER),
              ev("SMS Delivered", T0, ctx=SERVER), ev("SMS Link Clicked", T0 + timedelta(hours=1), ctx=SERVER),
              ev("Push Notification Tapped", T0 + 2 * DAY, ctx=APP),
              ev("Application Opened", T0 + 2 * DAY + timedelta(minutes=1), ctx=APP),
              ev("Home", T0, kind="page"),
              ev("Order Completed", T0 + 3 * DAY, order("9", source_name="iphone"), ctx=SHOPIFY),
              ev("Sent", T0, ctx=SERVER, source_kind="whatsapp"),
              ev("Read", T0 + timedelta(minutes=5), ctx=SERVER, source_kind="whatsapp"),
              ev("Contact", T0, kind="identify", ctx={"library": {"name": "cdp-import"}}, source_kind="crm")]
    got = compute(events, now=T0 + 5 * DAY)["channels"]
    assert list(got) == ["email", "sms", "whatsapp", "push", "web", "app"]
    assert got["email"] == {"engaged": False, "last_engagement_at": None, "events": 2}
    assert got["sms"] == {"engaged": True, "last_engagement_at": "2026-01-10T13:00:00.000Z", "events": 2}
    assert got["whatsapp"] == {"engaged": True, "last_engagement_at": "2026-01-10T12:05:00.000Z", "events": 2}
    assert got["push"]["events"] == 1 and got["push"]["engaged"]
    assert got["app"] == {"engaged": True, "last_engagement_at": "2026-01-13T12:00:00.000Z", "events": 2}
    assert got["web"]["events"] == 1


def test_devices_operating_systems_and_browsers():
    ipad = {"userAgent": "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                         "Version/17.6 Mobile/15E148 Safari/604.1"}
    pixel = {"userAgent": "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
                          "Chrome/131.0.0.0 Mobile Safari/537.36"}
    events = [ev("Home", T0, kind="page"), ev("Home", T0 + DAY, kind="page"), ev("Home", T0 + 2 * DAY, kind="screen",
                                                                                   ctx=APP),
              ev("Home", T0 + 3 * DAY, kind="page", ctx=ipad), ev("Home", T0 - DAY, kind="page", ctx=pixel)]
    got = compute(events, now=T0)
    assert [(d["type"], d["manufacturer"], d["model"], d["events"]) for d in got["devices"]] == [
        ("tablet", "Apple", "iPad", 1), ("mobile", "Apple", "iPhone15,2", 1), ("desktop", None, None, 2),
        ("mobile", None, "Pixel 7", 1)]
    assert [(o["name"], o["version"]) for o in got["operating_systems"]] == [
        ("iPadOS", "17.6"), ("iOS", "18.1"), ("Windows", "10"), ("Android", "13")]
    assert [(b["name"], b["version"], b["events"]) for b in got["browsers"]] == [
        ("Safari", "17.6", 1), ("Chrome", "131", 3)]


def test_last_location_prefers_device_then_address_then_ip_and_says_which():
    ip = ev("Home", T0 + 3 * DAY, kind="page")
    assert compute([ip], now=T0)["last_location"] == {"source": "ip", "ip": "83.1.2.3", "at": "2026-01-13T12:00:00.000Z"}
    addr = ev("Signed Up", T0, kind="identify", traits={"address": {"city": "Sevilla", "postalCode": "41001"}})
    till = ev("Order Completed", T0 + DAY, {"order_id": "R"}, ctx={"traits": {"address": {"postalCode": "4100"}}})
    assert compute([ip, addr, till], now=T0)["last_location"] == {
        "source": "address", "city": "Sevilla", "postalCode": "41001", "at": "2026-01-10T12:00:00.000Z"}
    assert compute([ip, till], now=T0)["last_location"]["postalCode"] == "4100"
    geo = ev("Store Visited", T0 - DAY, ctx={**APP, "location": {"latitude": 37.38, "longitude": -5.99,
                                                                  "city": "Sevilla", "speed": 0}})
    assert compute([ip, addr, till, geo], now=T0)["last_location"] == {
        "source": "device", "latitude": 37.38, "longitude": -5.99, "city": "Sevilla", "at": "2026-01-09T12:00:00.000Z"}


def test_preferred_hour_in_the_persons_timezone_else_utc():
    # 20:30 UTC in January is 21:30 in Madrid; three visits then, one earlier
    visits = [ev("Home", T0.replace(hour=20, minute=30) + k * DAY, kind="page") for k in range(3)]
    visits.append(ev("Home", T0.replace(hour=9), kind="page"))
    assert compute(visits, now=T0)["preferred_hour"] == {"hour": 21, "timezone": "Europe/Madrid"}
    no_tz = {**WEB}
    del no_tz["timezone"]
    plain = [Event(e.event_id, e.kind, e.name, e.occurred_at, {}, {}, no_tz) for e in visits]
    assert compute(plain, now=T0)["preferred_hour"] == {"hour": 20, "timezone": "UTC"}
    tie = [ev("Home", T0.replace(hour=h), kind="page", ctx=no_tz) for h in (15, 7)]
    assert compute(tie, now=T0)["preferred_hour"] == {"hour": 7, "timezone": "UTC"}
    # campaign deliveries are not the person's activity; their clicks are
    sent = [ev("Email Delivered", T0.replace(hour=8) + k * DAY, ctx=SERVER) for k in range(5)]
    click = [ev("Email Link Clicked", T0.replace(hour=18), ctx=SERVER)]
    assert compute(sent + click, now=T0)["preferred_hour"] == {"hour": 18, "timezone": "UTC"}


# --- NPS and consent ----------------------------------------------------------------------------


def test_latest_nps_answer():
    events = [ev("Survey Completed", T0, {"survey_type": "nps", "score": 9}, ctx=SERVER),
              ev("Survey Completed", T0 + DAY, {"survey_id": "nps-post-purchase", "score": 4}, ctx=SERVER),
              ev("Survey Completed", T0 + 2 * DAY, {"survey_type": "csat", "score": 10}, ctx=SERVER),
              ev("NPS Submitted", T0 - DAY, {"score": 8}, ctx=SERVER)]
    assert compute(events, now=T0)["nps"] == {"score": 4, "category": "detractor", "at": "2026-01-11T12:00:00.000Z"}
    assert compute(events[:1], now=T0)["nps"]["category"] == "promoter"
    assert compute(events[3:], now=T0)["nps"]["category"] == "passive"


def test_consent_from_traits_consent_context_and_events_last_writer_wins():
    crm = ev("Contact", T0, kind="identify", traits={"email_opt_in": True, "sms_opt_in": False,
                                                     "whatsapp_opt_in": True}, ctx={"library": {"name": "cdp-import"}})
    shop = ev("Customer", T0 + DAY, kind="identify", ctx={"consent": {"categoryPreferences": {"email": True,
                                                                                              "Advertising": False}}},
              traits={"accepts_marketing": True, "accepts_sms_marketing": True,
                      "email_marketing_consent": {"state": "subscribed"}})
    unsub = ev("Email Unsubscribed", T0 + 2 * DAY, ctx=SERVER)
    push_off = ev("Push Unsubscribed", T0 + 3 * DAY, ctx=APP)
    got = compute([unsub, shop, push_off, crm], now=T0)["consent"]
    assert got == {
        "advertising": {"granted": False, "at": "2026-01-11T12:00:00.000Z", "source": "context.consent"},
        "email": {"granted": False, "at": "2026-01-12T12:00:00.000Z", "source": "event:Email Unsubscribed"},
        "push": {"granted": False, "at": "2026-01-13T12:00:00.000Z", "source": "event:Push Unsubscribed"},
        "sms": {"granted": True, "at": "2026-01-11T12:00:00.000Z", "source": "trait:accepts_sms_marketing"},
        "whatsapp": {"granted": True, "at": "2026-01-10T12:00:00.000Z", "source": "trait:whatsapp_opt_in"},
    }
    back = ev("Email Resubscribed", T0 + 2 * DAY, ctx=SERVER, eid="~later id, same time")
    assert compute([back, unsub, shop, crm], now=T0)["consent"]["email"]["granted"] is True


# --- order independence, merges, duplicates --------------------------------------------------------


def story(rng: random.Random, n: int, prefix: str = "") -> list[Event]:
    """A random but realistic mix of everything compute reads, with many equal timestamps."""
    out = []
    for k in range(n):
        at = T0 + timedelta(minutes=rng.randrange(0, 60 * 24 * 40, 7))
        p = product(rng.randrange(40), price=rng.choice([9.95, 40.0, 120.0]), category=rng.choice("ABC"))
        x = rng.random()
        eid = f"{prefix}{k:05d}"
        if x < 0.25:
            out.append(ev("Product Viewed", at, p, eid=eid, ctx=rng.choice([WEB, APP])))
        elif x < 0.4:
            out.append(ev("Product Added", at, p, eid=eid))
        elif x < 0.45:
            out.append(ev("Product Removed", at, p, eid=eid))
        elif x < 0.55:
            oid = rng.choice([None, "o1", "o2", f"o{k}"])
            out.append(ev("Order Completed", at, order(oid, p, product(rng.randrange(8)), total=rng.choice([10.1, 20.2]),
                                                       coupon=rng.choice([None, "VIP20"])), eid=eid,
                          ctx=rng.choice([WEB, SHOPIFY])))
        elif x < 0.65:
            out.append(ev(rng.choice(["Email Delivered", "Email Opened", "SMS Link Clicked", "Email Unsubscribed",
                                      "Push Notification Tapped"]), at, eid=eid, ctx=SERVER))
        elif x < 0.75:
            out.append(ev("Home", at, kind=rng.choice(["page", "screen"]), eid=eid,
                          ctx=rng.choice([WEB, APP, {**APP, "location": {"latitude": rng.random()}}])))
        elif x < 0.85:
            out.append(ev("Contact", at, kind="identify", eid=eid, traits={
                "email_opt_in": rng.random() < 0.5, "address": {"city": rng.choice(["Madrid", "Bilbao"])}},
                ctx=rng.choice([SERVER, {"timezone": rng.choice(["UTC", "America/New_York"])}])))
        elif x < 0.92:
            out.append(ev("Survey Completed", at, {"survey_type": "nps", "score": rng.randrange(11)}, eid=eid,
                          ctx=SERVER))
        else:
            out.append(ev("Order Refunded", at, {"refund_id": rng.choice(["r1", None]), "total": 5.5}, eid=eid,
                          ctx=SHOPIFY))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_any_order_and_redeliveries_give_the_same_traits(seed):
    rng = random.Random(seed)
    events = story(rng, 250)
    now = T0 + 20 * DAY
    want = compute(events, now=now)
    assert want["orders"]["count"] > 0 and want["products_abandoned"] and want["consent"]
    for _ in range(25):
        shuffled = events + rng.sample(events, 20)  # redeliveries
        rng.shuffle(shuffled)
        assert compute(shuffled, now=now) == want
    assert json.loads(json.dumps(want)) == want


@pytest.mark.parametrize("seed", range(4))
def test_merging_two_profiles_equals_one_profile_with_all_the_events(seed):
    rng = random.Random(100 + seed)
    events = story(rng, 200)
    now = T0 + 30 * DAY
    a, b = [], []
    for e in events:
        (a if rng.random() < 0.5 else b).append(e)
    a += rng.sample(b, 5)  # both sides saw a few of the same events
    merged = compute(a + b, now=now)
    assert merged == compute(events, now=now)
    assert merged["orders"]["count"] <= compute(a, now=now)["orders"]["count"] + compute(b, now=now)["orders"]["count"]
    # a split is a recomputation of each side from its own events
    assert compute(list(reversed(a)), now=now) == compute(a, now=now)


def test_naive_times_are_utc():
    aware = ev("Home", T0, kind="page", eid="x")
    naive = Event("x", "page", "Home", T0.replace(tzinfo=None), {}, {}, WEB)
    assert compute([naive], now=T0.replace(tzinfo=None)) == compute([aware], now=T0)


# --- the simulator's world ------------------------------------------------------------------------


def _collected(msg: dict) -> events_pb2.EventCollected:
    """A Segment message as ingest puts it on the log (the fields compute reads)."""
    c = events_pb2.EventCollected(
        kind=msg["type"], message_id=msg["messageId"], user_id=msg.get("userId", ""),
        anonymous_id=msg.get("anonymousId", ""), event=msg.get("event", ""), name=msg.get("name", ""),
        properties_json=orjson.dumps(msg.get("properties") or {}).decode(),
        traits_json=orjson.dumps(msg.get("traits") or {}).decode(),
        context_json=orjson.dumps(msg.get("context") or {}).decode())
    c.timestamp.FromDatetime(datetime.fromisoformat(msg["timestamp"].replace("Z", "+00:00")).replace(tzinfo=None))
    return c


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("world")
    manifest = World.generate(people=800, days=45, seed=7).write(out)
    with open(out / "truth_events.csv", newline="") as f:
        owner = {r["message_id"]: r["person_id"] for r in csv.DictReader(f)}
    events: dict[str, list[Event]] = defaultdict(list)
    for line in (out / "events.jsonl").read_bytes().splitlines():
        msg = orjson.loads(line)
        events[owner[msg["messageId"]]].append(Event.from_collected(msg["messageId"], _collected(msg)))
    truth = [orjson.loads(line) for line in (out / "truth.jsonl").read_bytes().splitlines()]
    receipts = {rid: t["person_id"] for t in truth for rid in t["records"]["pos_receipt_ids"]}
    store_revenue: dict[str, Decimal] = defaultdict(Decimal)
    seen_receipts = set()
    with open(out / "pos_transactions.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["receipt_id"] not in seen_receipts:
                seen_receipts.add(row["receipt_id"])
                store_revenue[receipts[row["receipt_id"]]] += Decimal(row["receipt_total"])
    orders = {}
    for line in (out / manifest["files"]["shopify"]["orders/create"]).read_bytes().splitlines():
        body = orjson.loads(line)["body"]
        orders[body["id"]] = body
    now = datetime.fromisoformat(manifest["cutoff"]).replace(tzinfo=UTC)
    computed = {pid: compute(evs, now=now, settings=Settings(last_n=10_000)) for pid, evs in events.items()}
    return {"truth": truth, "events": events, "computed": computed, "store_revenue": store_revenue,
            "orders": orders, "now": now}


def test_the_worlds_orders_revenue_and_purchases_match_the_truth(world):
    """Per person, from their own Segment events only: orders and revenue equal the truth's
    observed figures less their store receipts (which reach the CDP as POS imports, not
    Segment calls), and the products bought equal their Shopify orders' line items."""
    buyers = checked = 0
    for t in world["truth"]:
        got = world["computed"].get(t["person_id"])
        if got is None:
            assert t["observed"]["events"] == 0
            continue
        checked += 1
        obs, rec = t["observed"], t["records"]
        assert got["orders"]["count"] == obs["orders"] - len(rec["pos_receipt_ids"]) == len(rec["shopify_order_ids"])
        assert Decimal(str(got["orders"]["revenue_total"])) == \
            Decimal(str(obs["revenue"])) - world["store_revenue"][t["person_id"]], t["person_id"]
        lines = {li["sku"] for oid in rec["shopify_order_ids"] for li in world["orders"][oid]["line_items"]}
        assert {p["sku"] for p in got["products_purchased"]} == lines
        buyers += got["orders"]["count"] > 0
    assert checked > 300 and buyers >= 20


def test_the_worlds_first_and_last_seen_consent_and_channels_match_the_truth(world):
    consent_changes = 0
    for t in world["truth"]:
        got = world["computed"].get(t["person_id"])
        if got is None:
            continue
        obs = t["observed"]
        if not t["records"]["pos_receipt_ids"]:  # store visits without an app leave no Segment event
            assert (got["first_seen"], got["last_seen"]) == (obs["first_seen"], obs["last_seen"])
        for channel in ("email", "sms", "whatsapp", "push"):
            if obs["consent_end"][channel] != t["traits"]["consent_start"][channel]:  # unsubscribed in the window
                consent_changes += 1
                assert got["consent"][channel]["granted"] is False
                assert got["consent"][channel]["source"].startswith("event:")
                assert got["channels"][channel]["events"] >= 2  # delivered, then unsubscribed
            else:
                assert channel not in got["consent"]
        if t["traits"]["app_user"] is False:
            assert "app" not in got["channels"] and "push" not in got["channels"]
    assert consent_changes >= 3


def test_the_worlds_people_get_every_kind_of_trait(world):
    """Each trait comes out for the simulated people (names and shapes of the real events)."""
    computed = world["computed"].values()

    def share(pred) -> float:
        return sum(1 for c in computed if pred(c)) / len(computed)

    assert share(lambda c: c["sessions"] > 0) > 0.7
    assert share(lambda c: c["products_viewed"]) > 0.5
    assert share(lambda c: c["products_abandoned"]) > 0.03
    assert share(lambda c: c["channels"].get("email", {}).get("engaged")) > 0.02
    for ch in ("email", "sms", "whatsapp", "push", "web", "app"):
        assert share(lambda c, ch=ch: ch in c["channels"]) > 0.01, ch
    assert share(lambda c: c["devices"] and c["operating_systems"]) > 0.7
    assert share(lambda c: (c["last_location"] or {}).get("source") == "device") > 0.02
    assert share(lambda c: c["preferred_hour"] and c["preferred_hour"]["timezone"] == "Europe/Madrid") > 0.7
    assert share(lambda c: all(c["top_affinities"].values())) > 0.5
    assert share(lambda c: c["nps"]) > 0
    assert share(lambda c: c["discount_share"]) > 0


def test_the_worlds_affinities_follow_the_peoples_tastes(world):
    """Not exact (tastes are latent), but a person's top category is mostly one of their 3
    preferred categories (of 15), for people with enough product interactions."""
    hits = n = 0
    for t in world["truth"]:
        got = world["computed"].get(t["person_id"])
        if got is None or len(got["products_viewed"]) < 5:
            continue
        n += 1
        hits += got["top_affinities"]["category"] in t["traits"]["preferred_categories"]
    assert n >= 30 and hits / n > 0.6


def test_the_worlds_traits_are_independent_of_event_order(world):
    rng = random.Random(5)
    busiest = sorted(world["events"], key=lambda p: -len(world["events"][p]))[:10]
    for pid in busiest:
        evs = list(world["events"][pid])
        rng.shuffle(evs)
        assert compute(evs, now=world["now"], settings=Settings(last_n=10_000)) == world["computed"][pid]


def test_module_file_is_pure():
    """No I/O or service imports in the computation module."""
    src = Path(__file__).resolve().parents[2].joinpath("src/cdp_profile/computed.py").read_text()
    for banned in ("import asyncpg", "import nats", "open(", "cdp_core", "requests", "socket"):
        assert banned not in src, banned


def _rank_every_value(scores: dict, n: int) -> dict:
    """The definition rank_affinities keeps: every value rounded, sorted, the first n."""
    out = {}
    for dim in computed_mod.AFFINITY_DIMENSIONS:
        ranked = sorted(((round(v, 4), k) for k, v in scores[dim].items() if v > 0), key=lambda x: (-x[0], x[1]))
        out[dim] = {k: v for v, k in [r for r in ranked if r[0] > 0][:n]}
    return out


def test_affinity_ranking_looks_only_at_values_that_can_rank_and_ranks_them_all_alike():
    rng = random.Random(5)
    for case in range(400):
        n = rng.choice([0, 1, 3, 5, 8])
        scores = {}
        for dim in computed_mod.AFFINITY_DIMENSIONS:
            base = rng.choice([1.0, 0.01, 1e-4, 3.5])
            # values crowded around the rounding's edges: ties after rounding, halves, zeros, negatives
            scores[dim] = {f"v{i}": rng.choice([base + rng.randint(-3, 3) * 5e-5 + rng.choice([0, 1e-12, -1e-12]),
                                                 rng.uniform(0, 2 * base), 0.0, 4e-5, -1.0, base])
                           for i in range(rng.randint(0, 40))}
        ranked, top = computed_mod.rank_affinities(scores, computed_mod.Settings(affinity_top_n=n))
        want = _rank_every_value(scores, n)
        assert ranked == want and list(ranked) == list(want), case
        assert all(list(ranked[d].items()) == list(want[d].items()) for d in want), case  # the same order
        assert top == {d: next(iter(want[d]), None) for d in want}
