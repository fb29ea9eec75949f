"""Shopify webhooks -> Segment calls: signature, topic mapping, ids, bad input.

Fixtures are hand-written from the webhook payloads Shopify documents for each topic."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cdp_core.errors import InvalidArgument
from cdp_ingest.connectors.shopify import calls_from_webhook, verify_hmac
from cdp_ingest.domain.calls import Source, accept

FIXTURES = Path(__file__).parent / "fixtures" / "shopify"
SHOP = "example-shop.myshopify.com"
SOURCE = Source("src_shop", "shop", "shopify")
NOW = datetime(2024, 3, 20, tzinfo=UTC)


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def one(topic: str, payload: dict, **kw):
    calls = calls_from_webhook(topic, payload, shop_domain=SHOP, **kw)
    assert len(calls) == 1
    call = calls[0]
    accepted = accept(call, SOURCE, NOW, new_id="unused")  # every mapped call is a valid Segment call
    assert accepted.event.message_id == call.message_id
    return call, accepted


# --- HMAC ----------------------------------------------------------------------------


def sign(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def test_hmac_good():
    body = (FIXTURES / "orders_create.json").read_bytes()
    assert verify_hmac("shpss_secret", body, sign("shpss_secret", body))


@pytest.mark.parametrize("header", ["", "not base64!!", sign("other", b"{}"), sign("shpss_secret", b"{} ")])
def test_hmac_bad(header):
    assert not verify_hmac("shpss_secret", b"{}", header)


def test_hmac_needs_a_secret():
    assert not verify_hmac("", b"{}", sign("", b"{}"))


# --- orders --------------------------------------------------------------------------


def test_order_completed():
    call, a = one("orders/create", load("orders_create"), webhook_id="w-1")
    assert call.kind == "track" and call.event == "Order Completed"
    assert call.user_id == ""
    assert call.anonymous_id == "shopify:115310627314723954"
    assert ("email", "jon@example.com") in call.identifiers
    assert ("phone", "+16135550199") in call.identifiers
    assert ("anonymous_id", "shopify:order:820982911946154508") in call.identifiers
    assert ("anonymous_id", "shopify:checkout:901414060") in call.identifiers
    p = call.properties
    assert p["order_id"] == "820982911946154508"
    assert p["checkout_id"] == "901414060"
    assert p["total"] == 403.0
    assert p["revenue"] == 393.0 and p["subtotal"] == 393.0
    assert p["tax"] == 0.0 and p["shipping"] == 10.0 and p["discount"] == 5.0
    assert p["coupon"] == "SPRING5" and p["currency"] == "USD"
    assert p["products"][0] == {"product_id": "632910392", "variant_id": "808950810", "sku": "IPOD2008PINK",
                                "name": "IPod Nano - 8GB", "variant": "Pink", "brand": "Apple", "price": 199.0,
                                "quantity": 1}
    assert len(p["products"]) == 2
    assert call.context["library"]["name"] == "cdp-shopify"
    assert call.context["shopify"] == {"shop_domain": SHOP, "topic": "orders/create"}
    assert call.context["traits"]["email"] == "jon@example.com"
    assert a.event.timestamp.ToDatetime(tzinfo=UTC) == datetime(2024, 3, 12, 14, 15, 3, tzinfo=UTC)


def test_orders_paid_is_the_same_order_completed():
    order = load("orders_create")
    created, _ = one("orders/create", order, webhook_id="w-1")
    paid_payload = dict(order, financial_status="paid", updated_at="2024-03-12T10:16:00-04:00")
    paid, _ = one("orders/paid", paid_payload, webhook_id="w-2")
    assert paid.event == "Order Completed"
    assert paid.message_id == created.message_id  # counted once, whichever arrives first


def test_guest_order_uses_order_anonymous_id_and_email():
    order = load("orders_create")
    del order["customer"]
    call, _ = one("orders/create", order)
    assert call.anonymous_id == "shopify:order:820982911946154508"
    assert ("email", "jon@example.com") in call.identifiers
    assert ("anonymous_id", "shopify:order:820982911946154508") not in call.identifiers


# --- customers -----------------------------------------------------------------------


def test_customer_identify():
    call, a = one("customers/update", load("customers_update"), webhook_id="w-9")
    assert call.kind == "identify"
    assert call.user_id == "" and call.anonymous_id == "shopify:706405506930370084"
    assert sorted(call.identifiers) == [("email", "bob@biller.com"), ("phone", "+13125551212")]
    t = call.traits
    assert t["email"] == "bob@biller.com" and t["phone"] == "+13125551212"
    assert t["firstName"] == "Bob" and t["lastName"] == "Biller"
    assert t["address"] == {"street": "151 O'Connor Street, Suite 400", "city": "Ottawa", "postalCode": "K2P 2L8",
                            "state": "ON", "country": "CA"}
    assert t["createdAt"] == "2024-01-05T09:30:00-05:00"
    assert t["shopify_customer_id"] == "706405506930370084"
    assert t["accepts_marketing"] is True and t["accepts_sms_marketing"] is False
    assert t["email_marketing_consent"]["state"] == "subscribed"
    assert t["tags"] == ["vip", "newsletter"]
    assert t["orders_count"] == 3 and t["total_spent"] == 120.5
    assert call.context["consent"] == {"categoryPreferences": {"email": True, "sms": False}}
    assert json.loads(a.event.traits_json)["firstName"] == "Bob"


def test_customer_create_legacy_accepts_marketing():
    c = load("customers_update")
    del c["email_marketing_consent"], c["sms_marketing_consent"], c["default_address"]
    c["accepts_marketing"] = False
    call, _ = one("customers/create", c)
    assert call.traits["accepts_marketing"] is False
    assert call.traits["address"]["city"] == "Ottawa"  # from the default entry of `addresses`
    assert "accepts_sms_marketing" not in call.traits


# --- checkouts -----------------------------------------------------------------------


def test_checkout_started():
    call, _ = one("checkouts/create", load("checkouts_create"))
    assert call.event == "Checkout Started"
    assert call.anonymous_id == "shopify:603851970716743426"
    assert ("anonymous_id", "shopify:checkout:981820079255243537") in call.identifiers
    p = call.properties
    assert p["checkout_id"] == "981820079255243537"
    assert p["value"] == 199.0 and p["revenue"] == 199.0 and p["currency"] == "USD"
    assert p["abandoned_checkout_url"].startswith("https://checkout.local/")
    assert p["products"][0]["sku"] == "IPOD2008PINK"
    assert "step" not in p


def test_checkout_update_steps():
    c = load("checkouts_create")
    c["updated_at"] = "2024-03-11T18:25:00-04:00"
    c["shipping_lines"] = [{"title": "Standard", "price": "5.00"}]
    call, _ = one("checkouts/update", c)
    assert call.event == "Checkout Step Completed"
    assert call.properties["step"] == 3 and call.properties["shipping_method"] == "Standard"
    assert call.properties["shipping"] == 5.0
    c["gateway"] = "shopify_payments"
    c["updated_at"] = "2024-03-11T18:27:00-04:00"
    later, _ = one("checkouts/update", c)
    assert later.properties["step"] == 4 and later.properties["payment_method"] == "shopify_payments"
    assert later.message_id != call.message_id  # each update is its own event


def test_guest_checkout_and_order_share_an_anonymous_id():
    c = load("checkouts_create")
    del c["customer"]
    checkout, _ = one("checkouts/create", c)
    order = load("orders_create")
    del order["customer"]
    order["checkout_id"] = c["id"]
    o, _ = one("orders/create", order)
    assert checkout.anonymous_id == "shopify:checkout:981820079255243537"
    assert ("anonymous_id", checkout.anonymous_id) in o.identifiers


# --- refunds -------------------------------------------------------------------------


def test_order_refunded():
    call, _ = one("refunds/create", load("refunds_create"))
    assert call.event == "Order Refunded"
    assert call.anonymous_id == "shopify:order:820982911946154508"  # the order event links it to the customer
    p = call.properties
    assert p["order_id"] == "820982911946154508" and p["refund_id"] == "890088186047892319"
    assert p["total"] == 199.0 and p["currency"] == "USD"
    assert p["products"] == [{"product_id": "632910392", "variant_id": "808950810", "sku": "IPOD2008PINK",
                              "name": "IPod Nano - 8GB", "variant": "Pink", "brand": "Apple", "price": 199.0,
                              "quantity": 1}]
    assert p["reason"] == "Things were damaged"


def test_refund_without_transactions_sums_the_lines():
    r = load("refunds_create")
    r["transactions"] = []
    call, _ = one("refunds/create", r)
    assert call.properties["total"] == 199.0


# --- ids -----------------------------------------------------------------------------


@pytest.mark.parametrize("topic,name", [("orders/create", "orders_create"), ("customers/update", "customers_update"),
                                        ("checkouts/create", "checkouts_create"),
                                        ("checkouts/update", "checkouts_create"), ("refunds/create", "refunds_create")])
def test_redelivery_is_the_same_message(topic, name):
    first = calls_from_webhook(topic, load(name), shop_domain=SHOP, webhook_id="w-42")[0]
    again = calls_from_webhook(topic, load(name), shop_domain=SHOP, webhook_id="w-42")[0]
    assert first.message_id == again.message_id
    other_shop = calls_from_webhook(topic, load(name), shop_domain="other.myshopify.com", webhook_id="w-42")[0]
    assert other_shop.message_id != first.message_id


def test_customer_updates_without_webhook_id_differ_by_updated_at():
    c = load("customers_update")
    a = calls_from_webhook("customers/update", c, shop_domain=SHOP)[0]
    b = calls_from_webhook("customers/update", dict(c, updated_at="2024-03-11T00:00:00Z"), shop_domain=SHOP)[0]
    assert a.message_id != b.message_id
    assert a.message_id == calls_from_webhook("customers/update", copy.deepcopy(c), shop_domain=SHOP)[0].message_id


# --- bad input -----------------------------------------------------------------------


def test_unsupported_topic():
    with pytest.raises(InvalidArgument) as e:
        calls_from_webhook("products/create", {"id": 1})
    assert e.value.field == "topic"


@pytest.mark.parametrize("topic,payload,field", [
    ("orders/create", {"line_items": []}, "payload.id"),
    ("orders/create", {"id": 1, "total_price": "12,00"}, "payload.total_price"),
    ("orders/create", {"id": 1, "line_items": "nope"}, "payload.line_items"),
    ("orders/create", {"id": 1, "line_items": [{"price": "x"}]}, "payload.line_items[0].price"),
    ("orders/create", {"id": 1, "customer": "c"}, "payload.customer"),
    ("customers/update", {"id": {"a": 1}}, "payload.id"),
    ("refunds/create", {"id": 5}, "payload.order_id"),
    ("checkouts/update", {"id": 1, "updated_at": 17}, "payload.updated_at"),
])
def test_malformed_payload_names_the_field(topic, payload, field):
    with pytest.raises(InvalidArgument) as e:
        calls_from_webhook(topic, payload)
    assert e.value.field == field


def test_payload_must_be_an_object():
    with pytest.raises(InvalidArgument) as e:
        calls_from_webhook("orders/create", [])  # type: ignore[arg-type]
    assert e.value.field == "payload"
