"""The built-in computed traits kept per profile as a compact state that folds one event at
a time: the same values as `computed.compute` over all the profile's events (as of its
latest event), without reading the history again.

Pure (no I/O). `State.fold(event)` folds one new event (any order); `State.result()` gives
exactly what `computed.compute(events, now=latest event)` gives for the events folded so
far (tested with random event sequences in random orders: tests/unit/test_incremental.py).
`State.from_events(events)` builds the state from a profile's whole history (merges,
splits, rebuilds, and the fall-back below).

Most traits are order-free folds: counters, sums (money in exact decimal), minimum and
maximum times, last-by-(time, event id) values (location, NPS, consent, timezone, devices'
versions), per-channel figures, and the affinities (exact sums of growth terms, decayed once
when read: `computed.affinity_term`). A few depend on neighbouring events and fold only when
the event is newest; otherwise `fold` raises `Unfoldable` and the caller rebuilds that one
profile from all its events:

- sessions: a client-side event older than the person's latest client-side event;
- preferred hour: the latest timezone changes while activity is already counted (the hour
  histogram is kept in the person's timezone);
- orders: a second report of an order already counted (its richest report may change);
- the last-N product lists: a product that dropped out of a list comes back with fields
  missing (they would be filled from its older mentions, which are not kept); an older
  mention disagreeing with a kept field.

What grows with a person's history (all small next to the events): the keys of products
that dropped out of the lists, the order ids, each product's latest add and the latest
order and removal time per product (abandonment is judged when read), devices and
browsers, affinity values. Nothing is bounded that would make a value differ from the
full computation.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache

import orjson

from . import computed as c
from .computed import Event, Settings

VERSION = 1  # of the state's layout; a state of another version is rebuilt from the events
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_FIELDS = ("product_id", "sku", "name", "category", "brand", "price")


class Unfoldable(Exception):
    """This event cannot be folded exactly: compute the profile again from all its events."""


def _us(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _US


def _dt(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def time_of(us: int) -> datetime:
    """A state's time (microseconds since the epoch) as a datetime."""
    return _dt(us)


def _iso(us: int | None) -> str | None:
    return None if us is None else _iso_us(us)


_NAIVE_EPOCH = datetime(1970, 1, 1)


@lru_cache(maxsize=1 << 16)
def _iso_us(us: int) -> str:
    """computed._iso of the time, from microseconds (cached: a result repeats its times)."""
    return (_NAIVE_EPOCH + timedelta(microseconds=us)).isoformat(timespec="milliseconds") + "Z"


def _key(p: c._Product) -> str:
    k = p.key
    return f"{k[0]}\x1f{k[1]}"


def _tuple(key: str) -> tuple[str, str]:
    a, b = key.split("\x1f", 1)
    return a, b


def _match_keys(sku: str | None, product_id: str | None, name: str | None) -> list[str]:
    keys = [f"{t}\x1f{v}" for t, v in (("sku", sku), ("id", product_id)) if v]
    if not keys and name:
        keys.append(f"name\x1f{name}")
    return keys


def _price(v: str | None) -> Decimal | None:
    return None if v is None else Decimal(v)


def _fields(p: c._Product) -> list:
    return [p.product_id, p.sku, p.name, p.category, p.brand, None if p.price is None else str(p.price)]


def _product_out(f: list, at_us: int) -> dict:
    return {"product_id": f[0], "sku": f[1], "name": f[2], "category": f[3], "brand": f[4],
            "price": float(Decimal(f[5])) if f[5] is not None else None, "at": _iso(at_us)}


@lru_cache(maxsize=4096)
def _term(us: int, weight: float, half: float) -> tuple[int, int]:
    return c.affinity_term(_dt(us), weight, half)


class _List:
    """The last `n` distinct products of one kind (viewed, added, purchased), as
    `computed._ProductList` keeps them: per product its newest mention's rank
    (time, event id, -position), and each field from the newest mention that has it.

    Kept: the `n` newest products, each with the rank of its newest mention by (time,
    event id, position) and which fields that mention set; and the keys of the products
    that dropped out. `bounded=False` (building from a whole history) keeps every product
    until `trim`."""

    __slots__ = ("n", "entries", "evicted", "bounded", "_out")

    def __init__(self, n: int, entries: dict | None = None, evicted: Iterable[str] = (), bounded: bool = True):
        self.n = max(0, n)
        # key -> [list rank (us, eid, -pos), newest rank (us, eid, pos), fields (6), bits set by the newest]
        self.entries: dict[str, list] = entries or {}
        self.evicted: set[str] = set(evicted)
        self.bounded = bounded
        self._out: list[dict] | None = None  # newest(), until the next add

    def add(self, p: c._Product, us: int, eid: str, pos: int, newest_event: bool) -> None:
        if self.n == 0:
            return
        self._out = None
        key = _key(p)
        lr, nr, f = [us, eid, -pos], [us, eid, pos], _fields(p)  # lists: stored and loaded as they are
        cur = self.entries.get(key)
        if cur is None:
            if key in self.evicted:
                # Every earlier mention of it ranks below the list's floor (which only rises): one
                # that ranks below it too leaves it out; one above it is its newest mention, and
                # brings it back (an older event than the person's latest included) when it has
                # every field, none to fill from the older mentions that are not kept.
                if not newest_event and not lr > self._floor():
                    return  # it stays out of the list
                if any(x is None for x in f):
                    raise Unfoldable("a product back in the list with fields to fill from older mentions")
                self.evicted.discard(key)
            bits = sum(1 << i for i, x in enumerate(f) if x is not None)
            self.entries[key] = [lr, nr, f, bits]
            if self.bounded:
                self._trim()
            return
        if lr > cur[0]:
            cur[0] = lr
        old = cur[2]
        if nr > cur[1]:
            cur[2] = [x if x is not None else o for x, o in zip(f, old, strict=True)]
            cur[1] = nr
            cur[3] = sum(1 << i for i, x in enumerate(f) if x is not None)
            return
        for i, x in enumerate(f):  # an older mention fills only what no newer one has
            if x is None or cur[3] >> i & 1:
                continue
            if old[i] is None:
                old[i] = x
            elif old[i] != x:
                raise Unfoldable("an older mention disagrees with a field of a newer one")

    def _floor(self) -> tuple:
        if len(self.entries) < self.n:
            return [-1 << 62, "", 0]
        return min(v[0] for v in self.entries.values())

    def _trim(self) -> None:
        while len(self.entries) > self.n:
            key = min(self.entries, key=lambda k: (self.entries[k][0], _tuple(k)))
            del self.entries[key]
            self.evicted.add(key)

    def trim(self) -> None:
        self.bounded = True
        self._out = None
        self._trim()

    def newest(self) -> list[dict]:
        """The list as computed gives it (kept until the next add: most events touch no list;
        callers serialise it, never change it)."""
        if self._out is None:
            ranked = sorted(self.entries.items(), key=lambda kv: (kv[1][0], _tuple(kv[0])), reverse=True)[:self.n]
            self._out = [_product_out(v[2], v[0][0]) for _, v in ranked]
        return self._out

    def dump(self) -> list:
        return [self.entries, sorted(self.evicted)]

    @classmethod
    def load(cls, n: int, data: list) -> _List:
        return cls(n, data[0], data[1])


class State:
    """One person's computed traits as a foldable state (see the module's docstring)."""

    def __init__(self, settings: Settings = Settings(), *, building: bool = False):
        if settings.affinity_half_life_days <= 0:
            raise ValueError("incremental computed traits need a positive affinity half-life")
        self.s = settings
        self.building = building
        self.n = 0
        self.first: int | None = None
        self.last: tuple[int, str] | None = None
        self.sessions = 0
        self.last_client: tuple[int, str] | None = None
        self.tz: tuple[int, str, str] | None = None  # the latest valid context.timezone
        self.hours: dict[int, int] = {}  # activity by hour of day, in the effective timezone
        self.activity: list[int] = []  # building: activity times, counted into `hours` at the end
        self.channels: dict[str, list] = {}  # channel -> [events, engaged, last engagement us]
        self.viewed = _List(settings.last_n, bounded=not building)
        self.added = _List(settings.last_n, bounded=not building)
        self.purchased = _List(settings.last_n, bounded=not building)
        self.adds: dict[str, list] = {}  # product key -> [us, eid, pos, fields] of its latest add
        self.ordered: dict[str, int] = {}  # match key -> latest order time containing it
        self.removed: dict[str, int] = {}  # match key -> latest removal time
        self._cart: tuple[list, list[dict]] | None = None  # the cart as result() reads it, until it changes
        self.order_ids: set[str] = set()
        self.orders = 0
        self.revenue = Decimal(0)
        self.discounted = 0
        self.first_order: int | None = None
        self.last_order: int | None = None
        self.pending_orders: list[Event] = []  # building: grouped and counted at the end
        self.refunds: dict[str, list] = {}  # refund id -> [us, eid, amount]
        self.refunded_other = Decimal(0)  # refunds without an id, one each
        self.affinity: dict[str, dict[str, tuple[int, int]]] = {d: {} for d in c.AFFINITY_DIMENSIONS}
        self.devices: dict[str, list] = {}  # key -> [type, manufacturer, model, events, us, eid]
        self.oses: dict[str, list] = {}  # name -> [events, us, eid, version]
        self.browsers: dict[str, list] = {}
        self.loc_device: list | None = None  # [us, eid, location]
        self.loc_address: list | None = None  # [from identify, us, eid, address]
        self.loc_ip: list | None = None  # [us, eid, ip]
        self.nps: list | None = None  # [us, eid, score]
        self.consent: dict[str, list] = {}  # key -> [us, eid, index, granted, source]

    # --- building from a whole history ----------------------------------------------------

    @classmethod
    def from_events(cls, events: Iterable[Event], settings: Settings = Settings()) -> State:
        """The state of a person from all their events (exact; any order, duplicates dropped)."""
        st = cls(settings, building=True)
        for e in c._canonical(events):
            st.fold(e)
        st._finish_build()
        return st

    def _finish_build(self) -> None:
        zone = self._zone()
        self.hours = dict(Counter(_dt(t).astimezone(zone).hour for t in self.activity))
        self.activity = []
        for at, eid, amount, disc, products in c._orders(self.pending_orders):
            self._count_order(_us(at), eid, amount, disc, products)
        for e in self.pending_orders:
            oid = c._str(e.properties.get("order_id"))
            if oid:
                self.order_ids.add(oid)
        self.pending_orders = []
        for lst in (self.viewed, self.added, self.purchased):
            lst.trim()
        self.building = False

    # --- folding ----------------------------------------------------------------------------

    def fold(self, e: Event) -> None:
        """Folds one event not folded before. Raises Unfoldable when the result would not be
        exact (the state is then unusable: build it again from all the events)."""
        us, eid = _us(e.occurred_at), e.event_id
        rank = (us, eid)
        newest = self.last is None or rank > self.last
        self.n += 1
        if self.first is None or us < self.first:
            self.first = us
        if newest:
            self.last = rank
        cls = c._classify(e)
        ctx = e.context

        # timezone first: activity is counted in the person's latest timezone
        name = c._str(ctx.get("timezone"))
        if name and c._zone(name) is not None and (self.tz is None or rank > self.tz[:2]):
            before = self._tz_name()
            self.tz = (us, eid, name)
            if name != before and self.hours:
                raise Unfoldable("the timezone changed after activity was counted")

        # sessions and activity
        if cls.client:
            lc = self.last_client
            if lc is not None and rank < lc:
                # At the latest client-side event's very time (a tie broken by event id) it changes
                # nothing: the visit that time starts (or continues) is the same. Earlier: rebuild.
                if us != lc[0]:
                    raise Unfoldable("a client-side event older than the latest one")
            elif lc is None or us - lc[0] > self.s.session_gap // _US:
                self.sessions += 1
                self._activity(us)
                self.last_client = rank
            else:
                self.last_client = rank
        elif cls.channel is not None and cls.engaged and not cls.copy:
            self._activity(us)

        # channels
        if cls.channel is not None:
            ch = self.channels.setdefault(cls.channel, [0, False, None])
            ch[0] += 1
            if cls.engaged:
                ch[1] = True
                if ch[2] is None or us > ch[2]:
                    ch[2] = us

        # products, orders, refunds
        if e.kind == "track":
            name = e.name
            if name == "Product Viewed":
                for i, p in enumerate(c._event_products(e)):
                    self.viewed.add(p, us, eid, i, newest)
                    self._hit(us, self.s.view_weight, p)
            elif name == "Product Added":
                self._cart = None
                for i, p in enumerate(c._event_products(e)):
                    self.added.add(p, us, eid, i, newest)
                    key = _key(p)
                    cur = self.adds.get(key)
                    if cur is None or (us, eid, i) > (cur[0], cur[1], cur[2]):
                        self.adds[key] = [us, eid, i, _fields(p)]
                    self._hit(us, self.s.add_weight, p)
            elif name == "Product Removed":
                self._cart = None
                for p in c._event_products(e):
                    for k in _match_keys(p.sku, p.product_id, p.name):
                        if us > self.removed.get(k, -1 << 62):
                            self.removed[k] = us
            elif name == "Order Completed":
                self._cart = None
                for p in c._event_products(e):
                    for k in _match_keys(p.sku, p.product_id, p.name):
                        if us > self.ordered.get(k, -1 << 62):
                            self.ordered[k] = us
                self._order(e, us, newest)
            elif name == "Order Refunded":
                self._refund(e, us)

        # devices, operating systems, browsers
        dev, os_ = c._app_device(ctx)
        bro = None
        ua = c._str(ctx.get("userAgent"))
        if ua and (dev is None or os_ is None):
            udev, uos, bro = c._ua(ua)
            dev, os_ = dev or udev, os_ or uos
        if dev is not None:
            key = f"{dev['type']}\x1f{dev['manufacturer'] or ''}\x1f{dev['model'] or ''}"
            cur = self.devices.get(key)
            if cur is None:
                self.devices[key] = [dev["type"], dev["manufacturer"], dev["model"], 1, us, eid]
            else:
                cur[3] += 1
                if rank > (cur[4], cur[5]):
                    cur[4], cur[5] = us, eid
        if os_ is not None:
            self._seen(self.oses, os_["name"], us, eid, os_["version"])
        if bro is not None:
            self._seen(self.browsers, bro["name"], us, eid, bro["version"])

        # location: device > address > ip, each the latest of its kind
        if "location" in ctx:
            loc = c._location(ctx)
            if loc and (self.loc_device is None or rank > (self.loc_device[0], self.loc_device[1])):
                self.loc_device = [us, eid, loc]
        for from_identify, traits in ((True, c._person_traits(e)), (False, c._obj(ctx, "traits"))):
            a = c._address(traits)
            if a:
                la = self.loc_address
                if la is None or (from_identify, us, eid) > (la[0], la[1], la[2]):
                    self.loc_address = [from_identify, us, eid, a]
        ip = c._str(ctx.get("ip"))
        if ip and (self.loc_ip is None or rank > (self.loc_ip[0], self.loc_ip[1])):
            self.loc_ip = [us, eid, ip]

        # NPS and consent
        score = c._nps(e)
        if score is not None and (self.nps is None or rank > (self.nps[0], self.nps[1])):
            self.nps = [us, eid, score]
        for i, (key, granted, source) in enumerate(c._event_consents(e)):
            cur = self.consent.get(key)
            if cur is None or (us, eid, i) > (cur[0], cur[1], cur[2]):
                self.consent[key] = [us, eid, i, granted, source]

    def _tz_name(self) -> str:
        if self.tz is not None:
            return self.tz[2]
        return self.s.default_timezone if c._zone(self.s.default_timezone) is not None else "UTC"

    def _zone(self):
        return c._zone(self._tz_name()) or UTC

    def _activity(self, us: int) -> None:
        if self.building:
            self.activity.append(us)
            return
        h = _dt(us).astimezone(self._zone()).hour
        self.hours[h] = self.hours.get(h, 0) + 1

    def _hit(self, us: int, weight: float, p: c._Product) -> None:
        term = _term(us, weight, self.s.affinity_half_life_days)
        for dim, v in c.affinity_values(p, self.s):
            d = self.affinity[dim]
            d[v] = c.dyadic_add(d.get(v), term)

    @staticmethod
    def _seen(table: dict, name: str, us: int, eid: str, version) -> None:
        cur = table.get(name)
        if cur is None:
            table[name] = [1, us, eid, version]
            return
        cur[0] += 1
        if (us, eid) >= (cur[1], cur[2]):
            cur[1], cur[2], cur[3] = us, eid, version

    def _order(self, e: Event, us: int, newest: bool) -> None:
        if self.building:
            self.pending_orders.append(e)
            return
        oid = c._str(e.properties.get("order_id"))
        if oid:
            if oid in self.order_ids:
                raise Unfoldable("another report of an order already counted")
            self.order_ids.add(oid)
        products = c._event_products(e)
        amount = c._amount(e.properties, products)
        disc = c._dec(e.properties.get("discount"))
        discounted = bool(c._str(e.properties.get("coupon"))) or (disc is not None and disc > 0) or any(
            p.discounted for p in products)
        self._count_order(us, e.event_id, amount if amount is not None else Decimal(0), discounted, products,
                          newest=newest)

    def _count_order(self, us: int, eid: str, amount: Decimal, discounted: bool, products: list[c._Product],
                     newest: bool = True) -> None:
        self.orders += 1
        self.revenue += amount
        self.discounted += bool(discounted)
        if self.first_order is None or us < self.first_order:
            self.first_order = us
        if self.last_order is None or us > self.last_order:
            self.last_order = us
        for i, p in enumerate(products):
            self.purchased.add(p, us, eid, i, newest)
            self._hit(us, self.s.purchase_weight, p)

    def _refund(self, e: Event, us: int) -> None:
        amount = c._amount(e.properties, c._event_products(e))
        amount = amount if amount is not None else Decimal(0)
        rid = c._str(e.properties.get("refund_id"))
        if not rid:
            self.refunded_other += amount
            return
        cur = self.refunds.get(rid)
        if cur is None or (us, e.event_id) < (cur[0], cur[1]):  # the first report counts
            self.refunds[rid] = [us, e.event_id, str(amount)]

    # --- the values --------------------------------------------------------------------------

    def result(self) -> dict[str, object]:
        """What `computed.compute(events, now=the latest event)` gives for the folded events."""
        if self.building:
            raise RuntimeError("the state is being built")
        s = self.s
        now_us = self.last[0] if self.last else None
        now = _dt(now_us) if now_us is not None else None

        channels = {k: {"engaged": v[1], "last_engagement_at": _iso(v[2]), "events": v[0]}
                    for k, v in sorted(self.channels.items(), key=lambda kv: (
                        c.CHANNEL_NAMES.index(kv[0]) if kv[0] in c.CHANNEL_NAMES else len(c.CHANNEL_NAMES), kv[0]))}

        # abandoned: judged on each product's latest add, as of now
        window = s.abandon_window // _US
        if self._cart is None:  # only adds, removals and orders change it
            in_cart = []
            for key, (at, eid, pos, f) in self.adds.items():
                keys = _match_keys(f[1], f[0], f[2])
                if any(self.ordered.get(k, -1 << 62) >= at for k in keys):
                    continue
                if any(self.removed.get(k, -1 << 62) >= at for k in keys):
                    continue
                in_cart.append(((at, eid, -pos), _tuple(key), f))
            in_cart.sort(key=lambda x: (x[0], x[1]), reverse=True)
            self._cart = (in_cart, [_product_out(f, r[0]) for r, _, f in in_cart[:max(0, s.cart_limit)]])
        in_cart, products_in_cart = self._cart
        abandoned = [x for x in in_cart if now_us is not None and now_us >= x[0][0] + window]
        products_abandoned = [_product_out(f, r[0]) for r, _, f in abandoned[:max(0, s.last_n)]]

        n = self.orders
        revenue = self.revenue
        refunded = sum((Decimal(v[2]) for v in self.refunds.values()), self.refunded_other)
        orders_out = {
            "count": n,
            "revenue_total": float(revenue),
            "revenue_avg": float((revenue / n).quantize(Decimal("0.01"), ROUND_HALF_EVEN)) if n else None,
            "first_order_at": _iso(self.first_order),
            "last_order_at": _iso(self.last_order),
            "days_since_last_order": max(0, (now_us - self.last_order) // (86_400 * 1_000_000))
            if self.last_order is not None and now_us is not None else None,
            "refunded_total": float(refunded),
        }

        half = s.affinity_half_life_days
        scores = c.affinity_scores(self.affinity, now, half) if now else {d: {} for d in c.AFFINITY_DIMENSIONS}
        affinities, top = c.rank_affinities(scores, s)

        devices = [{"type": v[0], "manufacturer": v[1], "model": v[2], "events": v[3], "last_seen_at": _iso(v[4])}
                   for k, v in sorted(self.devices.items(), key=lambda kv: ((kv[1][4], kv[1][5]),
                                                                             tuple(kv[0].split("\x1f"))),
                                      reverse=True)]

        def seen(table: dict) -> list[dict]:
            return [{"name": k, "events": v[0], "version": v[3], "last_seen_at": _iso(v[1])}
                    for k, v in sorted(table.items(), key=lambda kv: ((kv[1][1], kv[1][2]), (kv[0],)), reverse=True)]

        if self.loc_device is not None:
            last_location = {"source": "device", **self.loc_device[2], "at": _iso(self.loc_device[0])}
        elif self.loc_address is not None:
            last_location = {"source": "address", **self.loc_address[3], "at": _iso(self.loc_address[1])}
        elif self.loc_ip is not None:
            last_location = {"source": "ip", "ip": self.loc_ip[2], "at": _iso(self.loc_ip[0])}
        else:
            last_location = None

        preferred_hour = None
        if self.hours:
            best = max(sorted(self.hours), key=lambda h: self.hours[h])
            preferred_hour = {"hour": best, "timezone": self._tz_name()}

        nps = None
        if self.nps is not None:
            score = self.nps[2]
            nps = {"score": score, "category": "promoter" if score >= 9 else "passive" if score >= 7 else "detractor",
                   "at": _iso(self.nps[0])}

        return {
            "first_seen": _iso(self.first),
            "last_seen": _iso(now_us),
            "sessions": self.sessions,
            "products_viewed": self.viewed.newest(),
            "products_added": self.added.newest(),
            "products_purchased": self.purchased.newest(),
            "products_abandoned": products_abandoned,
            "products_in_cart": products_in_cart,
            "orders": orders_out,
            "discount_share": round(self.discounted / n, 4) if n else None,
            "channels": channels,
            "devices": devices,
            "operating_systems": seen(self.oses),
            "browsers": seen(self.browsers),
            "last_location": last_location,
            "preferred_hour": preferred_hour,
            "affinities": affinities,
            "top_affinities": top,
            "nps": nps,
            "consent": {k: {"granted": v[3], "at": _iso(v[0]), "source": v[4]} for k, v in sorted(self.consent.items())},
        }

    # --- storage -------------------------------------------------------------------------------

    def dumps(self) -> bytes:
        """The state as compact JSON, deflated (profile_computed.state)."""
        if self.building:
            raise RuntimeError("the state is being built")
        # level 1, an 8 KiB window and a smaller hash table: about half the time of zlib.compress(x, 1)
        # on states of a few KiB (most of it is setting up the deflate state), nearly the same size
        z = zlib.compressobj(1, zlib.DEFLATED, 13, 6)
        return z.compress(self._json()) + z.flush()

    def _json(self) -> bytes:
        return orjson.dumps({
            "v": VERSION, "n": self.n, "first": self.first, "last": self.last, "ses": self.sessions,
            "lc": self.last_client, "tz": self.tz, "hours": {str(h): k for h, k in self.hours.items()},
            "ch": self.channels, "pv": self.viewed.dump(), "pa": self.added.dump(), "pp": self.purchased.dump(),
            "adds": self.adds, "ot": self.ordered, "rt": self.removed, "oids": sorted(self.order_ids),
            "oc": self.orders, "rev": str(self.revenue), "od": self.discounted, "fo": self.first_order,
            "lo": self.last_order, "refs": self.refunds, "refo": str(self.refunded_other),
            "aff": {d: {v: [format(m, "x"), e] for v, (m, e) in vals.items()} for d, vals in self.affinity.items()},
            "dev": self.devices, "os": self.oses, "br": self.browsers, "ld": self.loc_device, "la": self.loc_address,
            "li": self.loc_ip, "nps": self.nps, "con": self.consent,
        })

    @classmethod
    def loads(cls, data: bytes | str, settings: Settings = Settings()) -> State | None:
        """A stored state; None when it is of another layout version or does not read (rebuild it
        from the events)."""
        try:
            d = orjson.loads(zlib.decompress(data))
        except (zlib.error, orjson.JSONDecodeError):
            return None
        if not isinstance(d, dict) or d.get("v") != VERSION:
            return None
        st = cls.__new__(cls)  # every field is set here
        st.s, st.building, st.activity, st.pending_orders = settings, False, [], []
        st.n, st.first = d["n"], d["first"]
        st.last = tuple(d["last"]) if d["last"] else None
        st.sessions = d["ses"]
        st.last_client = tuple(d["lc"]) if d["lc"] else None
        st.tz = tuple(d["tz"]) if d["tz"] else None
        st.hours = {int(h): k for h, k in d["hours"].items()}
        st.channels = d["ch"]
        st.viewed = _List.load(settings.last_n, d["pv"])
        st.added = _List.load(settings.last_n, d["pa"])
        st.purchased = _List.load(settings.last_n, d["pp"])
        st.adds, st.ordered, st.removed, st._cart = d["adds"], d["ot"], d["rt"], None
        st.order_ids = set(d["oids"])
        st.orders, st.revenue, st.discounted = d["oc"], Decimal(d["rev"]), d["od"]
        st.first_order, st.last_order = d["fo"], d["lo"]
        st.refunds, st.refunded_other = d["refs"], Decimal(d["refo"])
        st.affinity = {dim: {v: (int(m, 16), e) for v, (m, e) in d["aff"].get(dim, {}).items()}
                       for dim in c.AFFINITY_DIMENSIONS}
        st.devices, st.oses, st.browsers = d["dev"], d["os"], d["br"]
        st.loc_device, st.loc_address, st.loc_ip = d["ld"], d["la"], d["li"]
        st.nps, st.consent = d["nps"], d["con"]
        return st


def fold_all(state: State | None, events: Iterable[Event], history: Iterable[Event] | None = None) -> State:
    """Folds new events into a state; `history` (every event of the person, these included)
    is used when the state cannot fold them. Convenience for tests and small callers."""
    evs = sorted(events, key=lambda e: (c._aware(e.occurred_at), e.event_id))
    if state is not None:
        try:
            for e in evs:
                state.fold(e)
            return state
        except Unfoldable:
            if history is None:
                raise
    return State.from_events(history if history is not None else evs)


__all__ = ["State", "Unfoldable", "fold_all", "Settings"]
