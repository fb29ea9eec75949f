"""Point-in-time features and labels, from a compact per-profile event history.

`observe()` turns one Segment-shaped event into the few numbers the features need (an
*observation*: time, code, value, discount flag, channel and the product's attributes); the
projection stores these rows, nothing else. `History` holds many profiles' observations as
columns sorted by (profile, time); `features_at(history, T)` computes every feature as of the
cutoff T from the rows with time < T only, vectorised over all profiles, and
`labels_at(history, T, horizon)` the outcomes from the rows in [T, T + horizon).

Times are days since 1970-01-01 (float). Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

# Observation codes.
PAGE, PRODUCT_VIEW, CART_ADD, CHECKOUT, ORDER, ITEM, COUPON = 0, 1, 2, 3, 4, 5, 6
MSG_OPEN, MSG_CLICK, UNSUB, STORE_VISIT, REFUND, SURVEY, SEARCH, APP_OPEN, MSG_DELIVERED, OTHER = range(7, 17)
CODE_NAMES = ["page", "product_view", "cart_add", "checkout", "order", "item", "coupon", "msg_open", "msg_click",
              "unsubscribe", "store_visit", "refund", "survey", "search", "app_open", "msg_delivered", "other"]
# Channels.
WEB, APP, STORE, SERVER, UNKNOWN = 0, 1, 2, 3, 4
CHANNEL_NAMES = ["web", "app", "store", "server", "unknown"]
ATTRIBUTES = ("category", "brand", "colour", "size", "price_band")
# Price bands by unit price (EUR): below 30 budget, up to 80 mid, above premium.
PRICE_BANDS = ((30.0, "budget"), (80.0, "mid"), (math.inf, "premium"))

TRACK_CODES = {
    "Product Viewed": PRODUCT_VIEW, "Product Added": CART_ADD, "Checkout Started": CHECKOUT,
    "Order Completed": ORDER, "Coupon Applied": COUPON, "Email Opened": MSG_OPEN, "WhatsApp Opened": MSG_OPEN,
    "Email Link Clicked": MSG_CLICK, "SMS Link Clicked": MSG_CLICK, "WhatsApp Link Clicked": MSG_CLICK,
    "Push Notification Tapped": MSG_CLICK, "Email Unsubscribed": UNSUB, "SMS Unsubscribed": UNSUB,
    "WhatsApp Unsubscribed": UNSUB, "Push Unsubscribed": UNSUB, "Store Visited": STORE_VISIT,
    "Order Refunded": REFUND, "Survey Completed": SURVEY, "Products Searched": SEARCH,
    "Application Opened": APP_OPEN, "Email Delivered": MSG_DELIVERED, "SMS Delivered": MSG_DELIVERED,
    "WhatsApp Delivered": MSG_DELIVERED, "Push Notification Received": MSG_DELIVERED,
}
SESSION_GAP_DAYS = 30 / 1440  # a new session after 30 minutes without activity
ACTIVITY = (PAGE, PRODUCT_VIEW, CART_ADD, CHECKOUT, SEARCH, APP_OPEN)
WINDOWS = (7, 30, 90)


@dataclass(frozen=True)
class Observation:
    t: float  # days since the epoch
    code: int
    value: float = 0.0  # order total, survey score, item price
    discount: bool = False
    channel: int = UNKNOWN
    category: str | None = None
    brand: str | None = None
    colour: str | None = None
    size: str | None = None
    price_band: str | None = None


def to_days(ts: datetime) -> float:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.timestamp() / 86400.0


def from_days(t: float) -> datetime:
    return datetime.fromtimestamp(t * 86400.0, tz=UTC)


def _num(v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return 0.0
    return f if math.isfinite(f) else 0.0


def price_band(price: float) -> str | None:
    if price <= 0:
        return None
    return next(name for bound, name in PRICE_BANDS if price < bound)


def _channel(source_kind: str, context: Mapping, properties: Mapping) -> int:
    library = str((context.get("library") or {}).get("name") or "") if isinstance(context.get("library"), Mapping) else ""
    if source_kind == "pos" or properties.get("store_id"):
        return STORE
    if context.get("app") or "swift" in library or "kotlin" in library or "ios" in library or "android" in library:
        return APP
    if library == "analytics.js" or source_kind == "web":
        return WEB
    if source_kind in ("server", "shopify", "crm") or library.startswith("analytics-node"):
        return SERVER
    return UNKNOWN


def _product(p: Mapping, t: float, code: int, channel: int) -> Observation:
    variant = str(p.get("variant") or "")
    colour, _, size = variant.partition(" / ")
    price = _num(p.get("price"))
    return Observation(t, code, price, False, channel, str(p.get("category") or "") or None,
                       str(p.get("brand") or "") or None, p.get("color") or colour or None,
                       p.get("size") or size or None, price_band(price))


def observe(kind: str, event: str, t: float, properties: Mapping | None, context: Mapping | None,
            source_kind: str = "") -> list[Observation]:
    """The observations of one event (kind: track/page/screen/identify/...; event: the track
    event's or page's name). Most events give one; an order gives one ORDER row and one ITEM
    row per product."""
    properties = properties if isinstance(properties, Mapping) else {}
    context = context if isinstance(context, Mapping) else {}
    ch = _channel(source_kind, context, properties)
    if kind in ("page", "screen"):
        return [Observation(t, PAGE, channel=APP if kind == "screen" else ch)]
    if kind != "track":
        return [Observation(t, OTHER, channel=ch)]
    code = TRACK_CODES.get(event, OTHER)
    if code in (PRODUCT_VIEW, CART_ADD):
        return [_product(properties, t, code, ch)]
    if code == ORDER:
        total = _num(properties.get("total")) or _num(properties.get("revenue")) or _num(properties.get("value"))
        discount = bool(properties.get("coupon")) or _num(properties.get("discount")) > 0
        products = properties.get("products") if isinstance(properties.get("products"), list) else []
        return [Observation(t, ORDER, total, discount, ch)] + [
            _product(p, t, ITEM, ch) for p in products if isinstance(p, Mapping)]
    if code == SURVEY:
        return [Observation(t, SURVEY, _num(properties.get("score")), channel=ch)]
    return [Observation(t, code, channel=ch)]


class History:
    """Observations of many profiles as columns sorted by (profile, time).

    `profiles[i]` is the id of profile index i; `idx`, `t`, `code`, `value`, `discount`,
    `channel` are one entry per observation; attribute columns hold indices into `vocab[name]`
    (-1: absent)."""

    def __init__(self, profiles: list[str], idx, t, code, value, discount, channel,
                 attrs: dict[str, np.ndarray], vocab: dict[str, list[str]]):
        order = np.lexsort((np.asarray(code), np.asarray(t), np.asarray(idx)))
        self.profiles = list(profiles)
        self.idx = np.asarray(idx, dtype=np.int64)[order]
        self.t = np.asarray(t, dtype=np.float64)[order]
        self.code = np.asarray(code, dtype=np.int8)[order]
        self.value = np.asarray(value, dtype=np.float64)[order]
        self.discount = np.asarray(discount, dtype=bool)[order]
        self.channel = np.asarray(channel, dtype=np.int8)[order]
        self.attrs = {k: np.asarray(v, dtype=np.int32)[order] for k, v in attrs.items()}
        self.vocab = vocab
        act = np.isin(self.code, ACTIVITY)
        # A session starts at an activity row whose previous activity row of the same profile is
        # more than SESSION_GAP_DAYS earlier: it depends only on earlier rows (no leakage).
        ai = np.flatnonzero(act)
        start = np.ones(len(ai), dtype=bool)
        if len(ai) > 1:
            same = self.idx[ai[1:]] == self.idx[ai[:-1]]
            start[1:] = ~same | (self.t[ai[1:]] - self.t[ai[:-1]] > SESSION_GAP_DAYS)
        self.session_start = np.zeros(len(self.t), dtype=bool)
        self.session_start[ai[start]] = True

    @classmethod
    def from_observations(cls, rows: Iterable[tuple[str, Observation]]) -> History:
        index: dict[str, int] = {}
        vocab: dict[str, dict[str, int]] = {a: {} for a in ATTRIBUTES}
        cols: dict[str, list] = {k: [] for k in ("idx", "t", "code", "value", "discount", "channel", *ATTRIBUTES)}
        for pid, o in rows:
            cols["idx"].append(index.setdefault(pid, len(index)))
            cols["t"].append(o.t)
            cols["code"].append(o.code)
            cols["value"].append(o.value)
            cols["discount"].append(o.discount)
            cols["channel"].append(o.channel)
            for a in ATTRIBUTES:
                v = getattr(o, a)
                cols[a].append(-1 if v is None else vocab[a].setdefault(v, len(vocab[a])))
        return cls(list(index), cols["idx"], cols["t"], cols["code"], cols["value"], cols["discount"],
                   cols["channel"], {a: cols[a] for a in ATTRIBUTES}, {a: list(vocab[a]) for a in ATTRIBUTES})

    def __len__(self) -> int:
        return len(self.t)

    @property
    def n(self) -> int:
        return len(self.profiles)

    def span(self) -> tuple[float, float]:
        if not len(self.t):
            raise ValueError("the history is empty")
        return float(self.t[0] if self.n == 1 else self.t.min()), float(self.t.max())


def _count(idx, mask, n, weights=None) -> np.ndarray:
    return np.bincount(idx[mask], weights=None if weights is None else weights[mask], minlength=n).astype(np.float64)


def _last_per_group(idx: np.ndarray) -> np.ndarray:
    """Positions of the last row of each run of equal idx (idx sorted)."""
    return np.flatnonzero(np.diff(idx, append=-1) != 0) if len(idx) else np.zeros(0, dtype=np.int64)


@dataclass
class Features:
    """Features of the profiles present before the cutoff: `rows` are indices into
    `history.profiles`, `X` one row per profile (NaN where a feature is undefined, e.g. the
    recency of a profile that never ordered), plus the BTYD summary (x, t_x, T, m)."""

    names: list[str]
    rows: np.ndarray
    X: np.ndarray
    btyd: dict[str, np.ndarray]

    def column(self, name: str) -> np.ndarray:
        return self.X[:, self.names.index(name)]


def features_at(h: History, T: float) -> Features:
    """Every feature as of cutoff T, from the rows with t < T only."""
    n = h.n
    m = h.t < T
    idx, t, code = h.idx, h.t, h.code
    cols: dict[str, np.ndarray] = {}
    seen = _count(idx, m, n)
    present = np.flatnonzero(seen > 0)
    first = np.full(n, np.nan)
    last = np.full(n, np.nan)
    sub = np.flatnonzero(m)
    if len(sub):
        firsts = sub[np.flatnonzero(np.diff(idx[sub], prepend=-1) != 0)]
        first[idx[firsts]] = t[firsts]
        lasts = sub[_last_per_group(idx[sub])]
        last[idx[lasts]] = t[lasts]
    cols["tenure_days"] = T - first
    cols["days_since_last_event"] = T - last
    orders = m & (code == ORDER)
    oi = np.flatnonzero(orders)
    n_orders = _count(idx, orders, n)
    revenue = _count(idx, orders, n, h.value)
    cols["orders"] = n_orders
    cols["revenue"] = revenue
    with np.errstate(invalid="ignore", divide="ignore"):
        cols["avg_order_value"] = np.where(n_orders > 0, revenue / n_orders, np.nan)
    first_order = np.full(n, np.nan)
    last_order = np.full(n, np.nan)
    if len(oi):
        fo = oi[np.flatnonzero(np.diff(idx[oi], prepend=-1) != 0)]
        lo = oi[_last_per_group(idx[oi])]
        first_order[idx[fo]] = t[fo]
        last_order[idx[lo]] = t[lo]
    cols["days_since_last_order"] = T - last_order
    cols["days_since_first_order"] = T - first_order
    # Inter-purchase intervals (between consecutive orders of a profile).
    gap_sum = np.zeros(n)
    gap_sq = np.zeros(n)
    if len(oi) > 1:
        same = idx[oi[1:]] == idx[oi[:-1]]
        d = (t[oi[1:]] - t[oi[:-1]])[same]
        g = idx[oi[1:]][same]
        gap_sum = np.bincount(g, weights=d, minlength=n)
        gap_sq = np.bincount(g, weights=d * d, minlength=n)
    k = n_orders - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        ipi = np.where(k > 0, gap_sum / k, np.nan)
        cols["ipi_mean"] = ipi
        cols["ipi_std"] = np.where(k > 1, np.sqrt(np.maximum(gap_sq / k - ipi * ipi, 0.0)), np.nan)
        cols["readiness"] = cols["days_since_last_order"] / ipi
        cols["orders_per_30d"] = n_orders / np.maximum(cols["tenure_days"], 1.0) * 30.0
    for w in WINDOWS:
        mw = m & (t >= T - w)
        cols[f"sessions_{w}d"] = _count(idx, mw & h.session_start, n)
        cols[f"product_views_{w}d"] = _count(idx, mw & (code == PRODUCT_VIEW), n)
        cols[f"cart_adds_{w}d"] = _count(idx, mw & (code == CART_ADD), n)
        cols[f"checkouts_{w}d"] = _count(idx, mw & (code == CHECKOUT), n)
        cols[f"orders_{w}d"] = _count(idx, mw & (code == ORDER), n)
        cols[f"revenue_{w}d"] = _count(idx, mw & (code == ORDER), n, h.value)
        cols[f"msg_clicks_{w}d"] = _count(idx, mw & (code == MSG_CLICK), n)
        cols[f"msg_opens_{w}d"] = _count(idx, mw & (code == MSG_OPEN), n)
    cols["sessions"] = _count(idx, m & h.session_start, n)
    cols["msg_delivered_90d"] = _count(idx, m & (t >= T - 90) & (code == MSG_DELIVERED), n)
    cols["unsubscribes"] = _count(idx, m & (code == UNSUB), n)
    cols["coupons"] = _count(idx, m & (code == COUPON), n)
    disc = _count(idx, orders & h.discount, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        cols["discount_order_share"] = np.where(n_orders > 0, disc / n_orders, np.nan)
        items = m & (code == ITEM)
        cols["store_visits_90d"] = _count(idx, m & (t >= T - 90) & (code == STORE_VISIT), n)
        cols["store_order_share"] = np.where(n_orders > 0, _count(idx, orders & (h.channel == STORE), n) / n_orders, np.nan)
        act = m & np.isin(code, ACTIVITY)
        n_act = _count(idx, act, n)
        cols["app_share"] = np.where(n_act > 0, _count(idx, act & (h.channel == APP), n) / n_act, np.nan)
        n_items = _count(idx, items, n)
        cols["avg_item_price"] = np.where(n_items > 0, _count(idx, items, n, h.value) / n_items, np.nan)
        n_survey = _count(idx, m & (code == SURVEY), n)
        cols["survey_score"] = np.where(n_survey > 0, _count(idx, m & (code == SURVEY), n, h.value) / n_survey, np.nan)
    ch_used = np.zeros(n)
    for c in (WEB, APP, STORE):
        ch_used += _count(idx, m & (h.channel == c) & (code != MSG_DELIVERED), n) > 0
    cols["channels_used"] = ch_used
    cols["refunds"] = _count(idx, m & (code == REFUND), n)
    # Category mix of views, cart adds and bought items: distinct categories and entropy.
    cat = h.attrs.get("category")
    if cat is not None and len(cat):
        cm = m & (cat >= 0) & np.isin(code, (PRODUCT_VIEW, CART_ADD, ITEM))
        ncat = max(len(h.vocab.get("category", [])), 1)
        keys, counts = np.unique(idx[cm] * ncat + cat[cm], return_counts=True)
        owner = keys // ncat
        tot = np.bincount(owner, weights=counts, minlength=n)
        p = counts / tot[owner]
        cols["distinct_categories"] = np.bincount(owner, minlength=n).astype(np.float64)
        cols["category_entropy"] = np.bincount(owner, weights=-p * np.log(p), minlength=n)
    else:
        cols["distinct_categories"] = np.zeros(n)
        cols["category_entropy"] = np.zeros(n)
    # The BTYD summary: birth = first event; x = purchase days after the birth day.
    x = np.zeros(n)
    tx = np.zeros(n)
    if len(oi):
        oidx, ot = idx[oi], t[oi]
        day = np.floor(ot)
        after = day > np.floor(first[oidx])
        # rows sorted by (profile, time): a new purchase day differs from the previous row's
        new_day = np.ones(len(oi), dtype=bool)
        new_day[1:] = (oidx[1:] != oidx[:-1]) | (day[1:] != day[:-1])
        x = np.bincount(oidx[after & new_day], minlength=n).astype(np.float64)
        last_after = np.full(n, np.nan)
        last_after[oidx[after]] = ot[after]  # sorted by time: the last write wins
        tx = np.where(x > 0, last_after - first, 0.0)
    names = list(cols)
    X = np.column_stack([cols[k][present] for k in names]) if present.size else np.zeros((0, len(names)))
    btyd = {"x": x[present], "t_x": np.maximum(tx[present], 0.0), "T": (T - first)[present],
            "m": cols["avg_order_value"][present], "orders": n_orders[present]}
    return Features(names, present, X, btyd)


@dataclass
class Labels:
    """Outcomes in [T, T + horizon) for the given profile rows."""

    purchased: np.ndarray
    orders: np.ndarray
    revenue: np.ndarray
    discount_used: np.ndarray  # among buyers in the window: bought with a discount
    churned: np.ndarray  # among customers before T: no order in [T, T + churn_days)


def labels_at(h: History, T: float, horizon_days: float, rows: np.ndarray, churn_days: float | None = None) -> Labels:
    if horizon_days <= 0:
        raise ValueError("the horizon must be at least one day")
    n = h.n
    churn_days = horizon_days if churn_days is None else churn_days
    w = (h.t >= T) & (h.t < T + horizon_days) & (h.code == ORDER)
    orders = _count(h.idx, w, n)
    revenue = _count(h.idx, w, n, h.value)
    disc = _count(h.idx, w & h.discount, n)
    cw = (h.t >= T) & (h.t < T + churn_days) & (h.code == ORDER)
    orders_churn = _count(h.idx, cw, n)
    return Labels(purchased=(orders[rows] > 0), orders=orders[rows], revenue=revenue[rows],
                  discount_used=(disc[rows] > 0), churned=(orders_churn[rows] == 0))


def attribute_affinities(h: History, T: float, rows: np.ndarray, prior_weight: float = 3.0,
                         half_life_days: float = 60.0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Predicted preference per attribute: for each profile the value with the highest smoothed,
    recency-weighted share of its views (weight 1), cart adds (2) and bought items (4), with the
    population's shares as a Dirichlet prior of `prior_weight` pseudo-events. Returns, per
    attribute, (value index into h.vocab[attr] or -1, share)."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    m = h.t < T
    weight = np.select([h.code == PRODUCT_VIEW, h.code == CART_ADD, h.code == ITEM], [1.0, 2.0, 4.0], 0.0)
    decay = np.exp2(-(T - h.t) / half_life_days)
    pos = np.full(h.n, -1, dtype=np.int64)
    pos[rows] = np.arange(len(rows))
    for a in ATTRIBUTES:
        col = h.attrs.get(a)
        k = len(h.vocab.get(a, []))
        best = np.full(len(rows), -1, dtype=np.int64)
        share = np.zeros(len(rows))
        if col is None or k == 0:
            out[a] = (best, share)
            continue
        sel = m & (col >= 0) & (weight > 0) & (pos[h.idx] >= 0)
        w = (weight * decay)[sel]
        prior = np.bincount(col[sel], weights=w, minlength=k)
        prior = prior / prior.sum() if prior.sum() > 0 else np.full(k, 1.0 / k)
        keys = h.idx[sel] * k + col[sel]
        uk, inv = np.unique(keys, return_inverse=True)
        mass = np.bincount(inv, weights=w)
        owner, value = uk // k, uk % k
        total = np.bincount(owner, weights=mass, minlength=h.n)
        score = (mass + prior_weight * prior[value]) / (total[owner] + prior_weight)
        # per owner (uk is sorted, so each owner's values are contiguous), the first best score
        starts = np.flatnonzero(np.diff(owner, prepend=-1) != 0)
        top = np.maximum.reduceat(score, starts)
        at_top = np.flatnonzero(score == np.repeat(top, np.diff(np.append(starts, len(score)))))
        group = np.searchsorted(starts, at_top, side="right") - 1
        firsts = at_top[np.flatnonzero(np.diff(group, prepend=-1) != 0)]
        r = pos[owner[firsts]]
        best[r] = value[firsts]
        share[r] = score[firsts]
        none = best < 0  # no history: the population's favourite
        best[none] = int(np.argmax(prior))
        share[none] = float(prior.max())
        out[a] = (best, share)
    return out
