"""Ground truth consistent with every output; Segment, Shopify and CSV shapes."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections import defaultdict
from datetime import date, datetime

import orjson

from cdp_sim import normalize_email, normalize_phone
from cdp_sim.output import CRM_COLUMNS, POS_COLUMNS


def segment_identifiers(e: dict) -> list[tuple[str, str]]:
    ids = []
    if e.get("userId"):
        ids.append(("user_id", e["userId"]))
    if e.get("anonymousId"):
        ids.append(("anonymous_id", e["anonymousId"]))
    if e.get("previousId"):
        ids.append(("anonymous_id", e["previousId"]))
    for traits in (e.get("traits") or {}, e.get("context", {}).get("traits") or {}):
        if traits.get("email"):
            ids.append(("email", normalize_email(traits["email"])))
        if traits.get("phone"):
            ids.append(("phone", normalize_phone(traits["phone"])))
    dev = e.get("context", {}).get("device") or {}
    if dev.get("id"):
        ids.append(("device_id", dev["id"]))
    if dev.get("advertisingId"):
        ids.append(("advertising_id", dev["advertisingId"]))
    if dev.get("token"):
        ids.append(("push_token", dev["token"]))
    props = e.get("properties") or {}
    if isinstance(props.get("email"), str):
        ids.append(("email", normalize_email(props["email"])))
    if isinstance(props.get("phone"), str):
        ids.append(("phone", normalize_phone(props["phone"])))
    return ids


def webhook_identifiers(topic: str, body: dict) -> list[tuple[str, str]]:
    ids = []
    for k in ("email", "contact_email"):
        if body.get(k):
            ids.append(("email", normalize_email(body[k])))
    if body.get("phone"):
        ids.append(("phone", normalize_phone(body["phone"])))
    cust = body if topic.startswith("customers/") else body.get("customer")
    if cust:
        ids.append(("shopify_customer_id", str(cust["id"])))
        if cust.get("email"):
            ids.append(("email", normalize_email(cust["email"])))
    return ids


def test_truth_declares_sharing_exactly(out):
    holders = defaultdict(set)
    for t in out.truth:
        for i in t["identifiers"]:
            holders[(i["type"], i["value"])].add(t["person_id"])
    for t in out.truth:
        for i in t["identifiers"]:
            others = holders[(i["type"], i["value"])] - {t["person_id"]}
            if i.get("placeholder"):
                assert i["shared"] is True
            elif others:
                assert i.get("shared") is True and set(i["shared_with"]) == others, (t["person_id"], i)
            else:
                assert "shared" not in i, i
    # the collisions the simulator promises are really there
    assert any(i.get("placeholder") for t in out.truth for i in t["identifiers"])
    types = {i["type"] for t in out.truth for i in t["identifiers"] if i.get("shared_with")}
    assert {"anonymous_id", "email"} <= types
    assert any(i.get("variant_of") for t in out.truth for i in t["identifiers"])


def _declared(out):
    return {t["person_id"]: {(i["type"], i["value"]) for i in t["identifiers"]} for t in out.truth}


def test_every_event_identifier_belongs_to_its_person(out):
    declared = _declared(out)
    assert len(out.owner) == len(out.events)
    for e in out.events:
        pid = out.owner[e["messageId"]]
        for ident in segment_identifiers(e):
            assert ident in declared[pid], (pid, ident, e["type"], e.get("event"))


def test_every_webhook_identifier_belongs_to_its_people(out):
    declared = _declared(out)
    owners_of = defaultdict(set)
    for t in out.truth:
        r = t["records"]
        for k in ("shopify_order_ids", "shopify_customer_ids", "shopify_refund_ids"):
            for v in r[k]:
                owners_of[(k, v)].add(t["person_id"])
        for v in r["shopify_checkout_tokens"]:
            owners_of[("checkout", v)].add(t["person_id"])
    n = 0
    for topic, deliveries in out.hooks.items():
        for d in deliveries:
            body = d["body"]
            kind = topic.split("/")[0]
            key = ("checkout", body["token"]) if kind == "checkouts" else (
                {"orders": "shopify_order_ids", "customers": "shopify_customer_ids", "refunds": "shopify_refund_ids"}[kind],
                body["id"])
            owners = owners_of[key]
            assert owners, (topic, key)
            if topic.startswith("orders/") or topic == "refunds/create" or topic.startswith("checkouts/"):
                assert len(owners) == 1, (topic, key)
            for ident in webhook_identifiers(topic, body):
                assert any(ident in declared[p] for p in owners), (topic, ident)
            n += 1
    assert n > 100


def test_every_csv_identifier_belongs_to_its_person(out):
    declared = _declared(out)
    crm_owner = {c: t["person_id"] for t in out.truth for c in t["records"]["crm_ids"]}
    pos_owner = {c: t["person_id"] for t in out.truth for c in t["records"]["pos_receipt_ids"]}
    assert set(crm_owner) == {r["crm_id"] for r in out.crm}
    assert set(pos_owner) == {r["receipt_id"] for r in out.pos}
    for r in out.crm:
        pid = crm_owner[r["crm_id"]]
        assert ("crm_id", r["crm_id"]) in declared[pid]
        if r["email"]:
            assert ("email", normalize_email(r["email"])) in declared[pid], r
        if r["phone"]:
            assert ("phone", normalize_phone(r["phone"])) in declared[pid], r
        if r["loyalty_id"]:
            assert ("loyalty_id", r["loyalty_id"]) in declared[pid]
    for r in out.pos:
        pid = pos_owner[r["receipt_id"]]
        if r["customer_email"]:
            assert ("email", normalize_email(r["customer_email"])) in declared[pid], r
        if r["customer_phone"]:
            assert ("phone", normalize_phone(r["customer_phone"])) in declared[pid], r
        if r["loyalty_id"]:
            assert ("loyalty_id", r["loyalty_id"]) in declared[pid]


def test_truth_outcomes_and_counts(out):
    m = out.manifest
    assert m["cutoff"] == "2026-03-02" and m["seed"] == 11 and m["parameters"]["people"] == 2000
    assert m["counts"]["segment"] == len(out.events)
    assert sum(t["observed"]["events"] for t in out.truth) == len(out.events)
    orders_in_events = defaultdict(int)
    for e in out.events:
        if e.get("event") == "Order Completed":
            orders_in_events[out.owner[e["messageId"]]] += 1
    for t in out.truth:
        o = t["outcomes"]
        assert o["window_start"] == m["cutoff"] and o["window_end"] == m["horizon_end"]
        assert o["purchased"] == (o["orders"] > 0)
        assert (o["revenue"] > 0) == o["purchased"]
        assert not o["churned_in_window"] or o["alive_at_cutoff"]
        receipts = len(t["records"]["pos_receipt_ids"])
        assert t["observed"]["orders"] == orders_in_events[t["person_id"]] + receipts
        assert len(t["records"]["shopify_order_ids"]) == orders_in_events[t["person_id"]]


def test_segment_messages_have_the_spec_shape(out):
    prev = ""
    kinds = set()
    for e in out.events:
        kinds.add(e["type"])
        assert {"type", "messageId", "timestamp", "sentAt", "context", "integrations"} <= e.keys()
        assert e.get("userId") or e.get("anonymousId")
        assert e["timestamp"] >= prev
        prev = e["timestamp"]
        assert e["sentAt"] >= e["timestamp"]
        assert "library" in e["context"]
        if e["type"] == "track":
            assert isinstance(e["event"], str) and isinstance(e["properties"], dict)
        elif e["type"] == "identify":
            assert e["traits"]
        elif e["type"] == "group":
            assert e["groupId"].startswith("acct_") and e["traits"]["name"]
        elif e["type"] == "alias":
            assert e["previousId"] and e["userId"]
        elif e["type"] in ("page", "screen"):
            assert "properties" in e
    assert kinds == {"track", "identify", "page", "screen", "group", "alias"}
    names = {e.get("event") for e in out.events}
    for n in ("Products Searched", "Product List Viewed", "Product Viewed", "Product Added", "Cart Viewed",
              "Checkout Started", "Order Completed", "Signed Up", "Application Installed", "Application Opened",
              "Store Visited", "Email Delivered", "Email Opened", "Email Link Clicked", "Email Unsubscribed",
              "SMS Delivered", "SMS Link Clicked", "WhatsApp Delivered", "WhatsApp Opened",
              "Push Notification Received", "Push Notification Tapped", "Survey Completed"):
        assert n in names, n
    oc = next(e for e in out.events if e.get("event") == "Order Completed")
    p = oc["properties"]
    assert {"order_id", "checkout_id", "total", "revenue", "shipping", "tax", "discount", "coupon", "currency",
            "products"} <= p.keys()
    assert p["currency"] == "EUR" and p["products"] and {"product_id", "sku", "name", "price", "quantity",
                                                          "category", "brand"} <= p["products"][0].keys()
    app = next(e for e in out.events if e.get("event") == "Application Opened")
    assert {"app", "device", "os", "library", "locale", "ip"} <= app["context"].keys()
    web = next(e for e in out.events if e["type"] == "page")
    assert {"ip", "userAgent", "library", "locale", "page"} <= web["context"].keys()


ORDER_FIELDS = {"id", "admin_graphql_api_id", "name", "order_number", "email", "contact_email", "created_at", "updated_at",
                "processed_at", "currency", "total_price", "subtotal_price", "total_tax", "total_discounts",
                "total_line_items_price", "financial_status", "fulfillment_status", "confirmed", "test",
                "buyer_accepts_marketing", "customer", "billing_address", "shipping_address", "line_items",
                "discount_codes", "shipping_lines", "source_name", "browser_ip", "cart_token", "checkout_token",
                "token", "tags", "note_attributes", "payment_gateway_names", "customer_locale", "refunds"}
CUSTOMER_FIELDS = {"id", "email", "created_at", "updated_at", "first_name", "last_name", "orders_count", "state",
                   "total_spent", "last_order_id", "verified_email", "tax_exempt", "phone", "tags", "currency",
                   "addresses", "default_address", "email_marketing_consent", "sms_marketing_consent",
                   "admin_graphql_api_id"}
CHECKOUT_FIELDS = {"id", "token", "cart_token", "email", "created_at", "updated_at", "completed_at", "line_items",
                   "abandoned_checkout_url", "total_price", "subtotal_price", "total_tax", "total_discounts",
                   "currency", "customer", "discount_codes", "buyer_accepts_marketing"}
REFUND_FIELDS = {"id", "order_id", "created_at", "note", "processed_at", "restock", "refund_line_items", "transactions",
                 "order_adjustments", "admin_graphql_api_id"}
LINE_ITEM_FIELDS = {"id", "product_id", "variant_id", "title", "variant_title", "sku", "vendor", "quantity", "price",
                    "total_discount", "name", "requires_shipping", "taxable", "gift_card", "tax_lines"}


def test_shopify_payloads_have_shopifys_fields_and_valid_hmac(out):
    secret = out.manifest["shopify"]["webhook_secret"].encode()
    expected = {"orders": ORDER_FIELDS, "customers": CUSTOMER_FIELDS, "checkouts": CHECKOUT_FIELDS,
                "refunds": REFUND_FIELDS}
    for topic, deliveries in out.hooks.items():
        assert deliveries, topic
        for d in deliveries[:200]:
            h = d["headers"]
            assert h["X-Shopify-Topic"] == topic == d["topic"]
            assert h["X-Shopify-Shop-Domain"] == out.manifest["shopify"]["shop_domain"]
            assert {"X-Shopify-Webhook-Id", "X-Shopify-Triggered-At", "X-Shopify-API-Version", "X-Shopify-Event-Id"} <= h.keys()
            mac = base64.b64encode(hmac.new(secret, orjson.dumps(d["body"]), hashlib.sha256).digest()).decode()
            assert h["X-Shopify-Hmac-Sha256"] == mac
            body = d["body"]
            missing = expected[topic.split("/")[0]] - body.keys()
            assert not missing, (topic, missing)
            if topic.startswith("orders/"):
                assert LINE_ITEM_FIELDS <= body["line_items"][0].keys()
                assert CUSTOMER_FIELDS <= body["customer"].keys()
                assert isinstance(body["total_price"], str) and float(body["total_price"]) > 0
                datetime.fromisoformat(body["created_at"])
                assert body["financial_status"] == ("paid" if topic == "orders/paid" else "pending")


def test_csv_files_parse(out):
    with open(out.dir / "crm_contacts.csv", encoding="utf-8") as f:
        assert f.readline().strip().split(",") == CRM_COLUMNS
    with open(out.dir / "pos_transactions.csv", encoding="utf-8") as f:
        assert f.readline().strip().split(",") == POS_COLUMNS
    assert len(out.crm) > 500 and len(out.pos) > 100
    for r in out.crm:
        datetime.fromisoformat(r["created_at"])
        if r["birth_date"]:
            date.fromisoformat(r["birth_date"])
        assert r["email_opt_in"] in ("true", "false")
    for r in out.pos:
        datetime.fromisoformat(r["purchased_at"])
        assert int(r["quantity"]) >= 1
        assert abs(float(r["unit_price"]) * int(r["quantity"]) - float(r["line_discount"]) - float(r["line_total"])) < 0.011
    by_receipt = defaultdict(list)
    for r in out.pos:
        by_receipt[r["receipt_id"]].append(r)
    for rows in by_receipt.values():
        assert abs(sum(float(r["line_total"]) for r in rows) - float(rows[0]["receipt_total"])) < 0.011 * len(rows)
    # typos and nicknames are there: some POS names differ from the true ones
    truth_names = {(t["profile"]["first_name"], t["profile"]["last_name"]) for t in out.truth}
    named = [r for r in out.pos if r["customer_last_name"]]
    assert named and any((r["customer_first_name"], r["customer_last_name"]) not in truth_names for r in named)
