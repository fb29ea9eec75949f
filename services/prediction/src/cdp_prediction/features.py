"""Point-in-time features and labels, from a compact per-profile event history.

`observe()` turns one Segment-shaped event into the few numbers the features need (an
*observation*: time, code, value, discount flag, channel and the product's attributes); the
projection stores these rows, nothing else. `History` holds many profiles' observations as
columns sorted by (profile, time), with indexes built on first use (the rows of each code, the
product rows, each profile's block); `features_at(history, T)` computes every feature as of
the cutoff T from the rows with time < T only, vectorised over all profiles (np.bincount by
profile over the rows of the codes a feature counts), and `labels_at(history, T, horizon)` the
outcomes from the rows in [T, T + horizon).

Times are days since 1970-01-01 (float). Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
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
    (-1: absent).

    The columns are not to be modified after construction: features and labels read them
    through lazily built, cached indexes (each profile's block of rows; the rows of each code,
    kept in (profile, time) order), so that a cutoff costs a pass over the few rows a feature
    reads rather than over every observation."""

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

    # --- cached indexes (built on first use) ---------------------------------------------------
    def forget(self) -> None:
        """Drops the cached indexes (they are rebuilt on the next use)."""
        self.__dict__.pop("_cache", None)

    def _cached(self, key, build):
        cache = self.__dict__.setdefault("_cache", {})
        v = cache.get(key)
        if v is None:
            v = cache[key] = build()
        return v

    def blocks(self) -> np.ndarray:
        """start[i]:start[i + 1] are profile i's rows (n + 1 entries)."""
        def build():
            start = np.zeros(self.n + 1, dtype=np.int64)
            np.cumsum(np.bincount(self.idx, minlength=self.n), out=start[1:])
            return start
        return self._cached("blocks", build)

    def _positions(self, code) -> np.ndarray:
        def by_code():
            order = np.argsort(self.code, kind="stable")  # each code's rows stay in (profile, time) order
            bounds = np.zeros(len(CODE_NAMES) + 1, dtype=np.int64)
            if len(self.code):
                np.cumsum(np.bincount(self.code, minlength=len(CODE_NAMES))[:len(CODE_NAMES)], out=bounds[1:])
            return order, bounds
        if code == "session":
            return self._cached(("pos", code), lambda: np.flatnonzero(self.session_start))
        order, bounds = self._cached("by_code", by_code)
        return order[bounds[code]:bounds[code + 1]]

    def rows(self, code, column: str) -> np.ndarray:
        """`column` ("idx", "t", "value", "discount", "channel") of the rows of `code` (an
        observation code, or "session": the rows that start a session), in (profile, time) order."""
        return self._cached((code, column), lambda: getattr(self, column)[self._positions(code)])

    def latest(self) -> float:
        """The latest time of any row (-inf: none)."""
        return self._cached("latest", lambda: float(self.t.max()) if len(self.t) else -np.inf)

    def first_time(self, channel: int) -> np.ndarray:
        """Per profile, the time of its first row on `channel` (web, app or store) other than a
        message delivery (inf: none)."""
        def build():  # the three channels in one pass over every row
            wanted = np.zeros(256, dtype=bool)
            wanted[[WEB, APP, STORE]] = True
            sel = wanted[self.channel.view(np.uint8)] & (self.code != MSG_DELIVERED)
            ch, ip, tp = self.channel[sel], self.idx[sel], self.t[sel]
            out = {}
            for c in (WEB, APP, STORE):
                m = ch == c
                i, t = ip[m], tp[m]
                first = np.full(self.n, np.inf)
                if len(i):
                    head = _heads(i)
                    first[i[head]] = t[head]
                out[c] = first
            return out
        return self._cached("first_time", build)[channel]

    def product_rows(self, column: str) -> np.ndarray:
        """`column` ("idx", "t", "code", or an attribute) of the product rows (views, cart adds,
        bought items), in (profile, time) order."""
        def positions():
            product = np.zeros(256, dtype=bool)
            product[[PRODUCT_VIEW, CART_ADD, ITEM]] = True
            return np.flatnonzero(product[self.code.view(np.uint8)])

        def build():
            pos = self._cached("product_pos", positions)
            src = self.attrs[column] if column in ATTRIBUTES else getattr(self, column)
            return src[pos]
        return self._cached(("product", column), build)


def _heads(i: np.ndarray) -> np.ndarray:
    """Positions where a run of equal values of i starts."""
    new = np.empty(len(i), dtype=bool)
    new[:1] = True
    np.not_equal(i[1:], i[:-1], out=new[1:])
    return np.flatnonzero(new)


def _last_per_group(idx: np.ndarray) -> np.ndarray:
    """Positions of the last row of each run of equal idx (idx sorted)."""
    return np.flatnonzero(np.diff(idx, append=-1) != 0) if len(idx) else np.zeros(0, dtype=np.int64)


def _first_at_or_after(t: np.ndarray, start: np.ndarray, stop: np.ndarray, T: float) -> np.ndarray:
    """Per block [start, stop) of t (sorted within each block), the first position with t >= T
    (stop if none): a binary search run on every block at once."""
    lo, hi = start.copy(), stop.copy()
    a = np.flatnonzero(lo < hi)
    while len(a):
        mid = (lo[a] + hi[a]) // 2
        right = t[mid] < T
        lo[a] = np.where(right, mid + 1, lo[a])
        hi[a] = np.where(right, hi[a], mid)
        a = a[lo[a] < hi[a]]
    return lo


CHUNK_ROWS = 1 << 20  # rows grouped at a time: temporaries stay small (fresh large arrays cost page faults)
DENSE_VALUES = 64  # up to this many values: per block of profiles, a dense profiles x values matrix
DENSE_CELLS = 1 << 18  # cells of that matrix (a block of profiles stays in cache)


def _blocks(r: np.ndarray, R: int, k: int):
    """Blocks of profiles [p0, p0 + m) with the slice of their rows (r sorted), each block of
    about DENSE_CELLS profiles x values; empty blocks are skipped."""
    per = max(1, DENSE_CELLS // k)
    starts = np.arange(0, R, per)
    edges = np.searchsorted(r, np.append(starts, R))
    for i, p0 in enumerate(starts.tolist()):
        a, b = int(edges[i]), int(edges[i + 1])
        if a < b:
            yield p0, min(per, R - p0), slice(a, b)


def _chunks(r: np.ndarray, size: int | None = None) -> list[slice]:
    """Slices of about `size` (CHUNK_ROWS) rows of r (sorted) that never split a run of equal r."""
    n, size = len(r), size or CHUNK_ROWS
    if n <= size:
        return [slice(0, n)]
    cuts = np.unique(np.searchsorted(r, r[np.arange(size, n, size)], side="left"))
    edges = [0, *(int(c) for c in cuts if 0 < c < n), n]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _pairs(r: np.ndarray, v: np.ndarray, k: int, w: np.ndarray | None = None):
    """Groups rows by (r, value), value-major: (group r, group value, per group the number of
    rows or the sum of their weights w, added in the rows' order). Rows must be sorted by r; a
    stable radix sort by value (fewer than 32,768 values) then keeps each value's rows in r
    order, so no sort of (r, value) keys is needed. A profile's groups come in ascending value
    order: sums over them add in that order, as over sorted (r, value) keys."""
    order = np.argsort(v.astype(np.int16) if k < 32_768 else v, kind="stable")
    rs, vs = r[order], v[order]
    new = np.ones(len(rs), dtype=bool)
    if len(rs) > 1:
        new[1:] = (rs[1:] != rs[:-1]) | (vs[1:] != vs[:-1])
    if w is None:
        heads = np.flatnonzero(new)
        return rs[heads], vs[heads], np.diff(np.append(heads, len(rs)))
    gid = np.cumsum(new, dtype=np.int32 if len(rs) < 2**31 else np.int64) - 1
    return rs[new], vs[new], np.bincount(gid, weights=w[order])


def _mix(idx: np.ndarray, val: np.ndarray, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per profile (idx sorted), the number of distinct values among its rows and the entropy of
    their shares."""
    distinct, entropy = np.zeros(n), np.zeros(n)
    if k <= DENSE_VALUES:
        for p0, m, c in _blocks(idx, n, k):
            counts = np.bincount((idx[c] - p0) * k + val[c], minlength=m * k).reshape(m, k).astype(np.float64)
            tot = np.zeros(m)
            for j in range(k):
                tot += counts[:, j]  # integers: exact
            with np.errstate(invalid="ignore", divide="ignore"):
                p = counts / tot[:, None]
                terms = np.where(counts > 0, -p * np.log(p), 0.0)
            ent = np.zeros(m)
            for j in range(k):  # ascending value order, as over sorted (profile, value) keys
                ent += terms[:, j]
            distinct[p0:p0 + m] = (counts > 0).sum(axis=1)
            entropy[p0:p0 + m] = ent
        return distinct, entropy
    for c in _chunks(idx):
        if c.stop == c.start:
            continue
        lo = int(idx[c.start])
        owner, _, counts = _pairs(idx[c] - lo, val[c], k)
        m = int(idx[c.stop - 1]) - lo + 1
        tot = np.bincount(owner, weights=counts, minlength=m)
        p = counts / tot[owner]
        distinct[lo:lo + m] = np.bincount(owner, minlength=m)
        entropy[lo:lo + m] = np.bincount(owner, weights=-p * np.log(p), minlength=m)
    return distinct, entropy


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


def features_at(h: History, T: float, extra: Callable[[dict[str, np.ndarray]], list[np.ndarray]] | None = None
                ) -> Features:
    """Every feature as of cutoff T, from the rows with t < T only. `extra(btyd)` may return
    more columns (one value per present profile), computed from the BTYD summary, to append
    to X after the named features (X is built once, with them).

    Each feature reads only the rows of the codes it counts (History.rows, in (profile, time)
    order, so every sum adds the same numbers in the same order as a pass over all rows would)."""
    n = h.n
    cols: dict[str, np.ndarray] = {}
    start = h.blocks()
    end = _first_at_or_after(h.t, start[:-1], start[1:], T)  # one past each profile's last row before T
    present_mask = end > start[:-1]
    present = np.flatnonzero(present_mask)
    first = np.full(n, np.nan)
    last = np.full(n, np.nan)
    first[present] = h.t[start[:-1][present]]
    last[present] = h.t[end[present] - 1]
    cols["tenure_days"] = T - first
    cols["days_since_last_event"] = T - last

    def sub(code, *columns, times: bool = True):
        """The rows of `code` before T: their idx, t (None if not `times` and every row is
        before T) and the given columns."""
        if h.latest() < T:  # every row is before T (scoring as of now): no copy, no mask
            return (h.rows(code, "idx"), h.rows(code, "t") if times else None, *(h.rows(code, c) for c in columns))
        t = h.rows(code, "t")
        m = t < T
        return (h.rows(code, "idx")[m], t[m], *(h.rows(code, c)[m] for c in columns))

    def count(code, window: float | None = None, weights: str | None = None) -> np.ndarray:
        got = sub(code, *((weights,) if weights else ()), times=window is not None)
        i, t = got[0], got[1]
        if window is None:
            return np.bincount(i, weights=got[2] if weights else None, minlength=n).astype(np.float64)
        m = t >= T - window
        return np.bincount(i[m], weights=got[2][m] if weights else None, minlength=n).astype(np.float64)

    oidx, ot, ovalue, odisc, och = sub(ORDER, "value", "discount", "channel")
    n_orders = np.bincount(oidx, minlength=n).astype(np.float64)
    revenue = np.bincount(oidx, weights=ovalue, minlength=n).astype(np.float64)
    cols["orders"] = n_orders
    cols["revenue"] = revenue
    with np.errstate(invalid="ignore", divide="ignore"):
        cols["avg_order_value"] = np.where(n_orders > 0, revenue / n_orders, np.nan)
    first_order = np.full(n, np.nan)
    last_order = np.full(n, np.nan)
    if len(oidx):
        fo = np.flatnonzero(np.diff(oidx, prepend=-1) != 0)
        lo = _last_per_group(oidx)
        first_order[oidx[fo]] = ot[fo]
        last_order[oidx[lo]] = ot[lo]
    cols["days_since_last_order"] = T - last_order
    cols["days_since_first_order"] = T - first_order
    # Inter-purchase intervals (between consecutive orders of a profile).
    gap_sum = np.zeros(n)
    gap_sq = np.zeros(n)
    if len(oidx) > 1:
        same = oidx[1:] == oidx[:-1]
        d = (ot[1:] - ot[:-1])[same]
        g = oidx[1:][same]
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
        ow = ot >= T - w
        cols[f"sessions_{w}d"] = count("session", w)
        cols[f"product_views_{w}d"] = count(PRODUCT_VIEW, w)
        cols[f"cart_adds_{w}d"] = count(CART_ADD, w)
        cols[f"checkouts_{w}d"] = count(CHECKOUT, w)
        cols[f"orders_{w}d"] = np.bincount(oidx[ow], minlength=n).astype(np.float64)
        cols[f"revenue_{w}d"] = np.bincount(oidx[ow], weights=ovalue[ow], minlength=n).astype(np.float64)
        cols[f"msg_clicks_{w}d"] = count(MSG_CLICK, w)
        cols[f"msg_opens_{w}d"] = count(MSG_OPEN, w)
    cols["sessions"] = count("session")
    cols["msg_delivered_90d"] = count(MSG_DELIVERED, 90)
    cols["unsubscribes"] = count(UNSUB)
    cols["coupons"] = count(COUPON)
    disc = np.bincount(oidx[odisc], minlength=n).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cols["discount_order_share"] = np.where(n_orders > 0, disc / n_orders, np.nan)
        cols["store_visits_90d"] = count(STORE_VISIT, 90)
        store_orders = np.bincount(oidx[och == STORE], minlength=n).astype(np.float64)
        cols["store_order_share"] = np.where(n_orders > 0, store_orders / n_orders, np.nan)
        n_act = np.zeros(n)
        n_app = np.zeros(n)
        for c in ACTIVITY:  # counts: integers, exact in any order
            ai, _, ach = sub(c, "channel", times=False)
            n_act += np.bincount(ai, minlength=n)
            n_app += np.bincount(ai[ach == APP], minlength=n)
        cols["app_share"] = np.where(n_act > 0, n_app / n_act, np.nan)
        n_items = count(ITEM)
        cols["avg_item_price"] = np.where(n_items > 0, count(ITEM, weights="value") / n_items, np.nan)
        n_survey = count(SURVEY)
        cols["survey_score"] = np.where(n_survey > 0, count(SURVEY, weights="value") / n_survey, np.nan)
    ch_used = np.zeros(n)
    for c in (WEB, APP, STORE):
        ch_used += h.first_time(c) < T
    cols["channels_used"] = ch_used
    cols["refunds"] = count(REFUND)
    # Category mix of views, cart adds and bought items: distinct categories and entropy.
    if "category" in h.attrs and len(h.attrs["category"]):
        cat = h.product_rows("category")
        cm = (cat >= 0) & (h.product_rows("t") < T)
        ncat = max(len(h.vocab.get("category", [])), 1)
        cols["distinct_categories"], cols["category_entropy"] = _mix(h.product_rows("idx")[cm], cat[cm], n, ncat)
    else:
        cols["distinct_categories"] = np.zeros(n)
        cols["category_entropy"] = np.zeros(n)
    # The BTYD summary: birth = first event; x = purchase days after the birth day.
    x = np.zeros(n)
    tx = np.zeros(n)
    if len(oidx):
        day = np.floor(ot)
        after = day > np.floor(first[oidx])
        # rows sorted by (profile, time): a new purchase day differs from the previous row's
        new_day = np.ones(len(oidx), dtype=bool)
        new_day[1:] = (oidx[1:] != oidx[:-1]) | (day[1:] != day[:-1])
        x = np.bincount(oidx[after & new_day], minlength=n).astype(np.float64)
        last_after = np.full(n, np.nan)
        last_after[oidx[after]] = ot[after]  # sorted by time: the last write wins
        tx = np.where(x > 0, last_after - first, 0.0)
    names = list(cols)
    every = len(present) == n  # every profile has a row before T (scoring as of now): no gathers

    def pick(a: np.ndarray) -> np.ndarray:
        return a if every else a[present]

    btyd = {"x": pick(x), "t_x": np.maximum(pick(tx), 0.0), "T": pick(T - first),
            "m": pick(cols["avg_order_value"]), "orders": pick(n_orders)}
    more = list(extra(btyd)) if extra is not None else []
    return Features(names, present, _rows_matrix([pick(cols[k]) for k in names] + more), btyd)


def _rows_matrix(columns: list[np.ndarray], block: int = 8192) -> np.ndarray:
    """The columns side by side in a row-major matrix, written a block of rows at a time (a
    block stays in cache; writing whole columns with a stride of the row does not)."""
    n = len(columns[0]) if columns else 0
    X = np.empty((n, len(columns)))
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        np.stack([c[lo:hi] for c in columns], axis=1, out=X[lo:hi])
    return X


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
    oi, ot, ov, od = (h.rows(ORDER, c) for c in ("idx", "t", "value", "discount"))
    w = (ot >= T) & (ot < T + horizon_days)
    orders = np.bincount(oi[w], minlength=n).astype(np.float64)
    revenue = np.bincount(oi[w], weights=ov[w], minlength=n).astype(np.float64)
    disc = np.bincount(oi[w & od], minlength=n).astype(np.float64)
    cw = (ot >= T) & (ot < T + churn_days)
    orders_churn = np.bincount(oi[cw], minlength=n).astype(np.float64)
    return Labels(purchased=(orders[rows] > 0), orders=orders[rows], revenue=revenue[rows],
                  discount_used=(disc[rows] > 0), churned=(orders_churn[rows] == 0))


def _best_values(r: np.ndarray, v: np.ndarray, w: np.ndarray, R: int, k: int, prior: np.ndarray,
                 prior_weight: float, best: np.ndarray, share: np.ndarray) -> None:
    """For rows r (0..R-1, sorted) with values v (-1: none, the row is ignored) and weights w:
    per r, the value (among those it has) with the highest (mass + prior_weight * prior) /
    (total + prior_weight), the lowest value on a tie; written into best and share."""
    if k <= DENSE_VALUES:
        pw_prior = prior_weight * prior
        k1 = k + 1  # a last column collects the rows without a value
        for p0, m, c in _blocks(r, R, k1):
            vc = v[c]
            key = (r[c] - p0) * k1 + np.where(vc >= 0, vc, k)
            mass = np.bincount(key, weights=w[c], minlength=m * k1).reshape(m, k1)[:, :k]  # each cell adds its rows in order
            has = np.bincount(key, minlength=m * k1).reshape(m, k1)[:, :k] > 0
            total = np.zeros(m)
            for j in range(k):  # ascending value order
                total += mass[:, j]
            score = np.where(has, (mass + pw_prior) / (total[:, None] + prior_weight), -np.inf)
            top = score.argmax(axis=1)  # the first maximum: the lowest value
            got = np.flatnonzero(has.any(axis=1))
            best[p0 + got] = top[got]
            share[p0 + got] = score[got, top[got]]
        return
    if (v < 0).any():
        keep = v >= 0
        r, v, w = r[keep], v[keep], w[keep]
    for c in _chunks(r):
        if c.stop == c.start:
            continue
        lo = int(r[c.start])
        owner, value, mass = _pairs(r[c] - lo, v[c], k, w[c])
        m = int(r[c.stop - 1]) - lo + 1
        total = np.bincount(owner, weights=mass, minlength=m)
        score = (mass + prior_weight * prior[value]) / (total[owner] + prior_weight)
        top = np.full(m, -np.inf)
        np.maximum.at(top, owner, score)
        at_top = np.flatnonzero(score == top[owner])
        lowest = np.full(m, k, dtype=np.int64)
        np.minimum.at(lowest, owner[at_top], value[at_top])
        got = np.flatnonzero(lowest < k)
        best[lo + got] = lowest[got]
        share[lo + got] = top[got]


def attribute_affinities(h: History, T: float, rows: np.ndarray, prior_weight: float = 3.0,
                         half_life_days: float = 60.0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Predicted preference per attribute: for each profile the value with the highest smoothed,
    recency-weighted share of its views (weight 1), cart adds (2) and bought items (4), with the
    population's shares as a Dirichlet prior of `prior_weight` pseudo-events. Returns, per
    attribute, (value index into h.vocab[attr] or -1, share).

    The (profile, value) masses come from a radix sort of the rows by value (see _pairs)."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) > 1 and not (np.diff(rows) > 0).all():  # the grouping needs ascending rows
        order = np.argsort(rows, kind="stable")
        got = attribute_affinities(h, T, rows[order], prior_weight, half_life_days)
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        return {a: (b[back], s[back]) for a, (b, s) in got.items()}
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    pos = np.full(h.n, -1, dtype=np.int64)
    pos[rows] = np.arange(len(rows))
    pi, pt, pc = h.product_rows("idx"), h.product_rows("t"), h.product_rows("code")
    if len(rows) == h.n:  # every profile (rows ascending and distinct): pos is the identity
        r_all, keep = pi, None
    else:
        r_all = pos[pi]
        keep = r_all >= 0
    if h.latest() >= T:
        keep = pt < T if keep is None else keep & (pt < T)
    base: slice | np.ndarray = slice(None) if keep is None or keep.all() else np.flatnonzero(keep)  # all: no copies
    r_all, ac = r_all[base], pc[base]
    weight_of = np.zeros(256)
    weight_of[[PRODUCT_VIEW, CART_ADD, ITEM]] = (1.0, 2.0, 4.0)
    w_all = np.subtract(T, pt[base])  # weight * exp2(-(T - t) / half_life), in one buffer
    np.negative(w_all, out=w_all)
    np.divide(w_all, half_life_days, out=w_all)
    np.exp2(w_all, out=w_all)
    np.multiply(weight_of[ac.view(np.uint8)], w_all, out=w_all)
    for a in ATTRIBUTES:
        col = h.attrs.get(a)
        k = len(h.vocab.get(a, []))
        best = np.full(len(rows), -1, dtype=np.int64)
        share = np.zeros(len(rows))
        if col is None or k == 0:
            out[a] = (best, share)
            continue
        av = h.product_rows(a)[base]  # -1: the row has no value of this attribute
        prior = np.bincount(np.where(av >= 0, av, k), weights=w_all, minlength=k + 1)[:k]
        prior = prior / prior.sum() if prior.sum() > 0 else np.full(k, 1.0 / k)
        if len(av):
            _best_values(r_all, av, w_all, len(rows), k, prior, prior_weight, best, share)
        none = best < 0  # no history: the population's favourite
        best[none] = int(np.argmax(prior))
        share[none] = float(prior.max())
        out[a] = (best, share)
    return out
