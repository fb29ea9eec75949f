"""Shopify webhook payloads (Admin API 2025-01 shapes, Shopify's real field names) and headers."""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson

API_VERSION = "2025-01"
TOPICS = ("orders/create", "orders/paid", "customers/create", "customers/update",
          "checkouts/create", "checkouts/update", "refunds/create")


def money(x: float) -> str:
    return f"{x:.2f}"


def sign(secret: str, body: bytes) -> str:
    """X-Shopify-Hmac-Sha256: base64 of HMAC-SHA256 of the raw body with the app's secret."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def headers(topic: str, shop: str, secret: str, webhook_id: str, event_id: str, triggered_at: str,
            body: bytes) -> dict:
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-API-Version": API_VERSION,
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Event-Id": event_id,
        "X-Shopify-Triggered-At": triggered_at,
        "X-Shopify-Hmac-Sha256": sign(secret, body),
    }


def webhook(topic: str, shop: str, secret: str, webhook_id: str, event_id: str, triggered_at: str,
            body: dict) -> dict:
    """One delivery as recorded: {"topic", "headers", "body"}; the HMAC covers orjson.dumps(body)."""
    raw = orjson.dumps(body)
    return {"topic": topic, "headers": headers(topic, shop, secret, webhook_id, event_id, triggered_at, raw),
            "body": body}


def address(first: str, last: str, street: str, city: str, zip_: str, phone: str | None,
            lat: float | None = None, lon: float | None = None, *, customer_id: int | None = None,
            address_id: int | None = None) -> dict:
    a = {
        "first_name": first, "last_name": last, "name": f"{first} {last}", "company": None,
        "address1": street, "address2": None, "city": city, "province": None, "province_code": None,
        "zip": zip_, "country": "Spain", "country_code": "ES", "country_name": "Spain", "phone": phone,
    }
    if address_id is not None:
        a = {"id": address_id, "customer_id": customer_id, **a, "default": True}
    else:
        a["latitude"] = lat
        a["longitude"] = lon
    return a


def consent(state: bool, at: str | None, *, sms: bool = False) -> dict:
    c = {"state": "subscribed" if state else "not_subscribed",
         "opt_in_level": "single_opt_in" if state else None,
         "consent_updated_at": at}
    if sms:
        c["consent_collected_from"] = "SHOPIFY"
    return c


def customer(*, cid: int, email: str | None, first: str, last: str, phone: str | None, created_at: str,
             updated_at: str, orders_count: int, total_spent: float, last_order_id: int | None,
             last_order_name: str | None, accepts_email: bool, accepts_sms: bool, state: str,
             addr: dict | None, currency: str, tags: str = "") -> dict:
    return {
        "id": cid,
        "email": email,
        "created_at": created_at,
        "updated_at": updated_at,
        "first_name": first,
        "last_name": last,
        "orders_count": orders_count,
        "state": state,
        "total_spent": money(total_spent),
        "last_order_id": last_order_id,
        "note": None,
        "verified_email": state == "enabled",
        "multipass_identifier": None,
        "tax_exempt": False,
        "tags": tags,
        "last_order_name": last_order_name,
        "currency": currency,
        "phone": phone,
        "addresses": [addr] if addr else [],
        "tax_exemptions": [],
        "email_marketing_consent": consent(accepts_email, created_at) if email else None,
        "sms_marketing_consent": consent(accepts_sms, created_at, sms=True) if phone else None,
        "admin_graphql_api_id": f"gid://shopify/Customer/{cid}",
        "default_address": addr,
    }


def line_item(*, lid: int, product: dict, product_num: int, variant_id: int, quantity: int, price: float,
              discount: float) -> dict:
    return {
        "id": lid,
        "admin_graphql_api_id": f"gid://shopify/LineItem/{lid}",
        "fulfillable_quantity": quantity,
        "fulfillment_service": "manual",
        "fulfillment_status": None,
        "gift_card": False,
        "grams": 400,
        "name": f"{product['name']} - {product['variant']}",
        "price": money(price),
        "product_exists": True,
        "product_id": product_num,
        "properties": [],
        "quantity": quantity,
        "requires_shipping": True,
        "sku": product["sku"],
        "taxable": True,
        "title": product["name"],
        "total_discount": money(discount),
        "variant_id": variant_id,
        "variant_inventory_management": "shopify",
        "variant_title": product["variant"],
        "vendor": product["brand"],
        "tax_lines": [{"price": money((price * quantity - discount) * 21 / 121), "rate": 0.21, "title": "IVA"}],
        "discount_allocations": [],
    }
