"""Shopify webhooks -> Segment calls (e-commerce spec v2 events and identify calls).

The HTTP edge verifies `X-Shopify-Hmac-Sha256` with `verify_hmac` over the raw body and the
source's webhook secret, then maps the JSON with `calls_from_webhook(topic, payload,
shop_domain=X-Shopify-Shop-Domain, webhook_id=X-Shopify-Webhook-Id)`.

| topic | call |
|---|---|
| orders/create, orders/paid | track "Order Completed" (one event per order: both topics share its messageId) |
| customers/create, customers/update | identify with Segment's reserved traits |
| checkouts/create | track "Checkout Started" |
| checkouts/update | track "Checkout Step Completed" (step inferred from what the buyer has filled in) |
| refunds/create | track "Order Refunded" |

Who: userId stays empty (Shopify knows no user id of ours). anonymousId is
`shopify:<customer id>` when the payload has a customer, else a stable id of the order
(`shopify:order:<id>`) or checkout (`shopify:checkout:<id>`). Email and phone go in
`identifiers`, so identity links the Shopify customer to the same person seen elsewhere.
Orders also carry their order and checkout anonymous ids as identifiers, so a refund
(whose payload names only the order) and an abandoned-then-completed guest checkout land on
the customer's profile.

docs/connectors.md has the full property mapping.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from cdp_core.errors import InvalidArgument

from ..domain.calls import Call

LIBRARY = {"name": "cdp-shopify", "version": "1"}
TOPICS = ("orders/create", "orders/paid", "customers/create", "customers/update", "checkouts/create",
          "checkouts/update", "refunds/create")
_NS = uuid.UUID("6f1c1b7e-5c1a-4b0e-9d43-2f4f3e6d8a10")


def verify_hmac(secret: str, body: bytes, header_value: str) -> bool:
    """True when `header_value` (X-Shopify-Hmac-Sha256) is the base64 HMAC-SHA256 of the raw
    body under the shop's secret. Constant-time; False for a missing or malformed header."""
    if not secret or not header_value:
        return False
    try:
        given = base64.b64decode(header_value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return hmac.compare_digest(expected, given)


# --- helpers -------------------------------------------------------------------------


def _field(name: str) -> str:
    return f"payload.{name}"


def _id(payload: dict, key: str = "id", *, required: bool = True) -> str:
    v = payload.get(key)
    if v is None or v == "":
        if required:
            raise InvalidArgument("is required", field=_field(key))
        return ""
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise InvalidArgument(f"must be an integer or a string, not {type(v).__name__}", field=_field(key))
    return str(v)


def _money(value: Any, where: str) -> float | None:
    """Shopify sends amounts as decimal strings ("19.99"); None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidArgument(f"must be a decimal amount, not {type(value).__name__}", field=_field(where))
    try:
        d = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidArgument("is not a decimal amount", field=_field(where)) from None
    if not d.is_finite():
        raise InvalidArgument("is not a finite amount", field=_field(where))
    return float(d)


def _obj(payload: dict, key: str) -> dict:
    v = payload.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise InvalidArgument(f"must be an object, not {type(v).__name__}", field=_field(key))
    return v


def _list(payload: dict, key: str) -> list:
    v = payload.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        raise InvalidArgument(f"must be a list, not {type(v).__name__}", field=_field(key))
    return v


def _str(v: Any) -> str:
    return "" if v is None else str(v).strip()


def _compact(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None and v != "" and v != [] and v != {}}


def _message_id(shop_domain: str, *parts: str) -> str:
    return "shopify-" + str(uuid.uuid5(_NS, "\x1f".join([shop_domain, *parts])))


def _when(payload: dict, *keys: str) -> str | None:
    for k in keys:
        v = payload.get(k)
        if v:
            if not isinstance(v, str):
                raise InvalidArgument("must be an ISO-8601 date-time string", field=_field(k))
            return v
    return None


def _shop_money(payload: dict, key: str) -> float | None:
    """An amount from a `*_set` object ({"shop_money": {"amount": ...}})."""
    s = payload.get(key)
    if isinstance(s, dict) and isinstance(s.get("shop_money"), dict):
        return _money(s["shop_money"].get("amount"), f"{key}.shop_money.amount")
    return None


def _address(a: dict) -> dict:
    """A Shopify address -> Segment's reserved address trait."""
    street = ", ".join(x for x in (_str(a.get("address1")), _str(a.get("address2"))) if x)
    return _compact({
        "street": street,
        "city": _str(a.get("city")),
        "postalCode": _str(a.get("zip")),
        "state": _str(a.get("province_code")) or _str(a.get("province")),
        "country": _str(a.get("country_code")) or _str(a.get("country")),
    })


def _product(item: Any, where: str, quantity: Any = None) -> dict:
    if not isinstance(item, dict):
        raise InvalidArgument(f"must be an object, not {type(item).__name__}", field=_field(where))
    q = item.get("quantity") if quantity is None else quantity
    if q is not None and (isinstance(q, bool) or not isinstance(q, int)):
        raise InvalidArgument("must be an integer", field=_field(f"{where}.quantity"))
    return _compact({
        "product_id": _str(item.get("product_id")),
        "variant_id": _str(item.get("variant_id")),
        "sku": _str(item.get("sku")),
        "name": _str(item.get("title")) or _str(item.get("name")),
        "variant": _str(item.get("variant_title")),
        "brand": _str(item.get("vendor")),
        "price": _money(item.get("price"), f"{where}.price"),
        "quantity": q,
    })


def _products(items: list, where: str) -> list[dict]:
    return [_product(item, f"{where}[{i}]") for i, item in enumerate(items)]


class _Who:
    """The person behind a payload: anonymousId, identifiers and context.traits."""

    def __init__(self, payload: dict, fallback_anonymous_id: str):
        customer = _obj(payload, "customer")
        self.customer_id = _id(customer, "id", required=False) if customer else ""
        self.email = _str(payload.get("email")) or _str(payload.get("contact_email")) or _str(customer.get("email"))
        billing = _obj(payload, "billing_address")
        shipping = _obj(payload, "shipping_address")
        self.phone = (_str(customer.get("phone")) or _str(payload.get("phone")) or _str(billing.get("phone"))
                      or _str(shipping.get("phone")))
        self.first_name = _str(customer.get("first_name")) or _str(billing.get("first_name"))
        self.last_name = _str(customer.get("last_name")) or _str(billing.get("last_name"))
        self.anonymous_id = f"shopify:{self.customer_id}" if self.customer_id else fallback_anonymous_id
        self.identifiers: list[tuple[str, str]] = []
        if self.email:
            self.identifiers.append(("email", self.email))
        if self.phone:
            self.identifiers.append(("phone", self.phone))
        if self.anonymous_id != fallback_anonymous_id:
            self.identifiers.append(("anonymous_id", fallback_anonymous_id))

    def traits(self) -> dict:
        return _compact({"email": self.email, "phone": self.phone, "firstName": self.first_name,
                         "lastName": self.last_name, "shopify_customer_id": self.customer_id})


def _context(shop_domain: str, topic: str, payload: dict, traits: dict | None = None) -> dict:
    ctx: dict = {"library": dict(LIBRARY), "shopify": _compact({"shop_domain": shop_domain, "topic": topic})}
    if traits:
        ctx["traits"] = traits
    ip = _str(payload.get("browser_ip"))
    if ip:
        ctx["ip"] = ip
    locale = _str(payload.get("customer_locale"))
    if locale:
        ctx["locale"] = locale
    return ctx


def _totals(payload: dict) -> dict:
    """Order-level amounts shared by orders and checkouts (Segment e-commerce v2 names)."""
    shipping = _shop_money(payload, "total_shipping_price_set")
    if shipping is None:
        lines = _list(payload, "shipping_lines")
        amounts = [_money(line.get("price"), f"shipping_lines[{i}].price")
                   for i, line in enumerate(lines) if isinstance(line, dict)]
        shipping = float(sum(Decimal(str(a)) for a in amounts if a is not None)) if lines else None
    codes = []
    for i, d in enumerate(_list(payload, "discount_codes")):
        if not isinstance(d, dict):
            raise InvalidArgument("must be an object", field=_field(f"discount_codes[{i}]"))
        if _str(d.get("code")):
            codes.append(_str(d.get("code")))
    subtotal = _money(payload.get("subtotal_price"), "subtotal_price")
    return _compact({
        "total": _money(payload.get("total_price"), "total_price"),
        "revenue": subtotal,  # excluding shipping and tax, after discounts
        "subtotal": subtotal,
        "tax": _money(payload.get("total_tax"), "total_tax"),
        "shipping": shipping,
        "discount": _money(payload.get("total_discounts"), "total_discounts"),
        "coupon": ",".join(codes),
        "currency": _str(payload.get("currency")),
    })


# --- topics --------------------------------------------------------------------------


def _order(topic: str, p: dict, shop: str, webhook_id: str) -> list[Call]:
    order_id = _id(p)
    who = _Who(p, f"shopify:order:{order_id}")
    checkout_id = _id(p, "checkout_id", required=False)
    if checkout_id:
        who.identifiers.append(("anonymous_id", f"shopify:checkout:{checkout_id}"))
    props = _compact({
        "order_id": order_id,
        "checkout_id": checkout_id,
        "order_number": _str(p.get("order_number")) or _str(p.get("name")),
        **_totals(p),
        "products": _products(_list(p, "line_items"), "line_items"),
        "financial_status": _str(p.get("financial_status")),
        "source_name": _str(p.get("source_name")),
        "shopify_customer_id": who.customer_id,
        "test": p.get("test") if isinstance(p.get("test"), bool) else None,
    })
    # orders/create and orders/paid describe one order: one "Order Completed" (the first to
    # arrive), so revenue is never counted twice; a redelivery is the same event.
    return [Call(
        kind="track", event="Order Completed",
        message_id=_message_id(shop, "Order Completed", order_id),
        anonymous_id=who.anonymous_id, identifiers=who.identifiers, properties=props,
        context=_context(shop, topic, p, who.traits()),
        timestamp=_when(p, "processed_at", "created_at", "updated_at"),
    )]


def _customer(topic: str, p: dict, shop: str, webhook_id: str) -> list[Call]:
    customer_id = _id(p)
    email = _str(p.get("email"))
    phone = _str(p.get("phone"))
    address = _obj(p, "default_address")
    if not address:
        addresses = [a for a in _list(p, "addresses") if isinstance(a, dict)]
        address = next((a for a in addresses if a.get("default")), addresses[0] if addresses else {})
    email_consent = _obj(p, "email_marketing_consent")
    sms_consent = _obj(p, "sms_marketing_consent")
    if email_consent:
        accepts = _str(email_consent.get("state")) == "subscribed"
    elif isinstance(p.get("accepts_marketing"), bool):
        accepts = p["accepts_marketing"]
    else:
        accepts = None
    accepts_sms = _str(sms_consent.get("state")) == "subscribed" if sms_consent else None
    tags = [t.strip() for t in _str(p.get("tags")).split(",") if t.strip()]
    traits = _compact({
        "email": email,
        "phone": phone,
        "firstName": _str(p.get("first_name")),
        "lastName": _str(p.get("last_name")),
        "address": _address(address) if address else None,
        "createdAt": _str(p.get("created_at")),
        "shopify_customer_id": customer_id,
        "accepts_marketing": accepts,
        "accepts_sms_marketing": accepts_sms,
        "email_marketing_consent": _compact({k: email_consent.get(k) for k in
                                              ("state", "opt_in_level", "consent_updated_at")}),
        "sms_marketing_consent": _compact({k: sms_consent.get(k) for k in
                                            ("state", "opt_in_level", "consent_updated_at")}),
        "orders_count": p.get("orders_count") if isinstance(p.get("orders_count"), int) else None,
        "total_spent": _money(p.get("total_spent"), "total_spent"),
        "currency": _str(p.get("currency")),
        "tags": tags,
        "state": _str(p.get("state")),
        "verified_email": p.get("verified_email") if isinstance(p.get("verified_email"), bool) else None,
    })
    ctx = _context(shop, topic, p)
    consent = _compact({"email": accepts, "sms": accepts_sms})
    if consent:
        ctx["consent"] = {"categoryPreferences": consent}  # Segment's consent context
    identifiers = [(t, v) for t, v in (("email", email), ("phone", phone)) if v]
    version = webhook_id or _str(p.get("updated_at")) or _str(p.get("created_at"))
    return [Call(
        kind="identify",
        message_id=_message_id(shop, topic, customer_id, version),
        anonymous_id=f"shopify:{customer_id}", identifiers=identifiers, traits=traits, context=ctx,
        timestamp=_when(p, "updated_at", "created_at"),
    )]


def _checkout_step(p: dict) -> tuple[int, dict]:
    """Segment's checkout steps: 1 cart, 2 contact and address, 3 shipping method, 4 payment."""
    shipping_lines = [s for s in _list(p, "shipping_lines") if isinstance(s, dict)]
    method = _str(shipping_lines[0].get("title")) if shipping_lines else ""
    payment = _str(p.get("gateway"))
    if payment:
        return 4, _compact({"shipping_method": method, "payment_method": payment})
    if shipping_lines:
        return 3, _compact({"shipping_method": method})
    if _obj(p, "shipping_address") or _str(p.get("email")):
        return 2, {}
    return 1, {}


def _checkout(topic: str, p: dict, shop: str, webhook_id: str) -> list[Call]:
    checkout_id = _id(p)
    who = _Who(p, f"shopify:checkout:{checkout_id}")
    props = _compact({
        "checkout_id": checkout_id,
        "cart_id": _str(p.get("cart_token")),
        "order_id": _str(p.get("order_id")),
        **_totals(p),
        "value": _money(p.get("total_price"), "total_price"),
        "products": _products(_list(p, "line_items"), "line_items"),
        "abandoned_checkout_url": _str(p.get("abandoned_checkout_url")),
        "shopify_customer_id": who.customer_id,
    })
    if topic == "checkouts/create":
        event = "Checkout Started"
        version = "create"
    else:
        event = "Checkout Step Completed"
        step, extra = _checkout_step(p)
        props.update(step=step, **extra)
        if p.get("completed_at"):
            props["completed"] = True
        version = webhook_id or _str(p.get("updated_at"))
    return [Call(
        kind="track", event=event,
        message_id=_message_id(shop, topic, checkout_id, version),
        anonymous_id=who.anonymous_id, identifiers=who.identifiers, properties=props,
        context=_context(shop, topic, p, who.traits()),
        timestamp=_when(p, "updated_at", "created_at") if topic == "checkouts/update"
        else _when(p, "created_at", "updated_at"),
    )]


def _refund(topic: str, p: dict, shop: str, webhook_id: str) -> list[Call]:
    refund_id = _id(p)
    order_id = _id(p, "order_id")
    products, total, currency = [], Decimal(0), ""
    refunded_by_transactions = False
    for i, t in enumerate(_list(p, "transactions")):
        if not isinstance(t, dict):
            raise InvalidArgument("must be an object", field=_field(f"transactions[{i}]"))
        if _str(t.get("kind")) == "refund" and _str(t.get("status")) in ("success", ""):
            amount = _money(t.get("amount"), f"transactions[{i}].amount")
            if amount is not None:
                total += Decimal(str(t.get("amount")))
                refunded_by_transactions = True
            currency = currency or _str(t.get("currency"))
    line_total = Decimal(0)
    for i, r in enumerate(_list(p, "refund_line_items")):
        where = f"refund_line_items[{i}]"
        if not isinstance(r, dict):
            raise InvalidArgument("must be an object", field=_field(where))
        products.append(_product(r.get("line_item") or {}, f"{where}.line_item", r.get("quantity")))
        for key in ("subtotal", "total_tax"):
            a = _money(r.get(key), f"{where}.{key}")
            if a is not None:
                line_total += Decimal(str(r.get(key)))
        s = r.get("subtotal_set")
        if not currency and isinstance(s, dict) and isinstance(s.get("shop_money"), dict):
            currency = _str(s["shop_money"].get("currency_code"))
    props = _compact({
        "order_id": order_id,
        "refund_id": refund_id,
        "total": float(total if refunded_by_transactions else line_total),
        "currency": currency,
        "products": products,
        "reason": _str(p.get("note")),
    })
    return [Call(
        kind="track", event="Order Refunded",
        message_id=_message_id(shop, topic, refund_id),
        anonymous_id=f"shopify:order:{order_id}", properties=props,
        context=_context(shop, topic, p),
        timestamp=_when(p, "processed_at", "created_at"),
    )]


_HANDLERS = {
    "orders/create": _order, "orders/paid": _order,
    "customers/create": _customer, "customers/update": _customer,
    "checkouts/create": _checkout, "checkouts/update": _checkout,
    "refunds/create": _refund,
}


def calls_from_webhook(topic: str, payload: dict, *, shop_domain: str = "", webhook_id: str = "") -> list[Call]:
    """The Segment calls of one Shopify webhook delivery (X-Shopify-Topic, the JSON body).

    Raises InvalidArgument naming the field for an unsupported topic or a malformed payload.
    A redelivery (same webhook id, or the same object at the same updated_at) gives the
    same messageIds, so it is one event in the log."""
    handler = _HANDLERS.get(topic)
    if handler is None:
        raise InvalidArgument(f"unsupported Shopify topic; supported: {', '.join(TOPICS)}", field="topic")
    if not isinstance(payload, dict):
        raise InvalidArgument(f"must be a JSON object, not {type(payload).__name__}", field="payload")
    return handler(topic, payload, shop_domain.strip().lower(), webhook_id.strip())
