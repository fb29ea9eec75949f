"""The segment definition language: parsing (YAML/JSON or cdp.segment.v1.Definition) and
validation into a typed tree that both evaluators read (evaluate.py: in memory, one profile;
sqlgen.py: SQL over the projection, every profile).

Validation stops at the first fault and names its node by path (`where.all[2].event.window`);
a definition that does not validate is never stored. Pure: no I/O. Segment references and
stores are resolved through a `Resolver` the caller gives (the stored catalogue).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

from cdp.segment.v1 import definition_pb2 as pb
from cdp_core.errors import InvalidArgument

# --- limits ------------------------------------------------------------------------------

MAX_NAME = 64
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_NODES = 200  # conditions and groups in one definition
MAX_DEPTH = 12
MAX_LIST = 500  # values of an in / includes_any list
MAX_STRING = 1000  # a compared string or pattern
MAX_STEPS = 4
MAX_FILTERS = 10  # property filters per event or step
MAX_DOCUMENT = 256 * 1024
DEFAULT_RETENTION_DAYS = 400  # events kept by the projection (CDP_SEGMENT_EVENT_RETENTION_DAYS)
CHANNELS = ("email", "sms", "whatsapp", "push", "web", "app", "store")
MESSAGING = ("email", "sms", "whatsapp", "push")
AFFINITY_DIMENSIONS = ("category", "brand", "colour", "size", "price_band")
PRODUCT_LISTS = ("viewed", "added", "purchased", "abandoned")
# `product: {list: abandoned}` reads the profile's products_in_cart and counts an item once it
# has been in the cart this long (the profile service's abandon window), judged by this clock
ABANDON_WINDOW = timedelta(hours=24)
PRODUCT_FIELDS = {"product_id": "string", "sku": "string", "name": "string", "category": "string",
                  "brand": "string", "price": "number"}
DEVICE_FIELDS = {"type": ("devices", "type"), "manufacturer": ("devices", "manufacturer"),
                 "model": ("devices", "model"), "os": ("operating_systems", "name"),
                 "browser": ("browsers", "name")}
LOCATION_FIELDS = ("country", "region", "city", "source")
CONSENT_STATES = ("granted", "revoked", "unknown")
ANONYMOUS_TYPES = ("anonymous_id", "device_id")
# Contact points per channel: identifier types, then trait names.
CONTACT = {"email": (("email",), ("email",)), "sms": (("phone",), ("phone",)),
           "whatsapp": (("phone", "whatsapp"), ("phone", "whatsapp")),
           "push": (("push_token",), ("push_token",))}

# Built-in computed traits (services/profile computed.py): name -> (path, type).
# `orders.days_since_last_order` is derived from orders.last_order_at at evaluation time
# (the profile computes it as of the profile's latest event, which goes stale).
COMPUTED: dict[str, tuple[tuple[str, ...], str]] = {
    "first_seen": (("first_seen",), "date"),
    "last_seen": (("last_seen",), "date"),
    "sessions": (("sessions",), "number"),
    "orders.count": (("orders", "count"), "number"),
    "orders.revenue_total": (("orders", "revenue_total"), "number"),
    "orders.revenue_avg": (("orders", "revenue_avg"), "number"),
    "orders.first_order_at": (("orders", "first_order_at"), "date"),
    "orders.last_order_at": (("orders", "last_order_at"), "date"),
    "orders.days_since_last_order": (("orders", "last_order_at"), "number"),
    "orders.refunded_total": (("orders", "refunded_total"), "number"),
    "discount_share": (("discount_share",), "number"),
    "nps.score": (("nps", "score"), "number"),
    "nps.category": (("nps", "category"), "string"),
    "nps.at": (("nps", "at"), "date"),
    "preferred_hour.hour": (("preferred_hour", "hour"), "number"),
    "preferred_hour.timezone": (("preferred_hour", "timezone"), "string"),
}
DERIVED_DAYS = "orders.days_since_last_order"
# The profile's `predicted` trait (the prediction service's cdp.prediction.scored, kept by the
# profile service: cdp_profile.predicted)
PREDICTED = {"purchase_probability": "number", "churn_probability": "number", "expected_purchases": "number",
             "predicted_ltv": "number", "ltv_percentile": "number", "discount_affinity": "number"}

# --- operators -----------------------------------------------------------------------------
# op -> value kind: none, str, num, bool, strs, nums, num2, date, date2, days, int
OPS: dict[str, dict[str, str]] = {
    "string": {"equals": "str", "not_equals": "str", "contains": "str", "not_contains": "str",
               "starts_with": "str", "ends_with": "str", "matches": "regex", "in": "strs", "not_in": "strs",
               "exists": "none", "not_exists": "none"},
    "number": {"equals": "num", "not_equals": "num", "gt": "num", "gte": "num", "lt": "num", "lte": "num",
               "between": "num2", "in": "nums", "exists": "none", "not_exists": "none"},
    "boolean": {"is_true": "none", "is_false": "none", "equals": "bool", "exists": "none", "not_exists": "none"},
    "date": {"before": "date", "after": "date", "between": "date2", "within_last_days": "days",
             "more_than_days_ago": "days0", "within_next_days": "days", "exists": "none", "not_exists": "none"},
    "list": {"includes": "scalar", "excludes": "scalar", "includes_any": "scalars", "includes_all": "scalars",
             "is_empty": "none", "not_empty": "none", "size_at_least": "int", "size_at_most": "int",
             "exists": "none", "not_exists": "none"},
}
TYPES = tuple(OPS)
TIME_OPS = ("within_last_days", "more_than_days_ago", "within_next_days")
_SEGMENT_RE = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$ -]*$")
# Patterns for `matches`: a subset that means the same to Python's re and PostgreSQL's ARE.
_PATTERN_OK = re.compile(r"^[A-Za-z0-9 _\-.,@:/'!#%&=~<>;\"*+?^$|()\[\]]*$")
# The ISO 8601 forms a date test reads; migrations/0001_segment.sql seg_ts() holds the same pattern.
ISO_PATTERN = (
    r"(?:19|[2-9][0-9])[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0"
    r"-9]|3[01])(?:[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-"
    r"9](?:\.[0-9]{1,6})?)?(?:Z|[+-](?:0[0-9]|1[0-4]):[0-5][0-9])?)?")
_ISO = re.compile(ISO_PATTERN)


def parse_time(v: Any) -> datetime | None:
    """An ISO 8601 date or time as the SQL side's seg_ts() reads it (UTC when no offset);
    None for anything else. The accepted forms are exactly `_ISO`'s."""
    if not isinstance(v, str) or not _ISO.fullmatch(v):
        return None
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


# --- the validated tree ----------------------------------------------------------------------


@dataclass(frozen=True)
class Test:
    """One value test: type, operator, and the operand ready to compare."""

    type: str
    op: str
    value: Any = None  # str | float | bool | datetime | int | tuple


@dataclass(frozen=True)
class Win:
    """Event times t inside: lo < t (or lo <= t) and t <= hi (or t < hi). Relative bounds are
    seconds before now; absolute ones are times. None: unbounded."""

    lo_rel: int | None = None  # t > now - lo_rel seconds
    hi_rel: int | None = None  # t <= now - hi_rel seconds
    lo_abs: datetime | None = None  # t >= lo_abs
    hi_abs: datetime | None = None  # t < hi_abs

    @property
    def relative(self) -> bool:
        return self.lo_rel is not None or self.hi_rel is not None


@dataclass(frozen=True)
class And:
    items: tuple


@dataclass(frozen=True)
class Or:
    items: tuple


@dataclass(frozen=True)
class Not:
    item: Any


@dataclass(frozen=True)
class TraitT:
    path: tuple[str, ...]  # a literal key first (the whole name), else the dotted path
    test: Test
    name: str = ""


@dataclass(frozen=True)
class ComputedT:
    name: str
    path: tuple[str, ...]
    test: Test


@dataclass(frozen=True)
class AffinityT:
    dimension: str
    op: str
    value: str
    score: float = 0.0


@dataclass(frozen=True)
class Filter:
    path: tuple[str, ...]
    test: Test


@dataclass(frozen=True)
class EventT:
    name: str
    filters: tuple[Filter, ...]
    count_op: str  # at_least, at_most, exactly
    count: int
    window: Win


@dataclass(frozen=True)
class SequenceT:
    steps: tuple[tuple[str, tuple[Filter, ...]], ...]
    within_us: int
    window: Win


@dataclass(frozen=True)
class ReachableT:
    channel: str


@dataclass(frozen=True)
class ConsentT:
    key: str
    state: str


@dataclass(frozen=True)
class EngagedT:
    channel: str
    days: int


@dataclass(frozen=True)
class DeviceT:
    list: str  # devices, operating_systems, browsers
    field: str
    test: Test


@dataclass(frozen=True)
class LocationT:
    field: str
    test: Test


@dataclass(frozen=True)
class NearT:
    latitude: float
    longitude: float
    km: float


@dataclass(frozen=True)
class AccountT:
    trait: TraitT | None


@dataclass(frozen=True)
class KnownT:
    known: bool


@dataclass(frozen=True)
class ProductT:
    list: str
    field: str | None
    test: Test | None


@dataclass(frozen=True)
class OverdueT:
    factor: float


@dataclass(frozen=True)
class Compiled:
    definition: pb.Definition
    tree: Any
    references: frozenset[str]  # segments it refers to (directly)
    suppresses: tuple[str, ...]


class DefinitionError(InvalidArgument):
    def __init__(self, path: str, message: str):
        super().__init__(message, field=path)
        self.path = path


@dataclass
class Resolver:
    """What validation needs from outside: other segments' trees (by name) and stores."""

    segments: Callable[[str], Compiled | None] = lambda name: None
    stores: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    retention_days: int = DEFAULT_RETENTION_DAYS


# --- YAML / JSON -> proto ----------------------------------------------------------------------


def _sugar(node: Any, path: str) -> Any:
    """`all: [...]` / `any: [...]` -> {nodes: [...]}, recursively, in a copy."""
    if isinstance(node, list):
        return [_sugar(x, f"{path}[{i}]") for i, x in enumerate(node)]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k in ("all", "any") and isinstance(v, list):
            v = {"nodes": v}
        out[k] = _sugar(v, f"{path}.{k}" if path else str(k))
    return out


_SCALAR_KINDS = {
    FieldDescriptor.TYPE_STRING: (str,), FieldDescriptor.TYPE_BOOL: (bool,),
    FieldDescriptor.TYPE_INT32: (int,), FieldDescriptor.TYPE_DOUBLE: (int, float),
}


def _check_shape(data: Any, desc, path: str) -> None:
    """Every key names a field of the message, and every value has the field's kind."""
    if not isinstance(data, dict):
        raise DefinitionError(path or "definition", f"must be an object ({desc.name})")
    fields = {f.name: f for f in desc.fields} | {f.json_name: f for f in desc.fields}
    for k, v in data.items():
        p = f"{path}.{k}" if path else str(k)
        if desc.name == "NodeList" and k == "nodes":
            p = path  # all: [...] is all.nodes: paths read all[0], as written
        f = fields.get(k)
        if f is None:
            known = ", ".join(sorted(x.name for x in desc.fields))
            raise DefinitionError(p, f"unknown field (known here: {known})")
        if f.message_type is not None and f.message_type.full_name == "google.protobuf.Value":
            continue
        if f.is_repeated:
            if not isinstance(v, list):
                raise DefinitionError(p, "must be a list")
            items = [(f"{p}[{i}]", x) for i, x in enumerate(v)]
        else:
            items = [(p, v)]
        for ip, x in items:
            if f.message_type is not None:
                if x is None:
                    raise DefinitionError(ip, "must be an object")
                _check_shape(x, f.message_type, ip)
                continue
            kinds = _SCALAR_KINDS.get(f.type, (str,))
            if not isinstance(x, kinds) or (isinstance(x, bool) and bool not in kinds):
                want = {str: "a string", bool: "true or false", int: "a whole number"}.get(kinds[0], "a number")
                raise DefinitionError(ip, f"must be {want}")
            if f.type == FieldDescriptor.TYPE_INT32 and not -(2**31) <= x < 2**31:
                raise DefinitionError(ip, "out of range")


def from_dict(data: Any) -> pb.Definition:
    data = _sugar(data, "")
    _check_shape(data, pb.Definition.DESCRIPTOR, "")
    try:
        return json_format.ParseDict(data, pb.Definition())
    except json_format.ParseError as e:  # shapes were checked: only odd values get here
        raise DefinitionError("definition", str(e).split("\n")[0][:300]) from None


def load_documents(text: str) -> list[pb.Definition]:
    """A YAML or JSON document: one definition, or `segments: [...]`. Errors name the entry
    (`segments[1].where...`)."""
    if len(text.encode()) > MAX_DOCUMENT:
        raise DefinitionError("yaml", f"document larger than {MAX_DOCUMENT // 1024} KiB")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise DefinitionError("yaml", f"not valid YAML: {str(e)[:300]}") from None
    if isinstance(data, dict) and set(data) == {"segments"}:
        items = data["segments"]
        if not isinstance(items, list) or not items:
            raise DefinitionError("segments", "must be a non-empty list")
        out = []
        for i, item in enumerate(items):
            try:
                out.append(from_dict(item))
            except DefinitionError as e:
                raise DefinitionError(f"segments[{i}].{e.path}", str(e).split(": ", 1)[1]) from None
        return out
    return [from_dict(data)]


def to_dict(d: pb.Definition) -> dict:
    """The YAML/JSON form (all/any as plain lists)."""
    raw = json_format.MessageToDict(d, preserving_proto_field_name=True)

    def unsugar(x):
        if isinstance(x, list):
            return [unsugar(i) for i in x]
        if isinstance(x, dict):
            return {k: (unsugar(v.get("nodes", [])) if k in ("all", "any") and isinstance(v, dict)
                        else unsugar(v)) for k, v in x.items()}
        return x
    return unsugar(raw)


def to_yaml(d: pb.Definition) -> str:
    return yaml.safe_dump(to_dict(d), sort_keys=False, allow_unicode=True)


def canonical_json(d: pb.Definition) -> str:
    return json.dumps(to_dict(d), sort_keys=True, ensure_ascii=False)


# --- validation -----------------------------------------------------------------------------------


def validate(d: pb.Definition, resolver: Resolver | None = None) -> Compiled:
    """The typed tree of a definition, or DefinitionError naming the offending node."""
    r = resolver or Resolver()
    if not NAME_RE.match(d.name or ""):
        raise DefinitionError("name", "must be 1-64 characters of a-z, 0-9, '-' and '_', starting with a "
                                      "letter or digit")
    if len(d.description) > 2000:
        raise DefinitionError("description", "at most 2000 characters")
    for i, ch in enumerate(d.suppresses):
        if ch != "*" and ch not in CHANNELS:
            raise DefinitionError(f"suppresses[{i}]", f"unknown channel (one of *, {', '.join(CHANNELS)})")
    if not d.HasField("where"):
        raise DefinitionError("where", "a definition needs a condition tree")
    v = _Validator(r, d.name)
    tree = v.node(d.where, "where", 0)
    return Compiled(d, tree, frozenset(v.refs), tuple(d.suppresses))


class _Validator:
    def __init__(self, r: Resolver, name: str):
        self.r, self.name = r, name
        self.nodes = 0
        self.refs: set[str] = set()

    def node(self, n: pb.Node, path: str, depth: int):
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise DefinitionError(path, f"more than {MAX_NODES} nodes in one definition")
        if depth > MAX_DEPTH:
            raise DefinitionError(path, f"nested deeper than {MAX_DEPTH}")
        kind = n.WhichOneof("node")
        if kind is None:
            raise DefinitionError(path, "empty node: give all, any, not or a condition")
        p = f"{path}.{kind}"
        if kind in ("all", "any"):
            items = getattr(n, kind).nodes
            if not items:
                raise DefinitionError(p, "needs at least one node")
            subs = tuple(self.node(x, f"{p}[{i}]", depth + 1) for i, x in enumerate(items))
            return And(subs) if kind == "all" else Or(subs)
        if kind == "not":
            return Not(self.node(n.__getattribute__("not"), p, depth + 1))
        return getattr(self, "c_" + kind)(getattr(n, kind), p)

    # -- value tests
    def test(self, type_: str, op: str, value_msg, has_value: bool, path: str, allowed: tuple[str, ...] = TYPES
             ) -> Test:
        value = json_format.MessageToDict(value_msg) if has_value else None
        if not op:
            raise DefinitionError(f"{path}.op", "missing operator")
        if type_:
            if type_ not in TYPES:
                raise DefinitionError(f"{path}.type", f"unknown type (one of {', '.join(TYPES)})")
            if type_ not in allowed:
                raise DefinitionError(f"{path}.type", f"must be one of {', '.join(allowed)} here")
            if op not in OPS[type_]:
                fits = [t for t in allowed if op in OPS[t]]
                hint = f" (it applies to {', '.join(fits)})" if fits else ""
                raise DefinitionError(f"{path}.op", f"operator {op!r} does not apply to a {type_} value{hint}; "
                                                    f"{type_} operators: {', '.join(OPS[type_])}")
        else:
            fits = [t for t in allowed if op in OPS[t]]
            if not fits:
                every = sorted({o for t in allowed for o in OPS[t]})
                raise DefinitionError(f"{path}.op", f"unknown operator {op!r} (known: {', '.join(every)})")
            type_ = fits[0] if len(fits) == 1 else self._infer(fits, op, value, path)
        return Test(type_, op, self.operand(type_, OPS[type_][op], value, f"{path}.value"))

    @staticmethod
    def _infer(fits: list[str], op: str, value, path: str) -> str:
        probe = value[0] if isinstance(value, list) and value else value
        if op in ("exists", "not_exists"):
            return fits[0]
        if isinstance(probe, bool) and "boolean" in fits:
            return "boolean"
        if isinstance(probe, int | float) and not isinstance(probe, bool) and "number" in fits:
            return "number"
        if isinstance(probe, str):
            if "date" in fits and op == "between":
                return "date"
            if "string" in fits:
                return "string"
        raise DefinitionError(f"{path}.value", f"operator {op!r} needs a value of type "
                                               f"{' or '.join(fits)}; say which with `type:`")

    def operand(self, type_: str, kind: str, value, path: str):
        def num(x, p):
            if isinstance(x, bool) or not isinstance(x, int | float):
                raise DefinitionError(p, f"must be a number ({type_} operator)")
            return float(x)

        def string(x, p):
            if not isinstance(x, str):
                raise DefinitionError(p, f"must be a string ({type_} operator)")
            if len(x) > MAX_STRING:
                raise DefinitionError(p, f"at most {MAX_STRING} characters")
            return x

        def date(x, p):
            t = parse_time(x)
            if t is None:
                raise DefinitionError(p, "must be an ISO 8601 date or time, e.g. 2026-03-01 or "
                                         "2026-03-01T12:00:00Z (date operator)")
            return t

        def items(p):
            if not isinstance(value, list) or not value:
                raise DefinitionError(p, "must be a non-empty list")
            if len(value) > MAX_LIST:
                raise DefinitionError(p, f"at most {MAX_LIST} values")
            return value

        if kind == "none":
            if value is not None:
                raise DefinitionError(path, "this operator takes no value")
            return None
        if value is None:
            raise DefinitionError(path, "missing value")
        if kind == "str":
            return string(value, path)
        if kind == "regex":
            pat = string(value, path)
            if not _PATTERN_OK.match(pat) or "(?" in pat or "[:" in pat or "[." in pat or "[=" in pat:
                raise DefinitionError(path, "patterns may use letters, digits, punctuation and . * + ? ^ $ | ( ) "
                                            "[ ] only (no backslashes, braces or (? groups)")
            try:
                re.compile(pat)
            except re.error as e:
                raise DefinitionError(path, f"not a valid pattern: {e}") from None
            return pat
        if kind == "num":
            return num(value, path)
        if kind == "bool":
            if not isinstance(value, bool):
                raise DefinitionError(path, "must be true or false")
            return value
        if kind == "strs":
            return tuple(string(x, f"{path}[{i}]") for i, x in enumerate(items(path)))
        if kind == "nums":
            return tuple(num(x, f"{path}[{i}]") for i, x in enumerate(items(path)))
        if kind == "num2":
            if not isinstance(value, list) or len(value) != 2:
                raise DefinitionError(path, "must be [low, high]")
            lo, hi = num(value[0], f"{path}[0]"), num(value[1], f"{path}[1]")
            if lo > hi:
                raise DefinitionError(path, "low must not exceed high")
            return (lo, hi)
        if kind == "date":
            return date(value, path)
        if kind == "date2":
            if not isinstance(value, list) or len(value) != 2:
                raise DefinitionError(path, "must be [from, until] (ISO 8601 dates)")
            lo, hi = date(value[0], f"{path}[0]"), date(value[1], f"{path}[1]")
            if lo >= hi:
                raise DefinitionError(path, "from must be before until")
            return (lo, hi)
        if kind in ("days", "days0", "int"):
            if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
                raise DefinitionError(path, "must be a whole number")
            low = 0 if kind in ("days0", "int") else 1
            if not low <= value <= 36500:
                raise DefinitionError(path, f"must be between {low} and 36500")
            return int(value)
        if kind == "scalar":
            return self.scalar(value, path)
        if kind == "scalars":
            return tuple(self.scalar(x, f"{path}[{i}]") for i, x in enumerate(items(path)))
        raise AssertionError(kind)

    @staticmethod
    def scalar(x, path):
        if isinstance(x, bool):
            return x
        if isinstance(x, int | float):
            return float(x)
        if isinstance(x, str) and len(x) <= MAX_STRING:
            return x
        raise DefinitionError(path, "must be a string, number or boolean")

    @staticmethod
    def path_of(name: str, path: str) -> tuple[str, ...]:
        if not name:
            raise DefinitionError(path, "missing name")
        if len(name) > 200:
            raise DefinitionError(path, "at most 200 characters")
        parts = tuple(name.split("."))
        for part in parts:
            if not _SEGMENT_RE.match(part):
                raise DefinitionError(path, "each dot-separated part must start with a letter or _ and hold "
                                            "letters, digits, _, $, - or spaces")
        return parts

    def window(self, w: pb.Window, path: str, has: bool) -> Win:
        """The window, bounded below by the retention: events older than it are pruned, so
        they leave every window (and the evaluators agree with the pruned table)."""
        win = self._window(w, path, has)
        if win.lo_rel is None:
            win = Win(lo_rel=self.r.retention_days * 86400, hi_rel=win.hi_rel, lo_abs=win.lo_abs, hi_abs=win.hi_abs)
        return win

    def _window(self, w: pb.Window, path: str, has: bool) -> Win:
        if not has:
            return Win()
        kinds = [k for k in ("last_days", "last_hours") if getattr(w, k)]
        rel_between = bool(w.from_days_ago or w.to_days_ago)
        absolute = bool(w.after or w.before)
        if len(kinds) + rel_between + absolute != 1:
            raise DefinitionError(path, "give exactly one of last_days, last_hours, from_days_ago/to_days_ago, "
                                        "after/before")
        limit = self.r.retention_days
        if w.last_days:
            if not 1 <= w.last_days <= limit:
                raise DefinitionError(f"{path}.last_days", f"cannot be evaluated: must be between 1 and {limit} "
                                                           f"(events are kept for {limit} days)")
            return Win(lo_rel=w.last_days * 86400, hi_rel=0)
        if w.last_hours:
            if not 1 <= w.last_hours <= limit * 24:
                raise DefinitionError(f"{path}.last_hours", f"cannot be evaluated: must be between 1 and "
                                                            f"{limit * 24} (events are kept for {limit} days)")
            return Win(lo_rel=w.last_hours * 3600, hi_rel=0)
        if rel_between:
            a, b = w.from_days_ago, w.to_days_ago
            if not 0 <= a < b:
                raise DefinitionError(path, "cannot be evaluated: needs 0 <= from_days_ago < to_days_ago "
                                            "(between from and to days ago)")
            if b > limit:
                raise DefinitionError(f"{path}.to_days_ago", f"cannot be evaluated: events are kept for {limit} days")
            return Win(lo_rel=b * 86400, hi_rel=a * 86400)
        lo = hi = None
        if w.after:
            lo = parse_time(w.after)
            if lo is None:
                raise DefinitionError(f"{path}.after", "must be an ISO 8601 date or time")
        if w.before:
            hi = parse_time(w.before)
            if hi is None:
                raise DefinitionError(f"{path}.before", "must be an ISO 8601 date or time")
        if lo is not None and hi is not None and lo >= hi:
            raise DefinitionError(path, "cannot be evaluated: after must be earlier than before")
        return Win(lo_abs=lo, hi_abs=hi)

    def filters(self, fs, path: str) -> tuple[Filter, ...]:
        if len(fs) > MAX_FILTERS:
            raise DefinitionError(path, f"at most {MAX_FILTERS} property filters")
        out = []
        for i, f in enumerate(fs):
            p = f"{path}[{i}]"
            out.append(Filter(self.path_of(f.property, f"{p}.property"),
                              self.test(f.type, f.op, f.value, f.HasField("value"), p)))
        return tuple(out)

    @staticmethod
    def event_name(name: str, path: str) -> str:
        if not name or len(name) > 200:
            raise DefinitionError(path, "an event name of 1-200 characters is needed")
        return name

    # -- conditions
    def c_trait(self, c: pb.TraitCondition, path: str):
        return TraitT(self.path_of(c.name, f"{path}.name"), self.test(c.type, c.op, c.value, c.HasField("value"),
                                                                        path), c.name)

    def c_computed(self, c: pb.ComputedCondition, path: str):
        if c.name.startswith("declared."):
            parts = self.path_of(c.name, f"{path}.name")
            return ComputedT(c.name, parts, self.test("", c.op, c.value, c.HasField("value"), path))
        if c.name not in COMPUTED:
            raise DefinitionError(f"{path}.name", f"unknown computed trait (known: {', '.join(COMPUTED)}, "
                                                  "declared.<name>)")
        p, t = COMPUTED[c.name]
        return ComputedT(c.name, p, self.test(t, c.op, c.value, c.HasField("value"), path))

    def c_affinity(self, c: pb.AffinityCondition, path: str):
        if c.dimension not in AFFINITY_DIMENSIONS:
            raise DefinitionError(f"{path}.dimension", f"one of {', '.join(AFFINITY_DIMENSIONS)}")
        if c.op not in ("top_is", "in_top", "score_at_least"):
            raise DefinitionError(f"{path}.op", "unknown operator (top_is, in_top, score_at_least)")
        if not c.value or len(c.value) > MAX_STRING:
            raise DefinitionError(f"{path}.value", "a value of 1-1000 characters is needed")
        if c.op == "score_at_least":
            if not 0 < c.score <= 1e6:
                raise DefinitionError(f"{path}.score", "a score above 0 is needed")
        elif c.score:
            raise DefinitionError(f"{path}.score", f"only score_at_least takes a score, not {c.op}")
        return AffinityT(c.dimension, c.op, c.value, float(c.score))

    def c_event(self, c: pb.EventCondition, path: str):
        name = self.event_name(c.name, f"{path}.name")
        fs = self.filters(c.where, f"{path}.where")
        op, n = "at_least", 1
        if c.HasField("count"):
            if c.did_not:
                raise DefinitionError(f"{path}.count", "did_not means zero times: give count or did_not, not both")
            if c.count.op not in ("at_least", "at_most", "exactly"):
                raise DefinitionError(f"{path}.count.op", "unknown operator (at_least, at_most, exactly)")
            if not 0 <= c.count.value <= 1_000_000:
                raise DefinitionError(f"{path}.count.value", "between 0 and 1000000")
            op, n = c.count.op, c.count.value
        elif c.did_not:
            op, n = "exactly", 0
        return EventT(name, fs, op, n, self.window(c.window, f"{path}.window", c.HasField("window")))

    def c_sequence(self, c: pb.SequenceCondition, path: str):
        if not 2 <= len(c.steps) <= MAX_STEPS:
            raise DefinitionError(f"{path}.steps", f"between 2 and {MAX_STEPS} steps")
        steps = tuple((self.event_name(s.name, f"{path}.steps[{i}].name"),
                       self.filters(s.where, f"{path}.steps[{i}].where")) for i, s in enumerate(c.steps))
        limit = self.r.retention_days * 24
        if not 0 < c.within_hours <= limit:
            raise DefinitionError(f"{path}.within_hours", f"cannot be evaluated: must be above 0 and at most {limit}")
        return SequenceT(steps, round(c.within_hours * 3_600_000_000),
                         self.window(c.window, f"{path}.window", c.HasField("window")))

    def c_reachable(self, c: pb.ChannelCondition, path: str):
        if c.channel not in MESSAGING:
            raise DefinitionError(f"{path}.channel", f"one of {', '.join(MESSAGING)}")
        return ReachableT(c.channel)

    def c_consent(self, c: pb.ConsentCondition, path: str):
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", c.key or ""):
            raise DefinitionError(f"{path}.key", "a channel or purpose in lower case (email, sms, analytics, ...)")
        if c.state not in CONSENT_STATES:
            raise DefinitionError(f"{path}.state", f"one of {', '.join(CONSENT_STATES)}")
        return ConsentT(c.key, c.state)

    def c_engaged(self, c: pb.EngagedCondition, path: str):
        if c.channel not in CHANNELS:
            raise DefinitionError(f"{path}.channel", f"one of {', '.join(CHANNELS)}")
        if not 1 <= c.within_days <= 36500:
            raise DefinitionError(f"{path}.within_days", "between 1 and 36500")
        return EngagedT(c.channel, c.within_days)

    def c_device(self, c: pb.DeviceCondition, path: str):
        if c.field not in DEVICE_FIELDS:
            raise DefinitionError(f"{path}.field", f"one of {', '.join(DEVICE_FIELDS)}")
        lst, fld = DEVICE_FIELDS[c.field]
        return DeviceT(lst, fld, self.test("string", c.op, c.value, c.HasField("value"), path, ("string",)))

    def c_location(self, c: pb.LocationCondition, path: str):
        if c.field not in LOCATION_FIELDS:
            raise DefinitionError(f"{path}.field", f"one of {', '.join(LOCATION_FIELDS)}")
        return LocationT(c.field, self.test("string", c.op, c.value, c.HasField("value"), path, ("string",)))

    def c_near(self, c: pb.NearCondition, path: str):
        if not 0 < c.km <= 20_000:
            raise DefinitionError(f"{path}.km", "a radius above 0 and at most 20000 km is needed")
        if c.store:
            if c.latitude or c.longitude:
                raise DefinitionError(path, "give a store or a point (latitude, longitude), not both")
            if c.store not in self.r.stores:
                raise DefinitionError(f"{path}.store", "unknown store (declare it under `stores:`)")
            lat, lon = self.r.stores[c.store]
            return NearT(lat, lon, float(c.km))
        if not (-90 <= c.latitude <= 90 and -180 <= c.longitude <= 180):
            raise DefinitionError(path, "latitude must be within [-90, 90] and longitude within [-180, 180]")
        return NearT(float(c.latitude), float(c.longitude), float(c.km))

    def c_predicted(self, c: pb.PredictedCondition, path: str):
        if c.name not in PREDICTED:
            raise DefinitionError(f"{path}.name", f"unknown predicted trait (known: {', '.join(PREDICTED)})")
        return TraitT(("predicted", c.name), self.test(PREDICTED[c.name], c.op, c.value, c.HasField("value"), path),
                      f"predicted.{c.name}")

    def c_segment(self, c: pb.SegmentCondition, path: str):
        if c.name == self.name:
            raise DefinitionError(f"{path}.name", "a segment cannot refer to itself (cycle)")
        other = self.r.segments(c.name)
        if other is None:
            raise DefinitionError(f"{path}.name", "no segment has this name")
        seen, todo = set(), [other]
        while todo:  # the other segment (transitively) must not refer back to this one
            x = todo.pop()
            if self.name in x.references:
                raise DefinitionError(f"{path}.name", f"cycle: {c.name} refers back to {self.name}")
            for ref in x.references - seen:
                seen.add(ref)
                nxt = self.r.segments(ref)
                if nxt is not None:
                    todo.append(nxt)
        self.refs.add(c.name)
        return other.tree  # inlined: stream and SQL evaluate it with the rest

    def c_account(self, c: pb.AccountCondition, path: str):
        if not c.HasField("trait"):
            return AccountT(None)
        return AccountT(self.c_trait(c.trait, f"{path}.trait"))

    def c_known(self, c: pb.KnownCondition, path: str):
        return KnownT(c.known)

    def c_product(self, c: pb.ProductCondition, path: str):
        if c.list not in PRODUCT_LISTS:
            raise DefinitionError(f"{path}.list", f"one of {', '.join(PRODUCT_LISTS)}")
        if not c.field:
            if c.op or c.HasField("value"):
                raise DefinitionError(f"{path}.field", "an operator needs a field")
            return ProductT(c.list, None, None)
        if c.field not in PRODUCT_FIELDS:
            raise DefinitionError(f"{path}.field", f"one of {', '.join(PRODUCT_FIELDS)}")
        t = PRODUCT_FIELDS[c.field]
        return ProductT(c.list, c.field, self.test(t, c.op, c.value, c.HasField("value"), path))

    def c_purchase_overdue(self, c: pb.OverdueCondition, path: str):
        if not 0 < c.factor <= 100:
            raise DefinitionError(f"{path}.factor", "above 0 and at most 100")
        return OverdueT(float(c.factor))


def walk(tree) -> list:
    """Every node of a validated tree, depth first."""
    out, todo = [], [tree]
    while todo:
        n = todo.pop()
        out.append(n)
        if isinstance(n, And | Or):
            todo.extend(reversed(n.items))
        elif isinstance(n, Not):
            todo.append(n.item)
    return out


def time_dependent(tree) -> bool:
    """Whether the passage of time alone can change the result (relative windows, day counts)."""
    for n in walk(tree):
        if isinstance(n, EventT | SequenceT) and n.window.relative:
            return True
        if isinstance(n, EngagedT | OverdueT):
            return True
        if isinstance(n, ProductT) and n.list == "abandoned":  # an item is abandoned once its window passes
            return True
        tests = [getattr(n, "test", None)] + [f.test for f in getattr(n, "filters", ())]
        if isinstance(n, AccountT) and n.trait:
            tests.append(n.trait.test)
        if isinstance(n, ComputedT) and n.name == DERIVED_DAYS:
            return True
        if any(t is not None and t.op in TIME_OPS for t in tests):
            return True
    return False


def retention(days: int) -> timedelta:
    return timedelta(days=days)
