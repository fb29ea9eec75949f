"""The stream evaluator: a validated definition (definition.py) against one profile's projected
state, in memory; and the next time at which the passage of time alone may change the result
(for the per-profile due-time schedule).

Semantics are documented in docs/segments.md and mirrored, clause for clause, by sqlgen.py;
tests/unit/test_agreement.py (hypothesis) checks the two agree.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from . import definition as d

DAY = timedelta(days=1)
US = timedelta(microseconds=1)
EARTH_KM = 6371.0088
DEG = 0.017453292519943295  # pi / 180, as the SQL side writes it


@dataclass(frozen=True)
class Ev:
    event_id: str
    name: str
    at: datetime
    properties: Mapping = field(default_factory=dict)


@dataclass
class State:
    """What the projection holds of one profile."""

    profile_id: str
    traits: Mapping = field(default_factory=dict)
    computed: Mapping = field(default_factory=dict)
    identifiers: Mapping[str, list] = field(default_factory=dict)
    events: list[Ev] = field(default_factory=list)
    accounts: list[Mapping] = field(default_factory=list)  # the traits of each linked account


def get(obj: Any, path: tuple[str, ...]) -> Any:
    """The value at `path`: the whole dotted name as one key first, else key by key through
    objects (never into lists). None when absent."""
    if not isinstance(obj, Mapping):
        return None
    if len(path) > 1:
        whole = ".".join(path)
        if whole in obj:
            return obj[whole]
    for p in path:
        if not isinstance(obj, Mapping) or p not in obj:
            return None
        obj = obj[p]
    return obj


def _num(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    try:
        return float(v)
    except OverflowError:
        return None


@lru_cache(maxsize=512)
def pattern(p: str) -> re.Pattern:
    """The Python reading of a `matches` pattern that PostgreSQL's `~` reads alike: `.` matches
    a newline, and `$` (outside brackets) only the very end."""
    out, in_set, i = [], False, 0
    while i < len(p):
        ch = p[i]
        if in_set:
            if ch == "]" and not (p[i - 1] == "[" or (p[i - 1] == "^" and p[i - 2] == "[")):
                in_set = False
        elif ch == "[":
            in_set = True
        elif ch == "$":
            ch = r"\Z"
        out.append(ch)
        i += 1
    return re.compile("".join(out), re.DOTALL)


def same(el, v) -> bool:
    """List membership: equal value of the same JSON type (1 == 1.0, true != 1)."""
    if isinstance(v, bool):
        return isinstance(el, bool) and el == v
    if isinstance(v, str):
        return isinstance(el, str) and el == v
    x = _num(el)
    return x is not None and x == v


def check(t: d.Test, v: Any, now: datetime) -> bool:
    op = t.op
    if op == "exists":
        return v is not None
    if op == "not_exists":
        return v is None
    ty, a = t.type, t.value
    if ty == "string":
        if not isinstance(v, str):
            return False
        return {
            "equals": lambda: v == a, "not_equals": lambda: v != a, "contains": lambda: a in v,
            "not_contains": lambda: a not in v, "starts_with": lambda: v.startswith(a),
            "ends_with": lambda: v.endswith(a), "matches": lambda: pattern(a).search(v) is not None,
            "in": lambda: v in a, "not_in": lambda: v not in a,
        }[op]()
    if ty == "number":
        x = _num(v)
        if x is None:
            return False
        if op == "between":
            return a[0] <= x <= a[1]
        if op == "in":
            return x in a
        return {"equals": x == a, "not_equals": x != a, "gt": x > a, "gte": x >= a, "lt": x < a, "lte": x <= a}[op]
    if ty == "boolean":
        if not isinstance(v, bool):
            return False
        return {"is_true": v is True, "is_false": v is False, "equals": v == a}[op]
    if ty == "date":
        ts = d.parse_time(v)
        if ts is None:
            return False
        if op == "before":
            return ts < a
        if op == "after":
            return ts > a
        if op == "between":
            return a[0] <= ts < a[1]
        if op == "within_last_days":
            return now - a * DAY < ts <= now
        if op == "more_than_days_ago":
            return ts <= now - a * DAY
        if op == "within_next_days":
            return now < ts <= now + a * DAY
    if ty == "list":
        if not isinstance(v, list):
            return False
        if op == "includes":
            return any(same(el, a) for el in v)
        if op == "excludes":
            return not any(same(el, a) for el in v)
        if op == "includes_any":
            return any(same(el, x) for x in a for el in v)
        if op == "includes_all":
            return all(any(same(el, x) for el in v) for x in a)
        return {"is_empty": len(v) == 0, "not_empty": len(v) > 0, "size_at_least": len(v) >= a,
                "size_at_most": len(v) <= a}[op]
    raise AssertionError((ty, op))


def test_bounds(t: d.Test, v: Any) -> Iterable[datetime]:
    """Times at which check(t, v, now) may change as now passes them."""
    if t.op not in d.TIME_OPS:
        return ()
    ts = d.parse_time(v)
    if ts is None:
        return ()
    n = t.value * DAY
    if t.op == "within_last_days":
        return (ts, ts + n)
    if t.op == "more_than_days_ago":
        return (ts + n,)
    return (ts - n, ts)  # within_next_days


def in_window(w: d.Win, at: datetime, now: datetime) -> bool:
    if w.lo_rel is not None and not at > now - timedelta(seconds=w.lo_rel):
        return False
    if w.hi_rel is not None and not at <= now - timedelta(seconds=w.hi_rel):
        return False
    if w.lo_abs is not None and not at >= w.lo_abs:
        return False
    return w.hi_abs is None or at < w.hi_abs


def window_bounds(w: d.Win, at: datetime) -> Iterable[datetime]:
    out = []
    if w.lo_rel is not None:
        out.append(at + timedelta(seconds=w.lo_rel))
    if w.hi_rel is not None:
        out.append(at + timedelta(seconds=w.hi_rel))
    return out


def _passes(filters: tuple[d.Filter, ...], e: Ev, now: datetime) -> bool:
    return all(check(f.test, get(e.properties, f.path), now) for f in filters)


def _list(v) -> list:
    return v if isinstance(v, list) else []


def _products(computed: Mapping, lst: str, now: datetime) -> list:
    """A product list of the profile. `abandoned`: the items of `products_in_cart` whose add
    (`at`) is at least ABANDON_WINDOW before now — judged by this clock, not as of the profile's
    latest event; a profile computed before products_in_cart existed gives its
    `products_abandoned`."""
    if lst == "abandoned":
        cart = get(computed, ("products_in_cart",))
        if isinstance(cart, list):
            return [x for x in cart if isinstance(x, Mapping) and (t := d.parse_time(x.get("at"))) is not None
                    and t + d.ABANDON_WINDOW <= now]
    return _list(get(computed, (f"products_{lst}",)))


def _days_since(computed: Mapping, now: datetime) -> int | None:
    ts = d.parse_time(get(computed, ("orders", "last_order_at")))
    return None if ts is None else (now - ts) // DAY


def _overdue(c: Mapping, factor: float, now: datetime) -> bool:
    n = _num(get(c, ("orders", "count")))
    first = d.parse_time(get(c, ("orders", "first_order_at")))
    last = d.parse_time(get(c, ("orders", "last_order_at")))
    if n is None or n < 2 or first is None or last is None:
        return False
    since_us = (now - last) // US
    span_us = (last - first) // US
    return since_us * (n - 1) > factor * span_us


def _distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = lat1 * DEG, lat2 * DEG
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin((lon2 * DEG - lon1 * DEG) / 2) ** 2
    return 2 * EARTH_KM * math.asin(min(1.0, math.sqrt(h)))


def _contact(s: State, channel: str) -> bool:
    types, traits = d.CONTACT[channel]
    if any(len(_list(s.identifiers.get(t))) > 0 for t in types):
        return True
    return any(isinstance(s.traits.get(t), str) and s.traits.get(t) != "" for t in traits)


def evaluate(node, s: State, now: datetime) -> bool:
    """Whether the profile satisfies the (validated) tree at `now`."""
    if isinstance(node, d.And):
        return all(evaluate(x, s, now) for x in node.items)
    if isinstance(node, d.Or):
        return any(evaluate(x, s, now) for x in node.items)
    if isinstance(node, d.Not):
        return not evaluate(node.item, s, now)
    if isinstance(node, d.TraitT):
        return check(node.test, get(s.traits, node.path), now)
    if isinstance(node, d.ComputedT):
        if node.name == d.DERIVED_DAYS:
            return check(node.test, _days_since(s.computed, now), now)
        return check(node.test, get(s.computed, node.path), now)
    if isinstance(node, d.AffinityT):
        if node.op == "top_is":
            v = get(s.computed, ("top_affinities", node.dimension))
            return isinstance(v, str) and v == node.value
        scores = get(s.computed, ("affinities", node.dimension))
        if not isinstance(scores, Mapping) or node.value not in scores:
            return False
        if node.op == "in_top":
            return True
        x = _num(scores[node.value])
        return x is not None and x >= node.score
    if isinstance(node, d.EventT):
        n = sum(1 for e in s.events
                if e.name == node.name and in_window(node.window, e.at, now) and _passes(node.filters, e, now))
        return {"at_least": n >= node.count, "at_most": n <= node.count, "exactly": n == node.count}[node.count_op]
    if isinstance(node, d.SequenceT):
        return _sequence(node, s.events, now)
    if isinstance(node, d.ReachableT):
        revoked = get(s.computed, ("consent", node.channel, "granted")) is False
        return _contact(s, node.channel) and not revoked
    if isinstance(node, d.ConsentT):
        g = get(s.computed, ("consent", node.key, "granted"))
        if node.state == "granted":
            return g is True
        if node.state == "revoked":
            return g is False
        return not isinstance(g, bool)
    if isinstance(node, d.EngagedT):
        ch = get(s.computed, ("channels", node.channel))
        if get(ch, ("engaged",)) is not True:
            return False
        ts = d.parse_time(get(ch, ("last_engagement_at",)))
        return ts is not None and now - node.days * DAY < ts <= now
    if isinstance(node, d.DeviceT):
        return any(isinstance(x, Mapping) and check(node.test, x.get(node.field), now)
                   for x in _list(get(s.computed, (node.list,))))
    if isinstance(node, d.LocationT):
        return check(node.test, get(s.computed, ("last_location", node.field)), now)
    if isinstance(node, d.NearT):
        loc = get(s.computed, ("last_location",))
        lat, lon = _num(get(loc, ("latitude",))), _num(get(loc, ("longitude",)))
        if lat is None or lon is None:
            return False
        return _distance_km(lat, lon, node.latitude, node.longitude) <= node.km
    if isinstance(node, d.AccountT):
        if node.trait is None:
            return len(s.accounts) > 0
        return any(check(node.trait.test, get(a, node.trait.path), now) for a in s.accounts)
    if isinstance(node, d.KnownT):
        known = any(t not in d.ANONYMOUS_TYPES and len(_list(v)) > 0 for t, v in s.identifiers.items())
        return known == node.known
    if isinstance(node, d.ProductT):
        items = _products(s.computed, node.list, now)
        if node.field is None:
            return len(items) > 0
        return any(isinstance(x, Mapping) and check(node.test, x.get(node.field), now) for x in items)
    if isinstance(node, d.OverdueT):
        return _overdue(s.computed, node.factor, now)
    raise AssertionError(type(node))


def _sequence(node: d.SequenceT, events: list[Ev], now: datetime) -> bool:
    """Some events e1 < e2 < ... (strictly later each) matching the steps, the last within
    `within` of the first, all inside the window. Greedy: after each step the earliest
    possible next one (optimal with strict order and a deadline)."""
    per_step = []
    for name, filters in node.steps:
        per_step.append(sorted(e.at for e in events if e.name == name and in_window(node.window, e.at, now)
                               and _passes(filters, e, now)))
    within = timedelta(microseconds=node.within_us)
    for start in per_step[0]:
        cur, ok = start, True
        for times in per_step[1:]:
            nxt = next((t for t in times if t > cur), None)
            if nxt is None or nxt > start + within:
                ok = False
                break
            cur = nxt
        if ok:
            return True
    return False


def next_boundary(node, s: State, now: datetime, nodes: list | None = None) -> datetime | None:
    """The earliest time after `now` at which the passage of time alone may change
    evaluate(node, s, ·) (conservative: it may also not change then); None if never.
    `nodes`: definition.walk(node), when the caller keeps it."""
    best: datetime | None = None

    def offer(times: Iterable[datetime]) -> None:
        nonlocal best
        for t in times:
            if t > now and (best is None or t < best):
                best = t

    for n in nodes if nodes is not None else d.walk(node):
        if isinstance(n, d.TraitT):
            offer(test_bounds(n.test, get(s.traits, n.path)))
        elif isinstance(n, d.ComputedT):
            if n.name == d.DERIVED_DAYS:
                last = d.parse_time(get(s.computed, ("orders", "last_order_at")))
                if last is not None:
                    offer([last + ((now - last) // DAY + 1) * DAY])
            else:
                offer(test_bounds(n.test, get(s.computed, n.path)))
        elif isinstance(n, d.EventT | d.SequenceT):
            steps = [(n.name, n.filters)] if isinstance(n, d.EventT) else list(n.steps)
            for name, filters in steps:
                for e in s.events:
                    if e.name != name:
                        continue
                    offer(window_bounds(n.window, e.at))
                    for f in filters:
                        offer(test_bounds(f.test, get(e.properties, f.path)))
        elif isinstance(n, d.EngagedT):
            ts = d.parse_time(get(s.computed, ("channels", n.channel, "last_engagement_at")))
            if ts is not None:
                offer([ts, ts + n.days * DAY])
        elif isinstance(n, d.AccountT) and n.trait is not None:
            for a in s.accounts:
                offer(test_bounds(n.trait.test, get(a, n.trait.path)))
        elif isinstance(n, d.OverdueT):
            offer(_overdue_bound(s.computed, n.factor, now))
        elif isinstance(n, d.ProductT) and n.list == "abandoned":
            for x in _list(get(s.computed, ("products_in_cart",))):
                t = d.parse_time(x.get("at")) if isinstance(x, Mapping) else None
                if t is not None:
                    offer([t + d.ABANDON_WINDOW])
    return best


def _overdue_bound(c: Mapping, factor: float, now: datetime) -> list[datetime]:
    n = _num(get(c, ("orders", "count")))
    first = d.parse_time(get(c, ("orders", "first_order_at")))
    last = d.parse_time(get(c, ("orders", "last_order_at")))
    if n is None or n < 2 or first is None or last is None or _overdue(c, factor, now):
        return []
    span_us = (last - first) // US
    t = last + timedelta(microseconds=max(0, math.floor(factor * span_us / (n - 1))))
    for _ in range(4):  # float rounding: step to the first microsecond at which it holds
        if _overdue(c, factor, t):
            return [t]
        t += US
    return [t]


def event_names(tree) -> set[str]:
    """The event names a tree reads (the evaluator loads only those)."""
    out: set[str] = set()
    for n in d.walk(tree):
        if isinstance(n, d.EventT):
            out.add(n.name)
        elif isinstance(n, d.SequenceT):
            out.update(name for name, _ in n.steps)
    return out
