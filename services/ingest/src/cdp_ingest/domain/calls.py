"""Segment-spec calls: validation, limits, clock-skew correction, and the log's
EventCollected. Every entry point (gRPC, HTTP, webhooks, imports) turns what it
received into `Call`s and hands them to `accept`; nothing else builds log events.

Limits (a violation raises InvalidArgument naming the field and the limit):
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cdp.ingest.v1 import events_pb2
from cdp_core.envelope import _varint, derived_id, pb_key, pb_len, pb_str, pb_ts, ts_fields, type_url
from cdp_core.errors import InvalidArgument

try:  # a faster parser for valid JSON; json.loads still decides every error (and NaN, huge ints)
    from orjson import dumps as _fast_dumps
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - orjson is optional
    _fast_loads = _fast_dumps = None

# orjson parses integers beyond 64 bits as floats (json.loads keeps them exact): beyond
# 18446744073709551615 (20 digits) or below -9223372036854775808 (19 digits). As a JSON number
# such an integer follows ':', '[' or ',' (or the start of the text), after whitespace.
_DIGITS_TO_ZERO = bytes(48 if 48 <= i <= 57 else 32 for i in range(256))
_NINETEEN_DIGITS = b"0" * 19
_BEFORE_NUMBER = frozenset(b":[,")
_JSON_WHITESPACE = frozenset(b" \t\r\n")


# for _object: digits -> "0" as above, and "{", "[" -> "{" (to count what opens a level)
_DIGITS_AND_OPENS = bytes(48 if 48 <= i <= 57 else 123 if i in (91, 123) else 32 for i in range(256))


def may_hold_big_int(data: bytes, digits: bytes | None = None) -> bool:
    """Whether JSON text (UTF-8) may hold an integer that orjson would parse as a float: a run
    of 20 digits or more (19 after a minus) placed where a number can start. Runs inside
    strings (hex ids, phone numbers) are not numbers; one that only looks placed like a number
    (`"a:123…"`) sends the text to the exact parser, which is slower but right. `digits`:
    data translated with _DIGITS_TO_ZERO (or _DIGITS_AND_OPENS), when the caller has it."""
    if len(data) < 19:
        return False
    if digits is None:
        digits = data.translate(_DIGITS_TO_ZERO)
    i = digits.find(_NINETEEN_DIGITS)
    n = len(data)
    while i >= 0:  # i starts a run of digits (the leftmost 19 past the previous run)
        end = i + 19
        while end < n and digits[end] == 48:
            end += 1
        j = i
        negative = j and data[j - 1] == 45  # '-'
        if negative or end - i >= 20:
            if negative:
                j -= 1
            while j and data[j - 1] in _JSON_WHITESPACE:
                j -= 1
            if not j or data[j - 1] in _BEFORE_NUMBER:
                return True
        i = digits.find(_NINETEEN_DIGITS, end)
    return False


KINDS = ("track", "identify", "page", "screen", "group", "alias")
MAX_MESSAGE_ID = 128
MAX_ID = 512  # userId, anonymousId, groupId, previousId, identifier values
MAX_NAME = 256  # event, name, category
MAX_EVENT_BYTES = 32 * 1024  # one call as stored (Segment: 32 KB per call)
MAX_BATCH_BYTES = 500 * 1024  # one batch request (Segment: 500 KB per batch)
MAX_BATCH_CALLS = 2500
MAX_KEYS = 300  # top-level keys of properties / traits / context
MAX_DEPTH = 10  # nesting of objects and arrays inside a JSON field
MAX_IDENTIFIERS = 20
IDENTIFIER_TYPES = frozenset({"user_id", "anonymous_id", "email", "phone", "device_id"})
# Custom identifier types (crm_id, loyalty_id, ...) are declared in identity's rules; ingest
# checks their form only, and identity leaves out the types it does not know.
CUSTOM_IDENTIFIER_TYPE = re.compile(r"^[a-z][a-z0-9_]{1,31}$")
# clamp: events claiming to be more than this far in the future are set to arrival time
MAX_FUTURE_S = 24 * 3600

__doc__ += f"""
- messageId ≤ {MAX_MESSAGE_ID} chars; userId, anonymousId, groupId, previousId, identifiers ≤ {MAX_ID};
- event / name / category ≤ {MAX_NAME}; track needs `event`, group needs `groupId`, alias needs `previousId`;
- properties, traits, context, integrations: JSON objects with ≤ {MAX_KEYS} top-level keys,
  nested ≤ {MAX_DEPTH} deep;
- one call ≤ {MAX_EVENT_BYTES} bytes; a batch ≤ {MAX_BATCH_BYTES} bytes and ≤ {MAX_BATCH_CALLS} calls;
- ≤ {MAX_IDENTIFIERS} extra identifiers of types {sorted(IDENTIFIER_TYPES)} or custom types (identity's rules).
"""

JsonField = str | dict | None


@dataclass(slots=True)
class Call:
    """One Segment call as received, before validation. JSON fields may be text (gRPC)
    or already-parsed objects (HTTP); timestamps may be datetimes or ISO-8601 strings."""

    kind: str
    message_id: Any = ""
    user_id: Any = ""
    anonymous_id: Any = ""
    event: Any = ""
    name: Any = ""
    category: Any = ""
    group_id: Any = ""
    previous_id: Any = ""
    properties: Any = None
    traits: Any = None
    context: Any = None
    integrations: Any = None
    timestamp: Any = None
    sent_at: Any = None
    identifiers: list[tuple[str, str]] = field(default_factory=list)
    # Where the call is in its request ("batch[3]"), to name fields in errors, and how
    # the entry point names the fields (gRPC: {"userId": "common.user_id", ...}).
    path: str = ""
    names: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Source:
    source_id: str
    name: str
    kind: str


# EventCollected, written directly (cdp_core.envelope's pb_* writers): the keys of its fields.
_K_KIND, _K_MESSAGE_ID, _K_USER_ID, _K_ANONYMOUS_ID, _K_EVENT, _K_NAME, _K_GROUP_ID, _K_PREVIOUS_ID, \
    _K_PROPERTIES, _K_TRAITS, _K_CONTEXT, _K_INTEGRATIONS, _K_TIMESTAMP, _K_ORIGINAL_TIMESTAMP, _K_SENT_AT, \
    _K_RECEIVED_AT, _K_SOURCE_ID, _K_IDENTIFIERS, _K_CATEGORY, _K_VIOLATIONS, _K_SOURCE_KIND = \
    (pb_key(n) for n in range(1, 22))
_KIND_FIELDS = {k: pb_str(_K_KIND, k) for k in KINDS}
_ID_TYPE, _ID_VALUE = pb_key(1), pb_key(2)  # cdp.common.v1.Identifier
EVENT_TYPE_URL = type_url(events_pb2.EventCollected)


class Accepted:
    """A validated call: its event id, what the tracking plan reads, and its EventCollected
    as bytes: `payload(violations)` is exactly `event.SerializeToString()` of the message
    with those violations (fields 1-19 in `head`, then violations, then source_kind)."""

    __slots__ = ("event_id", "kind", "event_name", "occurred_at", "properties", "traits", "head", "tail")

    def __init__(self, event_id: str, kind: str, event_name: str, occurred_at: datetime, properties: dict,
                 traits: dict, head: bytes, tail: bytes):
        self.event_id, self.kind, self.event_name, self.occurred_at = event_id, kind, event_name, occurred_at
        self.properties, self.traits, self.head, self.tail = properties, traits, head, tail

    def payload(self, violations: list[str] | tuple = ()) -> bytes:
        if not violations:
            return self.head + self.tail
        return b"".join((self.head, *(pb_len(_K_VIOLATIONS, v.encode()) for v in violations), self.tail))

    @property
    def size(self) -> int:
        """Bytes of the event as stored, without violations."""
        return len(self.head) + len(self.tail)

    @property
    def event(self) -> events_pb2.EventCollected:
        """The EventCollected (decoded from the bytes; for tests and tools, not the hot path)."""
        return events_pb2.EventCollected.FromString(self.payload())


def _f(call: Call, name: str) -> str:
    if call.names:
        base = name.split("[", 1)[0]
        name = call.names.get(base, base) + name[len(base):]
    return f"{call.path}.{name}" if call.path else name


def _string(call: Call, name: str, value: Any, limit: int, *, required: bool = False) -> str:
    if value is None:
        value = ""
    elif isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidArgument(f"must be a string, not {type(value).__name__}", field=_f(call, name))
    elif not isinstance(value, str):
        value = str(value)  # numeric ids, as the SDKs allow
    if required and not value.strip():
        raise InvalidArgument("is required and must not be empty", field=_f(call, name))
    if len(value) > limit:
        raise InvalidArgument(f"is {len(value)} characters; the limit is {limit}", field=_f(call, name))
    return value


def _depth_ok(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if d > limit:
            return False
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values() if isinstance(x, (dict, list)))
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v if isinstance(x, (dict, list)))
    return True


_FLOAT_EXACT = 1e-4  # orjson writes floats as repr() does, except 0 < |x| < 1e-4 (and NaN, inf)


def _scan(value: dict, limit: int) -> tuple[bool, bool]:
    """(nested at most `limit` deep, orjson.dumps writes it as json.dumps(separators=(",", ":"),
    ensure_ascii=False) does). The second is True only for plain JSON values: str keys; str,
    int, bool, None and floats that orjson formats like repr(); dicts and lists (no subclasses).
    Ints beyond 64 bits and lone surrogates make orjson raise, which the caller handles."""
    plain = True
    stack = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        v, d = pop()
        if d > limit:
            return False, plain
        if isinstance(v, dict):
            items = v.values()
            if plain:
                for k in v:
                    if type(k) is not str:
                        plain = False
                        break
        else:
            items = v
        for x in items:
            t = type(x)
            if t is str or t is int or t is bool or x is None:
                continue
            if t is dict or t is list:
                push((x, d + 1))
            elif t is float:
                if not (_FLOAT_EXACT <= abs(x) < _INF or x == 0.0):
                    plain = False
            else:
                plain = False
                if isinstance(x, (dict, list)):
                    push((x, d + 1))
    return True, plain


_INF = float("inf")


def _object(call: Call, name: str, value: JsonField) -> tuple[dict, bytes | str]:
    """(parsed object, its JSON text) of a JSON field; ({}, b"") when absent. The text is
    UTF-8 bytes, or a str only when it cannot be encoded (a lone surrogate: writing the
    event then raises UnicodeEncodeError, as setting it on the message did)."""
    if value is None or value == "":
        return {}, b""
    if isinstance(value, str):
        try:
            data = value.encode()
            classes = data.translate(_DIGITS_AND_OPENS)
        except UnicodeEncodeError:
            data = classes = None
        try:
            try:
                if _fast_loads is None or data is None or may_hold_big_int(data, classes):
                    raise ValueError
                obj = _fast_loads(data)
            except (ValueError, TypeError, RecursionError):  # anything orjson refuses: json.loads decides
                obj = json.loads(value)
        except json.JSONDecodeError as e:
            raise InvalidArgument(f"is not valid JSON ({e.msg} at position {e.pos})", field=_f(call, name)) from None
        except RecursionError:
            raise InvalidArgument(f"is nested deeper than {MAX_DEPTH} levels", field=_f(call, name)) from None
        text = value if data is None else data
    else:
        obj, text = value, None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"must be a JSON object, not {type(obj).__name__}", field=_f(call, name))
    if len(obj) > MAX_KEYS:
        raise InvalidArgument(f"has {len(obj)} keys; the limit is {MAX_KEYS}", field=_f(call, name))
    if text is not None:
        opens = classes.count(b"{") if classes is not None else text.count("{") + text.count("[")
        if opens > MAX_DEPTH and not _depth_ok(obj, MAX_DEPTH):
            raise InvalidArgument(f"is nested deeper than {MAX_DEPTH} levels", field=_f(call, name))
        return obj, text
    if _fast_dumps is None or type(obj) is not dict:
        if not _depth_ok(obj, MAX_DEPTH):
            raise InvalidArgument(f"is nested deeper than {MAX_DEPTH} levels", field=_f(call, name))
        return obj, _text(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))
    depth_ok, plain = _scan(obj, MAX_DEPTH)
    if not depth_ok:
        raise InvalidArgument(f"is nested deeper than {MAX_DEPTH} levels", field=_f(call, name))
    if plain:
        try:
            return obj, _fast_dumps(obj)
        except TypeError:  # orjson.JSONEncodeError: ints beyond 64 bits, lone surrogates
            pass
    return obj, _text(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))


def _text(s: str) -> bytes | str:
    """UTF-8 bytes of a JSON text, or the str itself when it holds a lone surrogate."""
    try:
        return s.encode()
    except UnicodeEncodeError:
        return s


def _json_field(key: bytes, text: bytes | str) -> bytes:
    """A JSON text field (b"" when empty); a str text is encoded here (raising as the message did)."""
    if not text:
        return b""
    if type(text) is not bytes:
        text = text.encode()
    n = len(text)
    return key + (bytes((n,)) if n < 0x80 else _varint(n)) + text


def parse_time(call: Call, name: str, value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
        except ValueError:
            raise InvalidArgument("is not an ISO-8601 date-time", field=_f(call, name)) from None
    else:
        raise InvalidArgument(f"must be an ISO-8601 string, not {type(value).__name__}", field=_f(call, name))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    if not (1970 <= dt.year <= 9999):
        raise InvalidArgument("is out of range", field=_f(call, name))
    return dt


_last_ts: tuple = (None, None)
# The last context text validated, and its bytes: the calls of a batch (and an SDK's calls)
# usually carry the same context, and the same text always gives the same answer.
_last_context: tuple[str, bytes | str] = ("", b"")


def _ts_fields(dt: datetime) -> tuple[int, int]:
    """envelope.ts_fields(dt); the conversion is remembered for the last datetime object (a
    batch shares one received_at, and most calls' timestamp is that same object)."""
    global _last_ts
    last = _last_ts
    if last[0] is dt:
        return last[1]
    fields = ts_fields(dt)
    _last_ts = (dt, fields)
    return fields


_SOURCE_FIELDS: dict[tuple[str, str], tuple[bytes, bytes]] = {}


def _source_fields(source: Source) -> tuple[bytes, bytes]:
    """(source_id field, source_kind field) of a source's events; remembered per source."""
    key = (source.source_id, source.kind)
    fields = _SOURCE_FIELDS.get(key)
    if fields is None:
        if len(_SOURCE_FIELDS) > 4096:
            _SOURCE_FIELDS.clear()
        fields = _SOURCE_FIELDS[key] = (pb_str(_K_SOURCE_ID, source.source_id), pb_str(_K_SOURCE_KIND, source.kind))
    return fields


_last_ts_field: dict[bytes, tuple[datetime, bytes]] = {}


def _ts_field(key: bytes, dt: datetime) -> bytes:
    """A present Timestamp field of envelope.ts(dt) (key and length only at the epoch); the
    last one of each field is remembered by datetime object (a batch shares received_at, and
    calls without a timestamp occurred then)."""
    last = _last_ts_field.get(key)
    if last is not None and last[0] is dt:
        return last[1]
    field_bytes = pb_ts(key, *_ts_fields(dt))
    _last_ts_field[key] = (dt, field_bytes)
    return field_bytes


def corrected_timestamp(received_at: datetime, timestamp: datetime | None, sent_at: datetime | None) -> datetime:
    """Segment's clock-skew correction: timestamp + (receivedAt - sentAt); arrival when absent."""
    if timestamp is None:
        return received_at
    t = timestamp if sent_at is None else timestamp + (received_at - sent_at)
    if (t - received_at).total_seconds() > MAX_FUTURE_S:
        return received_at
    return t


def accept(call: Call, source: Source, received_at: datetime, *, new_id: str | None = None) -> Accepted:
    """Validates one call and returns the EventCollected to append to the log.

    The event id derives from (source, messageId), so a client retry is the same event;
    without a messageId, `new_id` (default: a random uuid) is used.
    """
    kind = call.kind
    if kind not in KINDS:
        raise InvalidArgument(f"unknown call type; one of {', '.join(KINDS)}", field=_f(call, "type"))
    # A str within its limit is taken as it is (what _string returns for it); anything else,
    # and the required fields, go through _string.
    v = call.message_id
    message_id = v if type(v) is str and len(v) <= MAX_MESSAGE_ID else _string(call, "messageId", v, MAX_MESSAGE_ID)
    v = call.user_id
    user_id = v if type(v) is str and len(v) <= MAX_ID else _string(call, "userId", v, MAX_ID)
    v = call.anonymous_id
    anonymous_id = v if type(v) is str and len(v) <= MAX_ID else _string(call, "anonymousId", v, MAX_ID)
    if not user_id.strip() and not anonymous_id.strip():
        raise InvalidArgument("either userId or anonymousId is required", field=_f(call, "userId"))
    event = _string(call, "event", call.event, MAX_NAME, required=kind == "track")
    v = call.name
    name = v if type(v) is str and len(v) <= MAX_NAME else _string(call, "name", v, MAX_NAME)
    v = call.category
    category = v if type(v) is str and len(v) <= MAX_NAME else _string(call, "category", v, MAX_NAME)
    v = call.group_id
    group_id = v if kind != "group" and type(v) is str and len(v) <= MAX_ID else \
        _string(call, "groupId", v, MAX_ID, required=kind == "group")
    v = call.previous_id
    previous_id = v if kind != "alias" and type(v) is str and len(v) <= MAX_ID else \
        _string(call, "previousId", v, MAX_ID, required=kind == "alias")
    properties, properties_text = _object(call, "properties", call.properties)
    traits, traits_text = _object(call, "traits", call.traits) if call.traits is not None else ({}, b"")
    global _last_context
    v = call.context
    if type(v) is str and v and v == _last_context[0]:
        context_text = _last_context[1]  # the same text as the previous call's (a batch's calls share it)
    else:
        _, context_text = _object(call, "context", v)
        if type(v) is str:
            _last_context = (v, context_text)
    _, integrations_text = _object(call, "integrations", call.integrations)
    if len(call.identifiers) > MAX_IDENTIFIERS:
        raise InvalidArgument(f"{len(call.identifiers)} given; the limit is {MAX_IDENTIFIERS}",
                              field=_f(call, "identifiers"))
    identifiers = b""
    if call.identifiers:
        parts = []
        for i, (t, v) in enumerate(call.identifiers):
            if t not in IDENTIFIER_TYPES and not (isinstance(t, str) and CUSTOM_IDENTIFIER_TYPE.match(t)):
                raise InvalidArgument(f"unknown identifier type; built-in: {', '.join(sorted(IDENTIFIER_TYPES))}, "
                                      "or a custom type of 2-32 characters a-z, 0-9 and _ (declared in identity's "
                                      "rules)", field=_f(call, f"identifiers[{i}].type"))
            value = _string(call, f"identifiers[{i}].value", v, MAX_ID, required=True)
            parts.append(pb_len(_K_IDENTIFIERS, pb_str(_ID_TYPE, t) + pb_str(_ID_VALUE, value)))
        identifiers = b"".join(parts)

    original = parse_time(call, "timestamp", call.timestamp)
    sent_at = parse_time(call, "sentAt", call.sent_at)
    occurred_at = corrected_timestamp(received_at, original, sent_at)
    event_id = derived_id("ingest", source.source_id, message_id) if message_id else (new_id or str(uuid.uuid4()))
    # The EventCollected's bytes, written directly in field order (the bytes the message
    # object would serialize to: tests/unit/test_event_bytes.py); violations go between
    # head and tail.
    source_id_field, tail = _source_fields(source)
    head = b"".join((
        _KIND_FIELDS[kind],
        pb_str(_K_MESSAGE_ID, message_id or event_id),
        pb_str(_K_USER_ID, user_id) if user_id else b"",
        pb_str(_K_ANONYMOUS_ID, anonymous_id) if anonymous_id else b"",
        pb_str(_K_EVENT, event) if event else b"",
        pb_str(_K_NAME, name) if name else b"",
        pb_str(_K_GROUP_ID, group_id) if group_id else b"",
        pb_str(_K_PREVIOUS_ID, previous_id) if previous_id else b"",
        _json_field(_K_PROPERTIES, properties_text) if properties_text else b"",
        _json_field(_K_TRAITS, traits_text) if traits_text else b"",
        _json_field(_K_CONTEXT, context_text) if context_text else b"",
        _json_field(_K_INTEGRATIONS, integrations_text) if integrations_text else b"",
        _ts_field(_K_TIMESTAMP, occurred_at),
        _ts_field(_K_ORIGINAL_TIMESTAMP, original) if original is not None else b"",
        _ts_field(_K_SENT_AT, sent_at) if sent_at is not None else b"",
        _ts_field(_K_RECEIVED_AT, received_at),
        source_id_field,
        identifiers,
        pb_str(_K_CATEGORY, category) if category else b"",
    ))
    size = len(head) + len(tail)
    if size > MAX_EVENT_BYTES:
        raise InvalidArgument(f"the call is {size} bytes; the limit is {MAX_EVENT_BYTES}", field=_f(call, "properties"))
    return Accepted(event_id, kind, event, occurred_at, properties, traits, head, tail)


# Segment's JSON field names -> Call attributes
_JSON_KEYS = {
    "messageId": "message_id", "userId": "user_id", "anonymousId": "anonymous_id", "event": "event",
    "name": "name", "category": "category", "groupId": "group_id", "previousId": "previous_id",
    "properties": "properties", "traits": "traits", "context": "context", "integrations": "integrations",
    "timestamp": "timestamp", "sentAt": "sent_at",
}
_JSON_ITEMS = tuple(_JSON_KEYS.items())


def call_from_json(obj: Any, *, kind: str | None = None, path: str = "", defaults: dict | None = None) -> Call:
    """A Call from a Segment HTTP API JSON object (a single call or one batch item).

    `defaults` are the batch's own context/integrations/sentAt, which items inherit.
    """
    if not isinstance(obj, dict):
        raise InvalidArgument(f"must be a JSON object, not {type(obj).__name__}", field=path or "body")
    k = kind or obj.get("type") or obj.get("action")
    if not isinstance(k, str) or k not in KINDS:
        raise InvalidArgument(f"unknown call type; one of {', '.join(KINDS)}", field=f"{path}.type" if path else "type")
    call = Call(kind=k, path=path, **{attr: obj[key] for key, attr in _JSON_ITEMS if key in obj})
    if defaults:
        for key, attr in (("context", "context"), ("integrations", "integrations"), ("sentAt", "sent_at")):
            if getattr(call, attr) in (None, "") and key in defaults:
                setattr(call, attr, defaults[key])
    ids = obj.get("identifiers")
    if isinstance(ids, list):
        call.identifiers = [(i.get("type", ""), i.get("value", "")) if isinstance(i, dict) else ("", "") for i in ids]
    if k == "page" and call.name in (None, "") and isinstance(call.properties, dict):
        call.name = call.properties.get("name", "") or ""
    if k == "identify" and call.traits is None and isinstance(call.context, dict):
        call.traits = call.context.get("traits")  # analytics.js may send traits only in context
    return call


def call_to_json(call: Call) -> dict:
    """The Segment JSON of a call (for failed events and replays)."""
    out: dict = {"type": call.kind}
    for key, attr in _JSON_KEYS.items():
        v = getattr(call, attr)
        if v is None or v == "":
            continue
        if isinstance(v, datetime):
            v = v.isoformat()
        elif attr in ("properties", "traits", "context", "integrations") and isinstance(v, str):
            try:
                v = json.loads(v)
            except (json.JSONDecodeError, RecursionError):
                pass  # kept as the text that was sent
        out[key] = v
    if call.identifiers:
        out["identifiers"] = [{"type": t, "value": v} for t, v in call.identifiers]
    return out
