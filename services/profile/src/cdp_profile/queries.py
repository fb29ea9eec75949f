"""Pure helpers of the profile service's reads and of the timeline rows: the channel of an
event, JSON text fit for jsonb, page tokens, field masks, trait filters. No I/O."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from dataclasses import dataclass

from cdp.ingest.v1 import events_pb2 as ingest_events
from cdp.profile.v1 import profile_pb2
from cdp_core.errors import InvalidArgument

MAX_PAGE = 1000
DEFAULT_PAGE = 100
MAX_BATCH = 1000
MAX_FILTERS = 20
MAX_TIMELINE_KINDS = 20
MAX_TIMELINE_NAMES = 100
MAX_NAME = 256  # a trait or event name
MAX_FILTER_VALUE = 1024  # characters of a filter's value
MAX_IDENTIFIER_VALUE = 512
TYPE_NAME = re.compile(r"[a-z][a-z0-9_]*")

# --- the channel of an event -------------------------------------------------------------

# Engagement events named by the channel that carried them ("Email Opened", "SMS Link Clicked").
_NAME_PREFIXES = (("email ", "email"), ("sms ", "sms"), ("whatsapp ", "whatsapp"), ("push ", "push"))
# Sources whose kind is itself a touchpoint (server, crm, survey are not: they relay others).
_SOURCE_CHANNELS = {"web": "web", "app": "app", "pos": "pos", "shopify": "web", "email": "email", "sms": "sms",
                    "whatsapp": "whatsapp", "push": "push"}
MAX_CHANNEL = 64


def _channel_field(text: str) -> str | None:
    if not text or '"channel"' not in text:  # parsed only when it may be there
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    c = value.get("channel") if isinstance(value, dict) else None
    if isinstance(c, str) and c.strip() and len(c) <= MAX_CHANNEL:
        return c.strip().lower()
    return None


def channel_of(ev: ingest_events.EventCollected) -> str | None:
    """The channel of the touchpoint, when known: the event's own `channel` (properties, then
    context); else the channel an engagement event is named after; else the source's kind when
    it is a touchpoint (web, app, pos, shopify = web, …); else None."""
    c = _channel_field(ev.properties_json) or _channel_field(ev.context_json)
    if c:
        return c
    name = (ev.event or ev.name).lower()
    for prefix, channel in _NAME_PREFIXES:
        if name.startswith(prefix):
            return channel
    return _SOURCE_CHANNELS.get(ev.source_kind)


def pg_json(text: str) -> str | None:
    """JSON text PostgreSQL's jsonb accepts ("" -> None): jsonb refuses the escape \\u0000,
    which JSON allows; it becomes U+FFFD."""
    if not text:
        return None
    if "\\u0000" in text:
        text = text.replace("\\u0000", "\\ufffd")
    return text


def json_object(text: str | None) -> dict:
    """A JSON object given as text (an event's traits, a jsonb column read as text) as a dict:
    {} when empty or not an object."""
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


# --- paging -------------------------------------------------------------------------------


def page_size(size: int) -> int:
    if size < 0 or size > MAX_PAGE:
        raise InvalidArgument(f"must be between 0 and {MAX_PAGE} (0 means {DEFAULT_PAGE})", field="page_size")
    return size or DEFAULT_PAGE


def fingerprint(*parts) -> str:
    """A short digest of what a page token is valid for (the request's filters)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def encode_token(fp: str, *position) -> str:
    raw = json.dumps([fp, *position], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, fp: str, arity: int) -> list | None:
    """The position a token holds, None for no token; InvalidArgument(page_token) for a token
    not issued by us or issued for other filters."""
    if not token:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError:
        raise InvalidArgument("is not a token this service issued", field="page_token") from None
    if not isinstance(value, list) or len(value) != arity + 1:
        raise InvalidArgument("is not a token this service issued", field="page_token")
    if value[0] != fp:
        raise InvalidArgument("was issued for other filters: repeat the request that returned it", field="page_token")
    return value[1:]


# --- field masks ---------------------------------------------------------------------------

PROFILE_FIELDS = tuple(f.name for f in profile_pb2.Profile.DESCRIPTOR.fields)


@dataclass(frozen=True)
class Mask:
    """Which of Profile's fields to fill. `trait_names` None: every trait (when traits are in)."""

    fields: frozenset[str]
    trait_names: frozenset[str] | None = None

    def has(self, name: str) -> bool:
        return name in self.fields


ALL = Mask(frozenset(PROFILE_FIELDS))


def parse_mask(paths, *, field: str = "field_mask") -> Mask:
    """A FieldMask's paths over Profile: field names, or `traits.<name>` for single traits.
    Empty: every field. Unknown paths are refused, all named at once."""
    paths = list(paths)
    if not paths:
        return ALL
    fields, names, unknown = {"profile_id"}, set(), []
    for p in paths:
        if p in PROFILE_FIELDS:
            fields.add(p)
        elif p.startswith("traits.") and len(p) > len("traits."):
            names.add(p[len("traits."):])
        else:
            unknown.append(p)
    if unknown:
        raise InvalidArgument(f"unknown field(s) {', '.join(repr(u) for u in unknown)}; Profile's fields are "
                              f"{', '.join(PROFILE_FIELDS)} (and traits.<name>)", field=f"{field}.paths")
    if "traits" in fields:
        return Mask(frozenset(fields))
    if names:
        return Mask(frozenset(fields | {"traits"}), frozenset(names))
    return Mask(frozenset(fields))


# --- look-ups ---------------------------------------------------------------------------------


def lookup_of(msg, *, field: str = "") -> tuple[str, str, str]:
    """("profile_id", id, "") or ("identifier", type, normalized value) of a message with the
    `lookup` oneof; InvalidArgument naming the field (prefixed by `field`)."""
    pre = f"{field}." if field else ""
    which = msg.WhichOneof("lookup")
    if which == "profile_id":
        pid = msg.profile_id.strip()
        if not pid:
            raise InvalidArgument("must not be empty", field=f"{pre}profile_id")
        return "profile_id", pid, ""
    if which == "identifier":
        t, v = msg.identifier.type.strip().lower(), msg.identifier.value.strip()
        if not TYPE_NAME.fullmatch(t):
            raise InvalidArgument("must be an identifier type (user_id, anonymous_id, email, phone, device_id, "
                                  "or a custom type such as crm_id)", field=f"{pre}identifier.type")
        if not v:
            raise InvalidArgument("must not be empty", field=f"{pre}identifier.value")
        if len(v) > MAX_IDENTIFIER_VALUE:
            raise InvalidArgument(f"must be at most {MAX_IDENTIFIER_VALUE} characters", field=f"{pre}identifier.value")
        if t == "email":
            v = v.lower()
        return "identifier", t, v
    raise InvalidArgument("give profile_id or identifier", field=f"{pre}lookup" if pre else "lookup")


def profile_ids(ids, *, field: str = "profile_ids") -> list[str]:
    """A list of profile ids (at most MAX_BATCH, none empty), refused naming `field[i]`."""
    ids = list(ids)
    if len(ids) > MAX_BATCH:
        raise InvalidArgument(f"at most {MAX_BATCH} profile ids", field=field)
    for i, pid in enumerate(ids):
        if not pid.strip():
            raise InvalidArgument("must not be empty", field=f"{field}[{i}]")
        if len(pid) > MAX_IDENTIFIER_VALUE:
            raise InvalidArgument(f"must be at most {MAX_IDENTIFIER_VALUE} characters", field=f"{field}[{i}]")
    return [pid.strip() for pid in ids]


# --- trait filters ------------------------------------------------------------------------------


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def trait_conditions(filters, first_param: int) -> tuple[list[str], list]:
    """SQL conditions over `p.profile_id` (one per filter, ANDed by the caller) and their
    parameters, numbered from `first_param`. Refuses bad filters naming `filters[i]…`."""
    filters = list(filters)
    if len(filters) > MAX_FILTERS:
        raise InvalidArgument(f"at most {MAX_FILTERS} filters", field="filters")
    conds: list[str] = []
    params: list = []

    def param(value) -> str:
        params.append(value)
        return f"${first_param + len(params) - 1}"

    for i, f in enumerate(filters):
        at = f"filters[{i}]"
        if not f.name.strip():
            raise InvalidArgument("must name a trait", field=f"{at}.name")
        if len(f.name) > MAX_NAME:
            raise InvalidArgument(f"must be at most {MAX_NAME} characters", field=f"{at}.name")
        which = f.WhichOneof("condition")
        has = f"SELECT 1 FROM profile_traits t WHERE t.profile_id = p.profile_id AND t.name = {param(f.name)}"
        if which is None:
            raise InvalidArgument("give a condition: equals_json, exists, contains, starts_with or number",
                                  field=f"{at}.condition")
        if which == "exists":
            conds.append(f"{'' if f.exists else 'NOT '}EXISTS ({has})")
            continue
        if which == "equals_json":
            if len(f.equals_json) > MAX_FILTER_VALUE:
                raise InvalidArgument(f"must be at most {MAX_FILTER_VALUE} characters", field=f"{at}.equals_json")
            try:
                json.loads(f.equals_json)
            except ValueError:
                raise InvalidArgument("must be a JSON value (a string in quotes: \"pro\")",
                                      field=f"{at}.equals_json") from None
            conds.append(f"EXISTS ({has} AND t.value = {param(pg_json(f.equals_json))}::jsonb)")
        elif which in ("contains", "starts_with"):
            text = getattr(f, which)
            if not text:
                raise InvalidArgument("must not be empty", field=f"{at}.{which}")
            if len(text) > MAX_FILTER_VALUE:
                raise InvalidArgument(f"must be at most {MAX_FILTER_VALUE} characters", field=f"{at}.{which}")
            pattern = _like_prefix(text.lower())
            pattern = f"%{pattern}%" if which == "contains" else f"{pattern}%"
            conds.append(f"EXISTS ({has} AND jsonb_typeof(t.value) = 'string' "
                         f"AND lower(t.value #>> '{{}}') LIKE {param(pattern)})")
        else:  # number
            n = f.number
            bounds = [(name, op, getattr(n, name)) for name, op in (("gt", ">"), ("gte", ">="), ("lt", "<"),
                                                                     ("lte", "<=")) if n.HasField(name)]
            if not bounds:
                raise InvalidArgument("give at least one bound: gt, gte, lt, lte", field=f"{at}.number")
            for name, _, v in bounds:
                if not math.isfinite(v):
                    raise InvalidArgument("must be a finite number", field=f"{at}.number.{name}")
            # CASE, not AND: PostgreSQL may cast before testing the type
            number = "(CASE WHEN jsonb_typeof(t.value) = 'number' THEN (t.value)::numeric END)"
            tests = " AND ".join(f"{number} {op} {param(v)}::float8::numeric" for _, op, v in bounds)
            conds.append(f"EXISTS ({has} AND {tests})")
    return conds, params


def filters_key(filters) -> list:
    """The filters as plain data, for a page token's fingerprint."""
    out = []
    for f in filters:
        which = f.WhichOneof("condition")
        if which == "number":
            value = [[b, getattr(f.number, b)] for b in ("gt", "gte", "lt", "lte") if f.number.HasField(b)]
        else:
            value = getattr(f, which) if which else None
        out.append([f.name, which, value])
    return out
