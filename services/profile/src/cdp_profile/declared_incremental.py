"""Declared computed traits kept per profile as a foldable state: the same values as
`declared.evaluate_all(definitions, events, now=latest event)` without reading the events
again.

Pure (no I/O). Per definition (and the version that made it):

- window `all`: order-free aggregates of the matching events — the count; the sum (exact
  decimal) and count of the numeric values, their minimum and maximum; the last present
  value by (time, event id); per distinct value (JSON equality) its count and latest
  sighting (most_frequent, distinct_count);
- a time window: the matching events' (time, event id, value) inside the window as of the
  profile's latest event, pruned as that moves on (an event that falls out of the window
  never comes back into it: the latest event only moves forward). What it keeps grows with
  the matching events of one window, not with the history.

Every fold is order-free, so no event asks for a recomputation; a definition that is new,
changed (another version) or unknown to the stored state is built from the profile's
events (`DeclaredState.from_events`). Sums are exact up to the 28 significant digits of
Python's decimal context, as in `declared.evaluate`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson

from . import declared as d
from .computed import Event

VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def _us(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _US


class _One:
    """The state of one definition."""

    __slots__ = ("defn", "version", "count", "total", "nums", "low", "high", "last", "freq", "entries")

    def __init__(self, defn: d.TraitDefinition, version: int):
        self.defn, self.version = defn, version
        self.count = 0  # matching events (count without a property) or present values
        self.total = Decimal(0)
        self.nums = 0
        self.low: Decimal | None = None
        self.high: Decimal | None = None
        self.last: list | None = None  # [us, eid, value]
        self.freq: dict[str, list] = {}  # canonical JSON -> [count, us, eid, value of the latest sighting]
        self.entries: list[list] = []  # windowed: [us, eid, value] sorted

    def fold(self, e: Event, us: int, now_us: int) -> None:
        x = self.defn
        if not x.matches(e):
            return
        value = d.lookup(e.properties, x.property) if x.property is not None else None
        if x.window is not None:
            if us >= now_us - x.window // _US:
                self.entries.append([us, e.event_id, value])
                self.entries.sort(key=lambda r: (r[0], r[1]))
            return
        if x.property is None:
            self.count += 1
            return
        if value is None:
            return
        self.count += 1
        agg = x.aggregation
        if agg == "last":
            if self.last is None or (us, e.event_id) > (self.last[0], self.last[1]):
                self.last = [us, e.event_id, value]
        elif agg in ("most_frequent", "distinct_count"):
            f = self.freq.setdefault(d._key(value), [0, us, e.event_id, value])
            f[0] += 1
            if (us, e.event_id) >= (f[1], f[2]):
                f[1], f[2], f[3] = us, e.event_id, value
        elif agg in ("sum", "avg", "min", "max"):
            n = d.number(value)
            if n is not None:
                self.total += n
                self.nums += 1
                self.low = n if self.low is None or n < self.low else self.low
                self.high = n if self.high is None or n > self.high else self.high

    def prune(self, now_us: int) -> None:
        if self.defn.window is not None and self.entries:
            start = now_us - self.defn.window // _US
            if self.entries[0][0] < start:
                self.entries = [r for r in self.entries if r[0] >= start]

    def value(self):
        x = self.defn
        agg = x.aggregation
        if x.window is not None:
            return _aggregate(x, self.entries)
        if x.property is None or agg == "count":
            return self.count
        if agg == "last":
            return self.last[2] if self.last else None
        if agg == "distinct_count":
            return len(self.freq)
        if agg == "most_frequent":
            if not self.freq:
                return None
            return max(self.freq.values(), key=lambda f: (f[0], f[1], f[2]))[3]
        if not self.nums:
            return None
        if agg == "sum":
            return d._out(self.total)
        if agg == "avg":
            return d._out(self.total / self.nums)
        return d._out(self.low if agg == "min" else self.high)

    def dump(self) -> dict:
        return {"ver": self.version, "n": self.count, "s": str(self.total), "k": self.nums,
                "lo": None if self.low is None else str(self.low), "hi": None if self.high is None else str(self.high),
                "last": self.last, "f": self.freq, "e": self.entries}

    @classmethod
    def load(cls, defn: d.TraitDefinition, data: dict) -> _One:
        o = cls(defn, data["ver"])
        o.count, o.total, o.nums = data["n"], Decimal(data["s"]), data["k"]
        o.low = None if data["lo"] is None else Decimal(data["lo"])
        o.high = None if data["hi"] is None else Decimal(data["hi"])
        o.last, o.freq, o.entries = data["last"], data["f"], data["e"]
        return o


def _aggregate(x: d.TraitDefinition, entries: list[list]):
    """`declared._evaluate` over the window's matching events (in (time, event id) order)."""
    if x.property is None:
        return len(entries)
    values = [r[2] for r in entries if r[2] is not None]
    agg = x.aggregation
    if agg == "count":
        return len(values)
    if agg == "last":
        return values[-1] if values else None
    if agg in ("most_frequent", "distinct_count"):
        counts: dict[str, list] = {}
        for i, v in enumerate(values):
            c = counts.setdefault(d._key(v), [0, 0, v])
            c[0] += 1
            c[1], c[2] = i, v
        if agg == "distinct_count":
            return len(counts)
        return max(counts.values(), key=lambda c: (c[0], c[1]))[2] if counts else None
    nums = [n for n in (d.number(v) for v in values) if n is not None]
    if not nums:
        return None
    if agg == "sum":
        return d._out(sum(nums, Decimal(0)))
    if agg == "avg":
        return d._out(sum(nums, Decimal(0)) / len(nums))
    return d._out(min(nums) if agg == "min" else max(nums))


class DeclaredState:
    """The declared traits of one profile as a foldable state."""

    def __init__(self, defs: Iterable[tuple[d.TraitDefinition, int]], now_us: int | None = None):
        self.ones = {x.name: _One(x, v) for x, v in defs}
        self.now_us = now_us  # the profile's latest event

    def covers(self, defs: Iterable[tuple[d.TraitDefinition, int]]) -> bool:
        """Whether this state was built for exactly these definitions (names and versions)."""
        want = {x.name: v for x, v in defs}
        return want == {n: o.version for n, o in self.ones.items()}

    @classmethod
    def from_events(cls, defs: list[tuple[d.TraitDefinition, int]], events: Iterable[Event],
                    now: datetime | None = None) -> DeclaredState:
        """From the profile's events (or those some definition can use, with `now` = the
        profile's latest event)."""
        evs = d._canonical(events)
        now_us = _us(now) if now is not None else (_us(evs[-1].occurred_at) if evs else None)
        if now_us is not None:
            evs = [e for e in evs if _us(e.occurred_at) <= now_us]
        st = cls(defs, now_us)
        for e in evs:
            st._fold(e, _us(e.occurred_at))
        st._prune()
        return st

    def fold(self, events: Iterable[Event]) -> None:
        """Folds new events (never folded before), in any order."""
        evs = [(e, _us(e.occurred_at)) for e in events]
        latest = max((us for _, us in evs), default=None)
        if latest is not None and (self.now_us is None or latest > self.now_us):
            self.now_us = latest
            self._prune()
        for e, us in evs:
            self._fold(e, us)

    def _fold(self, e: Event, us: int) -> None:
        for o in self.ones.values():
            o.fold(e, us, self.now_us)

    def _prune(self) -> None:
        if self.now_us is not None:
            for o in self.ones.values():
                o.prune(self.now_us)

    def values(self) -> dict:
        """{name: value}, as declared.evaluate_all gives as of the latest event."""
        return {n: o.value() for n, o in self.ones.items()}

    def dumps(self) -> bytes:
        return orjson.dumps({"v": VERSION, "now": self.now_us, "d": {n: o.dump() for n, o in self.ones.items()}})

    @classmethod
    def loads(cls, data: bytes, defs: list[tuple[d.TraitDefinition, int]]) -> DeclaredState | None:
        """The stored state for these definitions; None when it does not cover exactly them
        (a definition added, changed or deleted since) or is of another layout."""
        raw = orjson.loads(data)
        if not isinstance(raw, dict) or raw.get("v") != VERSION:
            return None
        stored = raw["d"]
        if {x.name: v for x, v in defs} != {n: s["ver"] for n, s in stored.items()}:
            return None
        st = cls([], raw["now"])
        st.ones = {x.name: _One.load(x, stored[x.name]) for x, _ in defs}
        return st
