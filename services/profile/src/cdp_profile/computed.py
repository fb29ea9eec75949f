"""The built-in computed traits of a profile, computed exactly from the profile's events.

Pure (no I/O): `compute(events, now=...)` takes every event the profile service keeps of a
person and returns a JSON-serialisable dict. It is a function of the *set* of events (and
`now`): events are de-duplicated by event id and sorted by (event time, event id) before
anything is summed, so any arrival order, a merge (the union of two profiles' events), a
split or a rebuild gives the same answer, bit for bit. Nothing is approximated by adding
up partial results.

Times in the output are ISO 8601 UTC strings with milliseconds (`2026-01-05T20:14:03.120Z`);
money is a float holding an exact decimal sum (no currency conversion: amounts are summed
as sent).

The traits (keys of the returned dict):

`first_seen`, `last_seen`
    Time of the person's first and last event of any kind (None without events).

`sessions`
    Number of web and app visits: the person's own client-side events (page, screen, and
    track/identify calls sent by a browser or app SDK) split wherever two consecutive ones
    are more than `Settings.session_gap` apart (a gap of exactly `session_gap` does not
    split). Server-side events (campaign deliveries, Shopify, CRM, POS) are not visits.

`products_viewed`, `products_added`, `products_purchased`, `products_abandoned`
    The last `Settings.last_n` distinct products, newest first, each
    `{product_id, sku, name, category, brand, price, at}` (`at`: when it was last viewed /
    added / bought / added before being abandoned). A product is known by its sku, else its
    product_id, else its name; fields missing from its newest mention are filled from older
    ones. Viewed = "Product Viewed"; added = "Product Added"; purchased = the products of
    the person's orders (see `orders` for how an order reported twice counts once).
    Abandoned: judged on the product's latest "Product Added" (at time t). Once
    `Settings.abandon_window` has passed (now >= t + window; before that it is still in the
    cart, not abandoned), it is abandoned unless an "Order Completed" containing it (same
    sku or product_id) came at or after t — within the window, or later: a product bought
    after it was abandoned leaves the list — or a "Product Removed" of it came at or after
    t. Adding it again restarts the judgement from the new add.

`products_in_cart`
    The products still in the cart, whatever the time: those whose latest "Product Added"
    (at time t, the item's `at`) has no "Order Completed" containing it and no "Product
    Removed" of it at or after t; newest first, at most `Settings.cart_limit` (50), fields
    as above. Unlike `products_abandoned` it does not depend on when it is read, so a
    reader with a clock (the segment service's `cart-abandoners`) judges abandonment itself:
    an item is abandoned once `at + abandon_window` has passed.

`orders`
    `{count, revenue_total, revenue_avg, first_order_at, last_order_at,
    days_since_last_order, refunded_total}` from "Order Completed" events. One order is
    counted once however many events report it: events with the same `order_id` are one
    order (the web/app tracking call and Shopify's webhook, a re-export of a POS receipt);
    an event without an order_id is its own order. An order's amount is what the customer
    paid: its `total`, else `revenue`, else `value`, else the sum of its products'
    price x quantity, taken from the richest report of the order (the one whose products
    carry the most fields; ties: earliest). `revenue_avg` = total / count (2 decimals),
    `days_since_last_order` = whole days from the last order to `now`. Refunds
    ("Order Refunded", one per refund_id) are summed in `refunded_total` and not taken off
    the revenue.

`discount_share`
    Share of orders (as counted above) that used a discount: any report of the order
    names a coupon, or has a positive discount, or a product with a coupon or a positive
    discount. None without orders.

`channels`
    `{channel: {engaged, last_engagement_at, events}}` for every channel the person was
    seen on: `email`, `sms`, `whatsapp`, `push` (by the event name: "Email Opened",
    "SMS Link Clicked", "Push Notification Tapped", …, or the source's kind), `web`
    (browser SDK calls, pages), `app` (mobile SDK calls, screens), `store` (POS receipts,
    "Store Visited", orders with a store_id). `events` counts every event on the channel;
    `engaged` is true once the person acted on it: for messaging channels an open, click,
    tap, reply or read (a delivery or bounce is not engagement), for web, app and store
    any event. `last_engagement_at` is the time of the last such action.
    Shopify's order and checkout webhooks count on the channel their `source_name` names
    (web; iphone/android -> app; pos -> store).

`devices`
    Distinct kinds of device (type, manufacturer, model), newest first: `{type
    (mobile|tablet|desktop), manufacturer, model, events, last_seen_at}`, from
    `context.device` (apps) or the browser's `userAgent` (desktop browsers give no model).

`operating_systems`, `browsers`
    Distinct operating systems (`context.os`, else the userAgent) and web browsers (from
    the userAgent), newest first: `{name, version, last_seen_at, events}` (version: the
    latest seen).

`last_location`
    The person's last known location and where it came from (`source`):
    `"device"` — the latest `context.location` (latitude/longitude/city/country, from an
    app or a geofence); else `"address"` — the latest address trait (`traits.address`
    of an identify call, else `context.traits.address` of another call, e.g. a till
    receipt); else `"ip"` — the latest `context.ip` (not geolocated here). Always has `at`.
    None when nothing is known.

`preferred_hour`
    `{hour, timezone}`: the hour of day (0-23) with the most activity — visits (counted at
    their start), opens/clicks/taps on messages and store events — in the person's
    timezone: the latest `context.timezone` their devices report, else
    `Settings.default_timezone` (UTC). Ties go to the earlier hour. None without activity.

`affinities`, `top_affinities`
    `affinities`: `{category|brand|colour|size|price_band: {value: score}}`, the top
    `Settings.affinity_top_n` values of each, highest first. Every product viewed, added to
    cart or bought adds `view_weight` (1) / `add_weight` (3) / `purchase_weight` (5)
    times 0.5 ** (age in days / `affinity_half_life_days`), age taken at `now`. Colour and
    size come from the product's `colour`/`color`/`size` properties, else its variant
    ("Black / M"); the price band from a `price_band` property, else its price against
    `Settings.price_bands` (below 25 budget, below 75 mid, else premium). Scores are
    rounded to 4 decimals. `top_affinities`: the best value of each (None when none).

`nps`
    The latest NPS answer: `{score, category (promoter 9-10, passive 7-8, detractor 0-6),
    at}`, from "Survey Completed"-style events of an NPS survey (`survey_type` "nps" or an
    NPS survey id, or an event name mentioning NPS) with a `score` of 0-10. None if none.

`consent`
    `{channel or purpose: {granted, at, source}}`, last writer wins by event time:
    traits `email_opt_in`, `sms_opt_in`, `whatsapp_opt_in`, `push_opt_in` (any
    `<x>_opt_in` / `<x>_optin` / `<x>_consent` boolean), Shopify's `accepts_marketing`
    (email), `accepts_sms_marketing` (sms), `email_marketing_consent.state` /
    `sms_marketing_consent.state`; Segment's consent context
    (`context.consent.categoryPreferences`, any purpose); and events:
    "<Channel> Unsubscribed" / "Marked as Spam" revoke, "<Channel> Subscribed" /
    "Resubscribed" / "Opted In" grant. `source` says which (`trait:email_opt_in`,
    `context.consent`, `event:Email Unsubscribed`). Keys are lower case.
"""

from __future__ import annotations

import heapq
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

AFFINITY_DIMENSIONS = ("category", "brand", "colour", "size", "price_band")
CHANNEL_NAMES = ("email", "sms", "whatsapp", "push", "web", "app", "store")
MESSAGING = ("email", "sms", "whatsapp", "push")
PRODUCT_FIELDS = ("product_id", "sku", "name", "category", "brand", "price")


@dataclass(frozen=True)
class Event:
    """What the profile service keeps of each resolved event."""

    event_id: str
    kind: str  # track, identify, page, screen, group, alias
    name: str  # track: the event name; page/screen: the page or screen name
    occurred_at: datetime
    properties: Mapping = field(default_factory=dict)
    traits: Mapping = field(default_factory=dict)
    context: Mapping = field(default_factory=dict)
    source_kind: str = ""  # web, app, server, shopify, crm, pos, email, sms, whatsapp, push, survey, ...

    @classmethod
    def from_collected(cls, event_id: str, ev) -> Event:
        """From a `cdp.ingest.v1.EventCollected`. JSON fields that do not parse to an object
        become {}; the time is the corrected timestamp, else the client's, else arrival."""
        when = None
        for name in ("timestamp", "original_timestamp", "received_at"):
            ts = getattr(ev, name, None)
            if ts is not None and (ts.seconds or ts.nanos):
                when = ts.ToDatetime(tzinfo=UTC)
                break
        kind = ev.kind or "track"
        return cls(
            event_id=event_id,
            kind=kind,
            name=(ev.event or ev.name) if kind == "track" else (ev.name or ev.event),
            occurred_at=when or datetime(1970, 1, 1, tzinfo=UTC),
            properties=_json_object(ev.properties_json),
            traits=_json_object(ev.traits_json),
            context=_json_object(ev.context_json),
            source_kind=getattr(ev, "source_kind", "") or "",
        )


@dataclass(frozen=True)
class Settings:
    last_n: int = 10
    abandon_window: timedelta = timedelta(hours=24)
    cart_limit: int = 50  # products_in_cart keeps the newest this many
    affinity_half_life_days: float = 30.0
    session_gap: timedelta = timedelta(minutes=30)
    view_weight: float = 1.0
    add_weight: float = 3.0
    purchase_weight: float = 5.0
    affinity_top_n: int = 5
    # (upper bound exclusive, label) in increasing order; prices at or above the last bound
    # get `top_price_band`.
    price_bands: tuple[tuple[float, str], ...] = ((25.0, "budget"), (75.0, "mid"))
    top_price_band: str = "premium"
    default_timezone: str = "UTC"


# --- reading free-form JSON defensively ---------------------------------------------------


def _json_object(text) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _obj(m, key) -> Mapping:
    if type(m) is not dict and not isinstance(m, Mapping):
        return {}
    v = m.get(key)
    return v if type(v) is dict or isinstance(v, Mapping) else {}


def _str(v) -> str | None:
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, (int, float, Decimal)):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return str(v)
    if isinstance(v, str):
        v = v.strip()
        return v or None
    return None


def _dec(v) -> Decimal | None:
    """A finite amount from a number or a numeric string."""
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, (int, float, str, Decimal)):
        try:
            d = Decimal(str(v).strip())
        except (InvalidOperation, ValueError):
            return None
        return d if d.is_finite() else None
    return None


def _bool(v) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        s = v.strip().lower()
        if s in ("true", "yes", "y", "1", "subscribed", "granted", "opted_in"):
            return True
        if s in ("false", "no", "n", "0", "unsubscribed", "not_subscribed", "denied", "opted_out"):
            return False
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    return None


def _iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _money(d: Decimal) -> float:
    return float(d)


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        return None


# --- events in canonical order ------------------------------------------------------------


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _canonical(events: Iterable[Event]) -> list[Event]:
    """De-duplicated by event id, sorted by (time, event id). Two different payloads under
    one id (should not happen) resolve to the same one whatever their order."""
    by_id: dict[str, list[Event]] = {}
    for e in events:
        if e.occurred_at.tzinfo is None:
            e = _with_time(e, _aware(e.occurred_at))
        by_id.setdefault(e.event_id, []).append(e)
    chosen = [v[0] if len(v) == 1 else min(v, key=_payload_key) for v in by_id.values()]
    return sorted(chosen, key=lambda e: (e.occurred_at, e.event_id))


def _payload_key(e: Event) -> tuple:
    return (e.occurred_at, e.kind, e.name, _dump(e.properties), _dump(e.traits), _dump(e.context), e.source_kind)


def _with_time(e: Event, at: datetime) -> Event:
    return Event(e.event_id, e.kind, e.name, at, e.properties, e.traits, e.context, e.source_kind)


def _dump(m) -> str:
    try:
        return json.dumps(m, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(m)


# --- channels ---------------------------------------------------------------------------

_MSG_PREFIX = [
    (re.compile(r"^(e-?mail)\b", re.I), "email"),
    (re.compile(r"^(sms|text message)\b", re.I), "sms"),
    (re.compile(r"^whats ?app\b", re.I), "whatsapp"),
    (re.compile(r"^push\b", re.I), "push"),
]
_ENGAGED_WORDS = re.compile(r"\b(opened|clicked|tapped|replied|read)\b", re.I)
_WEB_LIBS = ("analytics.js", "analytics-next", "@segment/analytics-next", "analytics-js", "analytics.js-next")
_APP_LIB_HINTS = ("ios", "android", "swift", "kotlin", "react-native", "flutter", "xamarin", "unity")
_SERVER_LIBS = ("cdp-shopify", "cdp-import")


def _message_channel(name: str) -> str | None:
    for rx, ch in _MSG_PREFIX:
        if rx.match(name):
            return ch
    return None


@dataclass
class _Class:
    channel: str | None
    engaged: bool
    client: bool = False  # the person's own web/app activity (counts for visits)
    copy: bool = False  # a system's record of activity tracked elsewhere too (Shopify): not activity


def _classify(e: Event) -> _Class:
    ctx = e.context
    lib = (_str(_obj(ctx, "library").get("name")) or "").lower()
    sk = e.source_kind.lower()
    if e.kind == "track":
        ch = _message_channel(e.name)
        if ch is None and sk in MESSAGING and e.name:
            ch = sk
        if ch is not None:
            return _Class(ch, bool(_ENGAGED_WORDS.search(e.name)), False)
    if lib == "cdp-shopify" or sk == "shopify":
        if e.kind == "track" and e.name in ("Order Completed", "Checkout Started", "Checkout Step Completed"):
            src = (_str(e.properties.get("source_name")) or "web").lower()
            return _Class({"iphone": "app", "android": "app", "ios": "app", "pos": "store"}.get(src, "web"), True,
                          copy=True)
        return _Class(None, False, False)
    if sk == "pos" or e.name == "Store Visited" or (
            e.kind == "track" and e.name == "Order Completed" and _str(e.properties.get("store_id"))):
        return _Class("store", True, False)
    if lib in _SERVER_LIBS or sk in ("crm", "server", "survey"):
        return _Class(None, False, False)
    seg_channel = (_str(ctx.get("channel")) or "").lower()
    if e.kind == "screen" or isinstance(ctx.get("app"), Mapping) or seg_channel == "mobile" or sk == "app" or (
            lib and any(h in lib for h in _APP_LIB_HINTS)):
        return _Class("app", True, True)
    if e.kind == "page" or lib in _WEB_LIBS or seg_channel == "browser" or sk == "web" or _str(ctx.get("userAgent")) \
            or isinstance(ctx.get("page"), Mapping):
        return _Class("web", True, True)
    return _Class(None, False, False)


# --- products ---------------------------------------------------------------------------


@dataclass
class _Product:
    product_id: str | None
    sku: str | None
    name: str | None
    category: str | None
    brand: str | None
    price: Decimal | None
    variant: str | None
    colour: str | None
    size: str | None
    price_band: str | None
    quantity: int
    discounted: bool

    @property
    def key(self) -> tuple[str, str] | None:
        if self.sku:
            return ("sku", self.sku)
        if self.product_id:
            return ("id", self.product_id)
        if self.name:
            return ("name", self.name)
        return None

    @property
    def match_keys(self) -> set[tuple[str, str]]:
        keys = {k for k in (("sku", self.sku), ("id", self.product_id)) if k[1]}
        if not keys and self.name:
            keys.add(("name", self.name))
        return keys

    def richness(self) -> int:
        return sum(getattr(self, f) is not None for f in ("product_id", "sku", "name", "category", "brand", "price",
                                                           "variant", "colour", "size"))


def _product(m) -> _Product | None:
    if not isinstance(m, Mapping):
        return None
    variant = _str(m.get("variant"))
    colour = _str(m.get("colour")) or _str(m.get("color"))
    size = _str(m.get("size"))
    if variant and (colour is None or size is None):
        parts = [p.strip() for p in variant.split("/")]
        if len(parts) == 2 and all(parts):
            colour = colour or parts[0]
            size = size or parts[1]
    qty = m.get("quantity")
    quantity = qty if isinstance(qty, int) and not isinstance(qty, bool) and qty > 0 else 1
    disc = _dec(m.get("discount"))
    p = _Product(
        product_id=_str(m.get("product_id")) or _str(m.get("id")), sku=_str(m.get("sku")), name=_str(m.get("name")),
        category=_str(m.get("category")), brand=_str(m.get("brand")), price=_dec(m.get("price")), variant=variant,
        colour=colour, size=size, price_band=_str(m.get("price_band")), quantity=quantity,
        discounted=bool(_str(m.get("coupon"))) or (disc is not None and disc > 0))
    return p if p.key is not None else None


def _event_products(e: Event) -> list[_Product]:
    """The products an event is about: the properties themselves (Product Viewed/Added/
    Removed), else `properties.products` (orders, carts)."""
    props = e.properties
    if e.name in ("Product Viewed", "Product Added", "Product Removed", "Product Clicked"):
        p = _product(props)
        if p is not None:
            return [p]
    items = props.get("products")
    if isinstance(items, list):
        return [p for p in (_product(x) for x in items) if p is not None]
    return []


def _price_band(p: _Product, s: Settings) -> str | None:
    if p.price_band:
        return p.price_band
    if p.price is None:
        return None
    for bound, label in s.price_bands:
        if p.price < Decimal(str(bound)):
            return label
    return s.top_price_band


class _ProductList:
    """Distinct products, each with its newest mention; fields filled from older mentions."""

    def __init__(self) -> None:
        self.items: dict[tuple, list] = {}  # key -> [(at, event id) of newest mention, fields]

    def add(self, p: _Product, at: datetime, eid: str, pos: int = 0) -> None:
        # called in (time, event id, position) order, so a later call is a newer mention;
        # of the products of one event, the first listed ranks as the newest
        fields = {"product_id": p.product_id, "sku": p.sku, "name": p.name, "category": p.category,
                  "brand": p.brand, "price": p.price}
        cur = self.items.get(p.key)
        if cur is None:
            self.items[p.key] = [(at, eid, -pos), fields]
            return
        old = cur[1]
        cur[0] = max(cur[0], (at, eid, -pos))
        cur[1] = {k: fields[k] if fields[k] is not None else old[k] for k in fields}

    def newest(self, n: int) -> list[dict]:
        ranked = sorted(self.items.items(), key=lambda kv: (kv[1][0], kv[0]), reverse=True)[:max(0, n)]
        out = []
        for _, ((at, _eid, _pos), f) in ranked:
            out.append({"product_id": f["product_id"], "sku": f["sku"], "name": f["name"], "category": f["category"],
                        "brand": f["brand"], "price": _money(f["price"]) if f["price"] is not None else None,
                        "at": _iso(at)})
        return out


# --- orders -----------------------------------------------------------------------------


@dataclass
class _Order:
    key: tuple
    reports: list[Event]


def _amount(props: Mapping, products: list[_Product]) -> Decimal | None:
    for k in ("total", "revenue", "value"):
        d = _dec(props.get(k))
        if d is not None:
            return d
    if products and all(p.price is not None for p in products):
        return sum((p.price * p.quantity for p in products), Decimal(0))
    return None


def _orders(events: list[Event]) -> list[tuple[datetime, str, Decimal, bool, list[_Product]]]:
    """One entry per order: (time, event id, amount, discounted, products) of its richest report."""
    groups: dict[tuple, list[Event]] = {}
    for e in events:
        if e.kind == "track" and e.name == "Order Completed":
            oid = _str(e.properties.get("order_id"))
            groups.setdefault(("order", oid) if oid else ("event", e.event_id), []).append(e)
    out = []
    for reports in groups.values():
        parsed = [(e, _event_products(e)) for e in reports]  # reports are in (time, id) order
        best_e, best_p = min(parsed, key=lambda ep: (-sum(p.richness() for p in ep[1]), ep[0].occurred_at,
                                                     ep[0].event_id))
        amount = _amount(best_e.properties, best_p)
        if amount is None:
            amount = next((a for a in (_amount(e.properties, ps) for e, ps in parsed) if a is not None), Decimal(0))
        discounted = False
        for e, ps in parsed:
            disc = _dec(e.properties.get("discount"))
            if _str(e.properties.get("coupon")) or (disc is not None and disc > 0) or any(p.discounted for p in ps):
                discounted = True
        out.append((best_e.occurred_at, best_e.event_id, amount, discounted, best_p))
    out.sort(key=lambda o: (o[0], o[1]))
    return out


def _refunded(events: list[Event]) -> Decimal:
    seen: dict[tuple, Decimal] = {}
    for e in events:
        if e.kind == "track" and e.name == "Order Refunded":
            rid = _str(e.properties.get("refund_id"))
            key = ("refund", rid) if rid else ("event", e.event_id)
            if key in seen:
                continue
            amount = _amount(e.properties, _event_products(e))
            seen[key] = amount if amount is not None else Decimal(0)
    return sum(seen.values(), Decimal(0))


# --- devices ----------------------------------------------------------------------------

_UA_OS = [
    (re.compile(r"iPhone OS (\d+)[_.](\d+)"), "iOS"),
    (re.compile(r"iPad; CPU OS (\d+)[_.](\d+)"), "iPadOS"),
    (re.compile(r"Android (\d+(?:\.\d+)?)"), "Android"),
    (re.compile(r"Windows NT (\d+\.\d+)"), "Windows"),
    (re.compile(r"Mac OS X (\d+)[_.](\d+)"), "macOS"),
    (re.compile(r"CrOS"), "ChromeOS"),
    (re.compile(r"Linux"), "Linux"),
]
_UA_BROWSERS = [
    (re.compile(r"Edg(?:e|A|iOS)?/(\d+)"), "Edge"),
    (re.compile(r"SamsungBrowser/(\d+)"), "Samsung Internet"),
    (re.compile(r"OPR/(\d+)"), "Opera"),
    (re.compile(r"(?:Firefox|FxiOS)/(\d+)"), "Firefox"),
    (re.compile(r"(?:Chrome|CriOS)/(\d+)"), "Chrome"),
    (re.compile(r"Version/(\d+(?:\.\d+)?).*Safari/"), "Safari"),
]
_ANDROID_MODEL = re.compile(r"Android [\d.]+; ([^;)]+?)(?: Build/[^;)]*)?\)")


@lru_cache(maxsize=1024)
def _ua(ua: str) -> tuple[dict | None, dict | None, dict | None]:
    """(device, os, browser) read from a browser's userAgent (cached: a person's browser sends
    one userAgent with every call; callers must not modify the dicts)."""
    os_ = None
    for rx, name in _UA_OS:
        m = rx.search(ua)
        if m:
            version = ".".join(m.groups()) if m.groups() else None
            if name == "Windows" and version == "10.0":
                version = "10"
            os_ = {"name": name, "version": version}
            break
    browser = None
    for rx, name in _UA_BROWSERS:
        m = rx.search(ua)
        if m:
            browser = {"name": name, "version": m.group(1)}
            break
    if "iPad" in ua or "Tablet" in ua:
        dtype = "tablet"
    elif "iPhone" in ua or "Mobile" in ua:
        dtype = "mobile"
    elif "Android" in ua:
        dtype = "tablet"
    else:
        dtype = "desktop"
    manufacturer = model = None
    if "iPhone" in ua:
        manufacturer, model = "Apple", "iPhone"
    elif "iPad" in ua:
        manufacturer, model = "Apple", "iPad"
    elif "Macintosh" in ua:
        manufacturer, model = "Apple", "Mac"
    else:
        m = _ANDROID_MODEL.search(ua)
        if m and m.group(1).strip() not in ("K", "Mobile"):
            model = m.group(1).strip()
    return {"type": dtype, "manufacturer": manufacturer, "model": model}, os_, browser


def _app_device(ctx: Mapping) -> tuple[dict | None, dict | None]:
    dev = _obj(ctx, "device")
    osd = _obj(ctx, "os")
    device = None
    if dev:
        model = _str(dev.get("model"))
        name = _str(dev.get("name"))
        label = " ".join(x for x in (model, name, _str(dev.get("type"))) if x).lower()
        dtype = "tablet" if ("ipad" in label or "tablet" in label) else "mobile"
        device = {"type": dtype, "manufacturer": _str(dev.get("manufacturer")), "model": model or name}
    os_ = {"name": _str(osd.get("name")), "version": _str(osd.get("version"))} if _str(osd.get("name")) else None
    return device, os_


class _Seen:
    """Distinct things (devices, OSes, browsers) with their count and last sighting."""

    def __init__(self) -> None:
        self.items: dict[tuple, dict] = {}

    def add(self, key: tuple, base: dict, at: datetime, eid: str, latest: dict | None = None) -> None:
        cur = self.items.get(key)
        if cur is None:
            cur = self.items[key] = {**base, "_last": (at, eid), "events": 0}
        cur["events"] += 1
        if (at, eid) >= cur["_last"]:
            cur["_last"] = (at, eid)
            if latest:
                cur.update(latest)

    def newest(self) -> list[dict]:
        ranked = sorted(self.items.items(), key=lambda kv: (kv[1]["_last"], kv[0]), reverse=True)
        out = []
        for _, v in ranked:
            d = {k: x for k, x in v.items() if k != "_last"}
            d["last_seen_at"] = _iso(v["_last"][0])
            out.append(d)
        return out


# --- consent ----------------------------------------------------------------------------

_OPT_IN_TRAIT = re.compile(r"^(?P<key>[a-z][a-z0-9_]*?)(_marketing)?_(opt_?in|consent)$")
_CONSENT_EVENT_GRANT = re.compile(r"\b(subscribed|resubscribed|opted in|opt in)\s*$", re.I)
_CONSENT_EVENT_REVOKE = re.compile(r"\b(unsubscribed|marked as spam|opted out|opt out)\s*$", re.I)


def _trait_consents(traits: Mapping) -> list[tuple[str, bool, str]]:
    out = []
    for name in sorted(traits):
        if not isinstance(name, str):
            continue
        v = traits[name]
        low = name.lower()
        if low in ("accepts_marketing", "accepts_email_marketing"):
            b = _bool(v)
            if b is not None:
                out.append(("email", b, f"trait:{name}"))
        elif low == "accepts_sms_marketing":
            b = _bool(v)
            if b is not None:
                out.append(("sms", b, f"trait:{name}"))
        elif low.endswith("_marketing_consent") and isinstance(v, Mapping):
            state = _str(v.get("state"))
            b = _bool(state.lower()) if state else None
            if b is not None:
                out.append((low[: -len("_marketing_consent")], b, f"trait:{name}.state"))
        else:
            m = _OPT_IN_TRAIT.match(low)
            if m:
                b = _bool(v)
                if b is not None:
                    out.append((m.group("key"), b, f"trait:{name}"))
    return out


def _event_consents(e: Event) -> list[tuple[str, bool, str]]:
    out = []
    if e.kind in ("identify",):
        out += _trait_consents(e.traits)
    out += _trait_consents(_obj(e.context, "traits"))
    prefs = _obj(_obj(e.context, "consent"), "categoryPreferences")
    for k in sorted(prefs, key=str):
        b = _bool(prefs[k])
        if b is not None and _str(k):
            out.append((str(k).strip().lower(), b, "context.consent"))
    if e.kind == "track" and e.name:
        ch = _message_channel(e.name) or (e.source_kind.lower() if e.source_kind.lower() in MESSAGING else None)
        if ch:
            if _CONSENT_EVENT_REVOKE.search(e.name):
                out.append((ch, False, f"event:{e.name}"))
            elif _CONSENT_EVENT_GRANT.search(e.name):
                out.append((ch, True, f"event:{e.name}"))
    return out


# --- NPS --------------------------------------------------------------------------------


def _nps(e: Event) -> int | None:
    if e.kind != "track":
        return None
    p = e.properties
    name = e.name.lower()
    survey = " ".join(x for x in (_str(p.get("survey_type")), _str(p.get("survey_id")), _str(p.get("survey_name")))
                      if x).lower()
    if "nps" not in name and not ("survey" in name and "nps" in survey) and "net promoter" not in name:
        return None
    for k in ("score", "nps_score", "nps", "rating"):
        d = _dec(p.get(k))
        if d is not None and d == d.to_integral_value() and 0 <= d <= 10:
            return int(d)
    return None


# --- the computation --------------------------------------------------------------------


def _person_traits(e: Event) -> Mapping:
    """Traits about the person (group traits describe the account, not the person)."""
    return e.traits if e.kind == "identify" else {}


def _address(m: Mapping) -> dict | None:
    if not m or "address" not in m:
        return None
    a = _obj(m, "address")
    fields = {k: _str(a.get(k)) for k in ("street", "city", "postalCode", "state", "country")}
    if not any(fields.values()):
        return None
    return {k: v for k, v in fields.items() if v is not None}


def _location(ctx: Mapping) -> dict | None:
    loc = _obj(ctx, "location")
    out = {}
    for k in ("latitude", "longitude"):
        d = _dec(loc.get(k))
        if d is not None:
            out[k] = float(d)
    for k in ("city", "region", "country"):
        v = _str(loc.get(k))
        if v:
            out[k] = v
    return out or None


# --- affinities: exact, order-free sums with the decay applied once, when read ---------------
#
# A hit of weight w at time t is worth w * 0.5 ** ((now - t) / half) at `now`, which is
# w * 2 ** (x(t)) * 2 ** (-x(now)) with x(t) = days since the Unix epoch / half. Each hit
# adds its growth term w * 2 ** x(t) (a float's exact value times a power of two: an exact
# dyadic number, mantissa * 2 ** exponent) to an exact sum; the score is that sum times
# 2 ** -x(now), rounded once. Sums of exact numbers do not depend on the order they are added
# in, so a person's scores are the same bit for bit however their events arrived, whether
# computed from all events here or kept per person and decayed lazily (`incremental.py`).

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _growth(at: datetime, half: float) -> tuple[int, float]:
    x = (at - _EPOCH).total_seconds() / 86_400 / half
    k = math.floor(x)
    return k, x - k


def affinity_term(at: datetime, weight: float, half: float) -> tuple[int, int]:
    """The exact growth term (mantissa, exponent) of a hit of `weight` at `at`."""
    k, f = _growth(at, half)
    mant, ex = math.frexp(weight * 2.0 ** f)
    return int(mant * (1 << 53)), ex - 53 + k


def dyadic_add(a: tuple[int, int] | None, b: tuple[int, int]) -> tuple[int, int]:
    if a is None:
        return b
    (m1, e1), (m2, e2) = a, b
    e = min(e1, e2)
    return (m1 << (e1 - e)) + (m2 << (e2 - e)), e


def affinity_scores(sums: Mapping[str, Mapping[str, tuple[int, int]]], now: datetime, half: float
                    ) -> dict[str, dict[str, float]]:
    """Each dimension's exact growth sums decayed to `now` (one rounding of each sum, one
    multiplication)."""
    k, f = _growth(now, half)
    decay = 2.0 ** -f
    return {d: {v: math.ldexp(float(m), e - k) * decay for v, (m, e) in sums[d].items()} for d in AFFINITY_DIMENSIONS}


def affinity_values(p: _Product, s: Settings) -> list[tuple[str, str]]:
    values = (("category", p.category), ("brand", p.brand), ("colour", p.colour), ("size", p.size),
              ("price_band", _price_band(p, s)))
    return [(d, v) for d, v in values if v]


def rank_affinities(scores: Mapping[str, Mapping[str, float]], s: Settings
                    ) -> tuple[dict[str, dict[str, float]], dict[str, str | None]]:
    """The `affinity_top_n` values of each dimension by score rounded to 4 places (ties by
    value), highest first, and the top one. Only the values that can be among them are
    rounded and sorted: those within the rounding's reach of the n-th highest score (rounding
    keeps the order of the scores, so no other value can rank above that one's rounding)."""
    n = max(0, s.affinity_top_n)
    affinities: dict[str, dict[str, float]] = {}
    top: dict[str, str | None] = {}
    for dim in AFFINITY_DIMENSIONS:
        items = scores[dim].items()
        if not items or not n:
            affinities[dim], top[dim] = {}, None
            continue
        if len(items) > n:
            floor = round(heapq.nlargest(n, scores[dim].values())[-1], 4) - _AFFINITY_REACH
            items = [(k, v) for k, v in items if v >= floor]
        ranked = sorted(((round(v, 4), k) for k, v in items if v > 0), key=_by_score_then_value)
        ranked = [r for r in ranked if r[0] > 0][:n]
        affinities[dim] = {k: v for v, k in ranked}
        top[dim] = ranked[0][1] if ranked else None
    return affinities, top


_AFFINITY_REACH = 1e-4  # more than any score that rounds (to 4 places) up to a given value lies below it


def _by_score_then_value(x: tuple[float, str]) -> tuple[float, str]:
    return (-x[0], x[1])


def compute(events: Iterable[Event], *, now: datetime, settings: Settings = Settings()) -> dict[str, object]:
    """The built-in computed traits of one person from all their events (see the module doc)."""
    s = settings
    now = _aware(now)
    evs = _canonical(events)
    classes = [_classify(e) for e in evs]

    # sessions and activity hours
    sessions = 0
    last_client: datetime | None = None
    activity: list[datetime] = []
    for e, c in zip(evs, classes, strict=True):
        if c.client:
            if last_client is None or e.occurred_at - last_client > s.session_gap:
                sessions += 1
                activity.append(e.occurred_at)
            last_client = e.occurred_at
        elif c.channel is not None and c.engaged and not c.copy:
            activity.append(e.occurred_at)

    # channels
    channels: dict[str, dict] = {}
    for e, c in zip(evs, classes, strict=True):
        if c.channel is None:
            continue
        ch = channels.setdefault(c.channel, {"engaged": False, "last_engagement_at": None, "events": 0})
        ch["events"] += 1
        if c.engaged:
            ch["engaged"] = True
            ch["last_engagement_at"] = e.occurred_at  # events are in time order
    channels = {k: {**channels[k], "last_engagement_at": _iso(channels[k]["last_engagement_at"])}
                for k in sorted(channels, key=lambda k: (
                    CHANNEL_NAMES.index(k) if k in CHANNEL_NAMES else len(CHANNEL_NAMES), k))}

    # products and orders
    viewed, added, purchased, abandoned_list = _ProductList(), _ProductList(), _ProductList(), _ProductList()
    last_add: dict[tuple, tuple[datetime, str, int, _Product]] = {}
    removals: dict[tuple, list[datetime]] = defaultdict(list)
    order_times: dict[tuple, list[datetime]] = defaultdict(list)  # match key -> times of orders containing it
    affinity_hits: list[tuple[datetime, float, _Product]] = []
    for e in evs:
        if e.kind != "track":
            continue
        if e.name == "Product Viewed":
            for i, p in enumerate(_event_products(e)):
                viewed.add(p, e.occurred_at, e.event_id, i)
                affinity_hits.append((e.occurred_at, s.view_weight, p))
        elif e.name == "Product Added":
            for i, p in enumerate(_event_products(e)):
                added.add(p, e.occurred_at, e.event_id, i)
                last_add[p.key] = (e.occurred_at, e.event_id, -i, p)
                affinity_hits.append((e.occurred_at, s.add_weight, p))
        elif e.name == "Product Removed":
            for p in _event_products(e):
                for k in p.match_keys:
                    removals[k].append(e.occurred_at)
        elif e.name == "Order Completed":
            for p in _event_products(e):
                for k in p.match_keys:
                    order_times[k].append(e.occurred_at)

    orders = _orders(evs)
    revenue = Decimal(0)
    discounted = 0
    for at, eid, amount, disc, products in orders:
        revenue += amount
        discounted += disc
        for i, p in enumerate(products):
            purchased.add(p, at, eid, i)
            affinity_hits.append((at, s.purchase_weight, p))

    in_cart = _ProductList()
    for key in sorted(last_add, key=lambda k: (last_add[k][:3], k)):
        at, eid, neg_pos, p = last_add[key]
        keys = p.match_keys
        if any(at <= t for k in keys for t in order_times.get(k, ())):
            continue  # bought within the window, or since
        if any(at <= t for k in keys for t in removals.get(k, ())):
            continue  # taken out of the cart
        in_cart.add(p, at, eid, -neg_pos)
        if now >= at + s.abandon_window:  # before that it is still in the cart, not abandoned yet
            abandoned_list.add(p, at, eid, -neg_pos)

    n_orders = len(orders)
    last_order = orders[-1][0] if orders else None
    orders_out = {
        "count": n_orders,
        "revenue_total": _money(revenue),
        "revenue_avg": _money((revenue / n_orders).quantize(Decimal("0.01"), ROUND_HALF_EVEN)) if n_orders else None,
        "first_order_at": _iso(orders[0][0]) if orders else None,
        "last_order_at": _iso(last_order),
        "days_since_last_order": max(0, (now - last_order) // timedelta(days=1)) if last_order else None,
        "refunded_total": _money(_refunded(evs)),
    }

    # affinities
    half = s.affinity_half_life_days
    if half > 0:  # exact sums of growth terms, decayed once at `now` (see affinity_term)
        sums: dict[str, dict[str, tuple[int, int]]] = {d: {} for d in AFFINITY_DIMENSIONS}
        for at, weight, p in affinity_hits:
            term = affinity_term(min(at, now), weight, half)  # an event after `now` counts undecayed
            for dim, v in affinity_values(p, s):
                sums[dim][v] = dyadic_add(sums[dim].get(v), term)
        scores = affinity_scores(sums, now, half)
    else:  # no decay: only what happened at `now` counts
        scores = {d: defaultdict(float) for d in AFFINITY_DIMENSIONS}
        for at, weight, p in affinity_hits:
            for dim, v in affinity_values(p, s):
                scores[dim][v] += weight if at >= now else 0.0
    affinities, top = rank_affinities(scores, s)

    # devices, operating systems, browsers
    devices, oses, browsers = _Seen(), _Seen(), _Seen()
    for e in evs:
        ctx = e.context
        dev, os_ = _app_device(ctx)
        bro = None
        ua = _str(ctx.get("userAgent"))
        if ua and (dev is None or os_ is None):
            udev, uos, bro = _ua(ua)
            dev, os_ = dev or udev, os_ or uos
        if dev is not None:
            devices.add((dev["type"], dev["manufacturer"] or "", dev["model"] or ""), dev, e.occurred_at, e.event_id)
        if os_ is not None:
            oses.add((os_["name"],), {"name": os_["name"]}, e.occurred_at, e.event_id, {"version": os_["version"]})
        if bro is not None:
            browsers.add((bro["name"],), {"name": bro["name"]}, e.occurred_at, e.event_id,
                         {"version": bro["version"]})

    # location: device > address > ip, each the latest of its kind
    device_loc = address_loc = ip_loc = None
    address_rank = None
    for e in evs:
        if "location" in e.context:
            loc = _location(e.context)
            if loc:
                device_loc = {"source": "device", **loc, "at": e.occurred_at}
        for from_identify, traits in ((True, _person_traits(e)), (False, _obj(e.context, "traits"))):
            a = _address(traits)
            if a:
                rank = (from_identify, e.occurred_at, e.event_id)
                if address_rank is None or rank > address_rank:
                    address_rank = rank
                    address_loc = {"source": "address", **a, "at": e.occurred_at}
        ip = _str(e.context.get("ip"))
        if ip:
            ip_loc = {"source": "ip", "ip": ip, "at": e.occurred_at}
    last_location = device_loc or address_loc or ip_loc
    if last_location is not None:
        last_location = {**last_location, "at": _iso(last_location["at"])}

    # preferred hour, in the person's latest reported timezone
    tz_name = s.default_timezone if _zone(s.default_timezone) is not None else "UTC"
    for e in evs:
        name = _str(e.context.get("timezone"))
        if name and _zone(name) is not None:
            tz_name = name
    zone = _zone(tz_name) or UTC
    preferred_hour = None
    if activity:
        hours = Counter(t.astimezone(zone).hour for t in activity)
        best = max(sorted(hours), key=lambda h: hours[h])
        preferred_hour = {"hour": best, "timezone": tz_name}

    # NPS and consent
    nps = None
    consent: dict[str, dict] = {}
    for e in evs:
        score = _nps(e)
        if score is not None:
            nps = {"score": score, "category": "promoter" if score >= 9 else "passive" if score >= 7 else "detractor",
                   "at": _iso(e.occurred_at)}
        for key, granted, source in _event_consents(e):
            consent[key] = {"granted": granted, "at": _iso(e.occurred_at), "source": source}

    return {
        "first_seen": _iso(evs[0].occurred_at) if evs else None,
        "last_seen": _iso(evs[-1].occurred_at) if evs else None,
        "sessions": sessions,
        "products_viewed": viewed.newest(s.last_n),
        "products_added": added.newest(s.last_n),
        "products_purchased": purchased.newest(s.last_n),
        "products_abandoned": abandoned_list.newest(s.last_n),
        "products_in_cart": in_cart.newest(s.cart_limit),
        "orders": orders_out,
        "discount_share": round(discounted / n_orders, 4) if n_orders else None,
        "channels": channels,
        "devices": devices.newest(),
        "operating_systems": oses.newest(),
        "browsers": browsers.newest(),
        "last_location": last_location,
        "preferred_hour": preferred_hour,
        "affinities": affinities,
        "top_affinities": top,
        "nps": nps,
        "consent": dict(sorted(consent.items())),
    }
