"""Declared computed traits: definitions an operator adds (`cdp trait apply -f traits.yaml`,
`TraitService/ApplyTraitDefinitions`) beside the built-in ones of `computed.py`.

Pure (no I/O). A definition names an event filter, an aggregation, the property it
aggregates and a time window::

    definitions:
      - name: orders_90d                 # ^[a-z][a-z0-9_]{1,63}$, not a built-in computed trait
        description: Orders in the last 90 days
        event:                           # optional: without it every event counts
          kinds: [track]                 # or `kind: track` (track, identify, page, screen, group, alias)
          names: [Order Completed]       # or `name: …`: the track event / page or screen name, exact
          where:                         # every condition must hold (at most 20)
            - {property: currency, equals: EUR}
            - {property: total, gte: 10, lt: 1000}
            - {property: coupon, exists: true}
            - {property: shipping.country, in: [ES, PT]}
        aggregation: count               # count, sum, avg, min, max, last, most_frequent, distinct_count
        property: total                  # dotted path into the event's properties; optional for count
        window: 90d                      # Nh, Nd, Nw (at most 3650 days) or `all`

`evaluate(defn, events, now)` computes a definition over a person's events: a function of
the *set* of events (de-duplicated by event id, ordered by (time, event id)) and `now`, so
arrival order, merges, splits and rebuilds give the same value. The window holds the events
with `now - window <= occurred_at <= now` (both edges included). The profile service
evaluates as of the profile's latest event (like the built-in traits).

Values read from events:
- *present*: the path leads to a value that is not null;
- *numeric* (sum, avg, min, max, gt/gte/lt/lte): JSON numbers (not booleans) and strings
  holding a finite decimal number (`"12.50"`); other values are skipped;
- *equal* (`equals`, `in`, most_frequent, distinct_count): JSON equality, where 31 and 31.0
  are one value and "31" another.

Results (JSON): count and distinct_count: an integer (0 without data); sum, avg, min, max:
a number (an integer when whole; computed exactly in decimal), None without numeric values;
last: the latest present value as sent; most_frequent: the value present most often (ties:
the one seen last), None without data.

Errors raise `cdp_core.errors.InvalidArgument` whose field names the key at fault, e.g.
`definitions[0].window` or `definitions[2].event.where[1].gte`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

import yaml

from cdp_core.errors import InvalidArgument

from . import computed

AGGREGATIONS = ("count", "sum", "avg", "min", "max", "last", "most_frequent", "distinct_count")
ALIASES = {"most-frequent": "most_frequent", "distinct-count": "distinct_count", "average": "avg"}
KINDS = ("track", "identify", "page", "screen", "group", "alias")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
WINDOW_RE = re.compile(r"^\s*(\d{1,7})\s*([hdw])\s*$")
UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
RANGE_OPS = ("gt", "gte", "lt", "lte")
OPERATORS = ("equals", "in", "exists", *RANGE_OPS)

# Limits.
MAX_DEFINITIONS = 100  # definitions held by the service (and in one document)
MAX_DOCUMENT_BYTES = 256 * 1024
MAX_WINDOW_DAYS = 3650
MAX_EVENT_NAMES = 100
MAX_EVENT_NAME = 256
MAX_CONDITIONS = 20
MAX_IN_VALUES = 100
MAX_PATH = 256  # characters of a property path
MAX_PATH_DEPTH = 10  # dotted segments
MAX_DESCRIPTION = 1024
MAX_STRING_VALUE = 1024  # an `equals` / `in` string

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Names the built-in computed traits use, and the key declared values are served under.
RESERVED = frozenset(computed.compute([], now=_EPOCH)) | {"declared"}
_DEFINITION_KEYS = ("name", "description", "event", "aggregation", "property", "window")
_EVENT_KEYS = ("kind", "kinds", "name", "names", "where")


# --- the definition -------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    path: tuple[str, ...]
    op: str  # equals | in | exists | range
    equals: str = ""  # equals: the value's canonical JSON
    among: frozenset[str] = frozenset()  # in: canonical JSON of each value
    exists: bool = True
    bounds: tuple[tuple[str, Decimal], ...] = ()  # range: ((gt|gte|lt|lte, bound), …)
    spec: Mapping | None = None  # as written (canonical): to_dict gives it back

    def matches(self, props: Mapping) -> bool:
        v = lookup(props, self.path)
        if self.op == "exists":
            return (v is not None) == self.exists
        if v is None:
            return False
        if self.op == "equals":
            return _key(v) == self.equals
        if self.op == "in":
            return _key(v) in self.among
        x = number(v)
        if x is None:
            return False
        for op, b in self.bounds:
            if not ((op == "gt" and x > b) or (op == "gte" and x >= b) or (op == "lt" and x < b)
                    or (op == "lte" and x <= b)):
                return False
        return True


@dataclass(frozen=True)
class TraitDefinition:
    name: str
    aggregation: str
    property: tuple[str, ...] | None
    window: timedelta | None  # None: all of the person's history
    window_text: str  # canonical: "30d", "12h", "4w", "all"
    kinds: tuple[str, ...] = ()  # empty: any kind
    names: tuple[str, ...] = ()  # empty: any event name
    where: tuple[Condition, ...] = ()
    description: str = ""

    def to_dict(self) -> dict:
        """The canonical form (what is stored and listed); `parse_definition` reads it back."""
        out: dict = {"name": self.name}
        if self.description:
            out["description"] = self.description
        event: dict = {}
        if self.kinds:
            event["kinds"] = list(self.kinds)
        if self.names:
            event["names"] = list(self.names)
        if self.where:
            event["where"] = [dict(c.spec or {}) for c in self.where]
        if event:
            out["event"] = event
        out["aggregation"] = self.aggregation
        if self.property is not None:
            out["property"] = ".".join(self.property)
        out["window"] = self.window_text
        return out

    def computation(self) -> str:
        """Canonical JSON of what decides the values (everything but the description): two
        definitions with the same computation give the same values."""
        d = self.to_dict()
        d.pop("description", None)
        return json.dumps(d, sort_keys=True, ensure_ascii=False)

    def matches(self, e: computed.Event) -> bool:
        if self.kinds and e.kind not in self.kinds:
            return False
        if self.names and e.name not in self.names:
            return False
        return all(c.matches(e.properties) for c in self.where)


# --- parsing -----------------------------------------------------------------------------------


def _fail(field: str, message: str) -> InvalidArgument:
    return InvalidArgument(message, field=field)


def _type_name(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, (list, tuple)):
        return "a list"
    if isinstance(v, Mapping):
        return "a mapping"
    return type(v).__name__


def _unknown(d: Mapping, known: tuple[str, ...], field: str, what: str) -> None:
    extra = sorted(str(k) for k in d if k not in known)
    if extra:
        raise _fail(f"{field}.{extra[0]}" if field else extra[0], f"unknown field; {what} has " + ", ".join(known))


def parse_document(text: str) -> list[TraitDefinition]:
    """Parses and validates a YAML (or JSON) document `definitions: [...]`; raises
    InvalidArgument naming the first field at fault (`yaml`, `definitions`, `definitions[i].…`)."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_DOCUMENT_BYTES:
        raise _fail("yaml", f"at most {MAX_DOCUMENT_BYTES // 1024} KiB")
    if not text.strip():
        raise _fail("yaml", "is empty: give `definitions:` with one or more definitions")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise _fail("yaml", f"is not valid YAML{where}") from None
    except RecursionError:
        raise _fail("yaml", "is nested too deeply") from None
    return parse_dict(data)


def parse_dict(data) -> list[TraitDefinition]:
    if not isinstance(data, Mapping):
        raise _fail("yaml", "must be a mapping with `definitions:` (a list of definitions)")
    _unknown(data, ("definitions",), "", "the document")
    defs = data.get("definitions")
    if not isinstance(defs, list):
        raise _fail("definitions", "must be a list of definitions" + ("" if defs is None else
                                                                        f", not {_type_name(defs)}"))
    if not defs:
        raise _fail("definitions", "must hold at least one definition")
    if len(defs) > MAX_DEFINITIONS:
        raise _fail("definitions", f"at most {MAX_DEFINITIONS} definitions")
    out: list[TraitDefinition] = []
    seen: dict[str, int] = {}
    for i, d in enumerate(defs):
        defn = parse_definition(d, f"definitions[{i}]")
        if defn.name in seen:
            raise _fail(f"definitions[{i}].name", f"defined twice (also definitions[{seen[defn.name]}])")
        seen[defn.name] = i
        out.append(defn)
    return out


def parse_definition(d, field: str = "definition") -> TraitDefinition:
    if not isinstance(d, Mapping):
        raise _fail(field, f"must be a mapping (name, event, aggregation, property, window), not {_type_name(d)}")
    _unknown(d, _DEFINITION_KEYS, field, "a definition")
    name = d.get("name")
    if not isinstance(name, str):
        raise _fail(f"{field}.name", "is required: a string" if name is None else f"must be a string, not "
                    f"{_type_name(name)}")
    if not NAME_RE.match(name):
        raise _fail(f"{field}.name", "must be 2 to 64 characters: a lower-case letter, then lower-case letters, "
                                     "digits or underscores")
    if name in RESERVED:
        raise _fail(f"{field}.name", "is the name of a built-in computed trait; choose another")
    description = d.get("description", "")
    if description is None:
        description = ""
    if not isinstance(description, str):
        raise _fail(f"{field}.description", f"must be a string, not {_type_name(description)}")
    if len(description) > MAX_DESCRIPTION:
        raise _fail(f"{field}.description", f"at most {MAX_DESCRIPTION} characters")

    agg = d.get("aggregation")
    if not isinstance(agg, str):
        raise _fail(f"{field}.aggregation", ("is required" if agg is None else f"must be a string, not "
                                             f"{_type_name(agg)}") + "; one of " + ", ".join(AGGREGATIONS))
    agg = ALIASES.get(agg.strip().lower(), agg.strip().lower())
    if agg not in AGGREGATIONS:
        raise _fail(f"{field}.aggregation", "must be one of " + ", ".join(AGGREGATIONS))

    prop = d.get("property")
    path = None if prop is None else parse_path(prop, f"{field}.property")
    if path is None and agg != "count":
        raise _fail(f"{field}.property", f"is required for aggregation {agg} (only count goes without)")

    window, window_text = parse_window(d.get("window"), f"{field}.window")
    kinds, names, where = parse_event(d.get("event"), f"{field}.event")
    return TraitDefinition(name, agg, path, window, window_text, kinds, names, where, description.strip())


def parse_window(v, field: str) -> tuple[timedelta | None, str]:
    hint = "e.g. 30d, 12h, 4w, or all"
    if v is None:
        raise _fail(field, f"is required ({hint})")
    if not isinstance(v, str):
        raise _fail(field, f"must be a string ({hint}), not {_type_name(v)}")
    if v.strip().lower() == "all":
        return None, "all"
    m = WINDOW_RE.match(v.lower())
    if not m:
        raise _fail(field, f"must be a whole number and a unit h (hours), d (days) or w (weeks), or all ({hint})")
    n, unit = int(m.group(1)), m.group(2)
    if n == 0:
        raise _fail(field, "must be longer than zero (or all)")
    window = n * UNITS[unit]
    if window > timedelta(days=MAX_WINDOW_DAYS):
        raise _fail(field, f"at most {MAX_WINDOW_DAYS} days (or all)")
    return window, f"{n}{unit}"


def parse_path(v, field: str) -> tuple[str, ...]:
    if not isinstance(v, str):
        raise _fail(field, f"must be a string (a dotted path into the event's properties), not {_type_name(v)}")
    if not v or len(v) > MAX_PATH:
        raise _fail(field, f"must be 1 to {MAX_PATH} characters")
    parts = tuple(v.split("."))
    if any(not p for p in parts):
        raise _fail(field, "has an empty segment (a dotted path such as shipping.country)")
    if len(parts) > MAX_PATH_DEPTH:
        raise _fail(field, f"at most {MAX_PATH_DEPTH} segments")
    return parts


def _strings(v, field: str, what: str, allowed: tuple[str, ...] | None, limit: int) -> tuple[str, ...]:
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list):
        raise _fail(field, f"must be {what} or a list of them, not {_type_name(v)}")
    if not items:
        raise _fail(field, "must not be empty")
    if len(items) > limit:
        raise _fail(field, f"at most {limit}")
    out = []
    for i, x in enumerate(items):
        f = field if isinstance(v, str) else f"{field}[{i}]"
        if not isinstance(x, str):
            raise _fail(f, f"must be {what}, not {_type_name(x)}")
        if allowed is not None:
            x = x.strip().lower()
            if x not in allowed:
                raise _fail(f, "must be one of " + ", ".join(allowed))
        elif not x or len(x) > MAX_EVENT_NAME:
            raise _fail(f, f"must be 1 to {MAX_EVENT_NAME} characters")
        out.append(x)
    return tuple(sorted(set(out)))


def parse_event(v, field: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[Condition, ...]]:
    if v is None:
        return (), (), ()
    if not isinstance(v, Mapping):
        raise _fail(field, f"must be a mapping (kinds, names, where), not {_type_name(v)}")
    _unknown(v, _EVENT_KEYS, field, "an event filter")
    for one, many in (("kind", "kinds"), ("name", "names")):
        if one in v and many in v:
            raise _fail(f"{field}.{one}", f"give {one} or {many}, not both")
    kinds: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    for key in ("kind", "kinds"):
        if key in v:
            kinds = _strings(v[key], f"{field}.{key}", "a kind", KINDS, len(KINDS))
    for key in ("name", "names"):
        if key in v:
            names = _strings(v[key], f"{field}.{key}", "an event name", None, MAX_EVENT_NAMES)
    where_v = v.get("where")
    where: list[Condition] = []
    if where_v is not None:
        if not isinstance(where_v, list):
            raise _fail(f"{field}.where", f"must be a list of conditions, not {_type_name(where_v)}")
        if len(where_v) > MAX_CONDITIONS:
            raise _fail(f"{field}.where", f"at most {MAX_CONDITIONS} conditions")
        where = [parse_condition(c, f"{field}.where[{i}]") for i, c in enumerate(where_v)]
    return kinds, names, tuple(where)


def _scalar(v, field: str):
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        if isinstance(v, float) and not math.isfinite(v):
            raise _fail(field, "must be a finite number")
        return v
    if isinstance(v, str):
        if len(v) > MAX_STRING_VALUE:
            raise _fail(field, f"at most {MAX_STRING_VALUE} characters")
        return v
    raise _fail(field, f"must be a string, number or boolean, not {_type_name(v)}"
                + (" (use exists: false for a missing value)" if v is None else ""))


def parse_condition(c, field: str) -> Condition:
    if not isinstance(c, Mapping):
        raise _fail(field, f"must be a mapping such as {{property: total, gte: 10}}, not {_type_name(c)}")
    _unknown(c, ("property", *OPERATORS), field, "a condition")
    if "property" not in c:
        raise _fail(f"{field}.property", "is required")
    path = parse_path(c["property"], f"{field}.property")
    ops = [k for k in OPERATORS if k in c]
    if not ops:
        raise _fail(field, "needs an operator: equals, in, exists, or gt/gte/lt/lte")
    ranged = [k for k in ops if k in RANGE_OPS]
    if len(ops) > 1 and len(ranged) != len(ops):
        raise _fail(f"{field}.{ops[1]}", f"one operator a condition ({ops[0]} is given); "
                                         "only gt/gte/lt/lte combine")
    spec: dict = {"property": ".".join(path)}
    op = ops[0]
    if op == "equals":
        value = _scalar(c["equals"], f"{field}.equals")
        spec["equals"] = value
        return Condition(path, "equals", equals=_key(value), spec=spec)
    if op == "in":
        values = c["in"]
        if not isinstance(values, list):
            raise _fail(f"{field}.in", f"must be a list of values, not {_type_name(values)}")
        if not values:
            raise _fail(f"{field}.in", "must not be empty")
        if len(values) > MAX_IN_VALUES:
            raise _fail(f"{field}.in", f"at most {MAX_IN_VALUES} values")
        vals = [_scalar(x, f"{field}.in[{i}]") for i, x in enumerate(values)]
        spec["in"] = vals
        return Condition(path, "in", among=frozenset(_key(x) for x in vals), spec=spec)
    if op == "exists":
        e = c["exists"]
        if not isinstance(e, bool):
            raise _fail(f"{field}.exists", f"must be true or false, not {_type_name(e)}")
        spec["exists"] = e
        return Condition(path, "exists", exists=e, spec=spec)
    bounds = []
    for k in ranged:
        b = c[k]
        if isinstance(b, bool) or not isinstance(b, (int, float)) or (isinstance(b, float) and not math.isfinite(b)):
            raise _fail(f"{field}.{k}", f"must be a finite number, not {_type_name(b)}")
        bounds.append((k, Decimal(str(b))))
        spec[k] = b
    lower = [b for k, b in bounds if k in ("gt", "gte")]
    upper = [b for k, b in bounds if k in ("lt", "lte")]
    if len(lower) > 1 or len(upper) > 1:
        raise _fail(f"{field}.{ranged[1]}", "at most one lower bound (gt or gte) and one upper bound (lt or lte)")
    if lower and upper:
        lo, hi = lower[0], upper[0]
        strict = "gt" in ranged or "lt" in ranged
        if lo > hi or (lo == hi and strict):
            raise _fail(f"{field}.{ranged[-1]}", "no number lies within these bounds")
    return Condition(path, "range", bounds=tuple(bounds), spec=spec)


# --- reading event values ------------------------------------------------------------------


def lookup(props, path: tuple[str, ...]):
    """The value at a dotted path (None when absent or null)."""
    v = props
    for p in path:
        if not isinstance(v, Mapping):
            return None
        v = v.get(p)
        if v is None:
            return None
    return v


def number(v) -> Decimal | None:
    """A finite number from a JSON number or a numeric string; None otherwise."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int):
        return Decimal(v)
    if isinstance(v, float):
        return Decimal(repr(v)) if math.isfinite(v) else None
    if isinstance(v, str):
        s = v.strip()
        if not s or len(s) > 100:
            return None
        try:
            d = Decimal(s)
        except (InvalidOperation, ValueError):
            return None
        return d if d.is_finite() else None
    return None


def _norm(v):
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, float):
        if not math.isfinite(v):
            return repr(v)
        return int(v) if v.is_integer() and abs(v) < 2 ** 63 else v
    if isinstance(v, int):
        return v
    if isinstance(v, Mapping):
        return {str(k): _norm(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    return str(v)


def _key(v) -> str:
    """Canonical JSON: equal JSON values (31 and 31.0 included) give equal keys."""
    return json.dumps(_norm(v), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _out(d: Decimal):
    """A number for JSON: an int when whole (and exactly representable), else a float."""
    if d == d.to_integral_value() and abs(d) < 2 ** 53:
        return int(d)
    return float(d)


# --- evaluation ------------------------------------------------------------------------------


def _canonical(events: Iterable[computed.Event]) -> list[computed.Event]:
    by_id: dict[str, computed.Event] = {}
    for e in events:
        if e.occurred_at.tzinfo is None:
            e = computed.Event(e.event_id, e.kind, e.name, e.occurred_at.replace(tzinfo=UTC), e.properties,
                               e.traits, e.context, e.source_kind)
        old = by_id.get(e.event_id)
        if old is None or (e.occurred_at, _key(e.properties)) < (old.occurred_at, _key(old.properties)):
            by_id[e.event_id] = e
    return sorted(by_id.values(), key=lambda e: (e.occurred_at, e.event_id))


def evaluate(defn: TraitDefinition, events: Iterable[computed.Event], now: datetime):
    """The definition's value over these events as of `now` (see the module's docstring)."""
    return evaluate_all([defn], events, now)[defn.name]


def evaluate_all(defns: Iterable[TraitDefinition], events: Iterable[computed.Event], now: datetime) -> dict:
    """{name: value} for each definition, sorting the events once."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    evs = [e for e in _canonical(events) if e.occurred_at <= now]
    return {d.name: _evaluate(d, evs, now) for d in defns}


def _evaluate(defn: TraitDefinition, evs: list[computed.Event], now: datetime):
    start = now - defn.window if defn.window is not None else None
    chosen = [e for e in evs if (start is None or e.occurred_at >= start) and defn.matches(e)]
    agg = defn.aggregation
    if defn.property is None:  # count only
        return len(chosen)
    values = [v for v in (lookup(e.properties, defn.property) for e in chosen) if v is not None]
    if agg == "count":
        return len(values)
    if agg == "last":
        return values[-1] if values else None
    if agg in ("most_frequent", "distinct_count"):
        counts: dict[str, list] = {}  # key -> [count, position of last sighting, value]
        for i, v in enumerate(values):
            c = counts.setdefault(_key(v), [0, 0, v])
            c[0] += 1
            c[1], c[2] = i, v
        if agg == "distinct_count":
            return len(counts)
        if not counts:
            return None
        return max(counts.values(), key=lambda c: (c[0], c[1]))[2]
    nums = [n for n in (number(v) for v in values) if n is not None]
    if not nums:
        return None
    if agg == "sum":
        return _out(sum(nums, Decimal(0)))
    if agg == "avg":
        return _out(sum(nums, Decimal(0)) / len(nums))
    if agg == "min":
        return _out(min(nums))
    return _out(max(nums))
