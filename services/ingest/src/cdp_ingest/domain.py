"""Ingest domain: validating a Segment-spec call and turning it into the log's
EventCollected. Pure: no I/O.

Limits (INVALID_ARGUMENT names the field and the limit when one is passed):
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from cdp.common.v1 import identifier_pb2
from cdp.ingest.v1 import events_pb2
from google.protobuf import timestamp_pb2

from cdp_core.envelope import derived_id, ts
from cdp_core.errors import InvalidArgument

MAX_MESSAGE_ID = 128
MAX_ID = 512
MAX_EVENT_NAME = 256
MAX_JSON_BYTES = 32 * 1024  # all JSON fields of one event together (Segment's per-event limit)
MAX_IDENTIFIERS = 20
IDENTIFIER_TYPES = frozenset({"user_id", "anonymous_id", "email", "phone", "device_id"})
KINDS = ("track", "identify", "page", "screen", "group", "alias")

__doc__ += f"""
- message_id at most {MAX_MESSAGE_ID} characters; user_id, anonymous_id, identifier values at most {MAX_ID};
- track event name required, at most {MAX_EVENT_NAME};
- properties/traits/context/integrations: JSON objects, {MAX_JSON_BYTES} bytes together;
- at most {MAX_IDENTIFIERS} extra identifiers, of types {sorted(IDENTIFIER_TYPES)}.
"""


def subject_for(kind: str) -> str:
    return f"cdp.ingest.event.{kind}"


def _json_object(field: str, text: str) -> str:
    if not text:
        return ""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidArgument(f"is not valid JSON ({e.msg} at position {e.pos})", field=field) from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"must be a JSON object, not {type(value).__name__}", field=field)
    return text


def _bounded(field: str, value: str, limit: int, *, required: bool = False) -> str:
    if required and not value.strip():
        raise InvalidArgument("is required and must not be empty", field=field)
    if len(value) > limit:
        raise InvalidArgument(f"is {len(value)} characters; the limit is {limit}", field=field)
    return value


def corrected_timestamp(received_at: datetime, timestamp: datetime | None, sent_at: datetime | None) -> datetime:
    """Segment's clock-skew correction: timestamp + (receivedAt - sentAt)."""
    if timestamp is None:
        return received_at
    if sent_at is None:
        return timestamp
    return timestamp + (received_at - sent_at)


def _dt(t: timestamp_pb2.Timestamp, present: bool) -> datetime | None:
    return t.ToDatetime(tzinfo=timezone.utc) if present else None


@dataclass(frozen=True)
class Accepted:
    event_id: str
    event: events_pb2.EventCollected
    occurred_at: datetime


def build_event(kind: str, common, *, source_id: str, received_at: datetime, event: str = "",
                properties_json: str = "", traits_json: str = "", new_id: str) -> Accepted:
    """Validates one call and returns the EventCollected to append to the log.

    The event id is derived from (source, message id), so a client retry with the same
    message id is the same event; without a message id, `new_id` is used.
    """
    message_id = _bounded("common.message_id", common.message_id, MAX_MESSAGE_ID)
    user_id = _bounded("common.user_id", common.user_id, MAX_ID)
    anonymous_id = _bounded("common.anonymous_id", common.anonymous_id, MAX_ID)
    if not user_id.strip() and not anonymous_id.strip():
        raise InvalidArgument("either common.user_id or common.anonymous_id is required", field="common.user_id")
    if kind == "track":
        _bounded("event", event, MAX_EVENT_NAME, required=True)
    json_fields = {
        "properties_json": _json_object("properties_json", properties_json),
        "traits_json": _json_object("traits_json", traits_json),
        "common.context_json": _json_object("common.context_json", common.context_json),
        "common.integrations_json": _json_object("common.integrations_json", common.integrations_json),
    }
    size = sum(len(v.encode()) for v in json_fields.values())
    if size > MAX_JSON_BYTES:
        raise InvalidArgument(f"JSON fields total {size} bytes; the limit is {MAX_JSON_BYTES}", field="properties_json")
    if len(common.identifiers) > MAX_IDENTIFIERS:
        raise InvalidArgument(f"{len(common.identifiers)} given; the limit is {MAX_IDENTIFIERS}", field="common.identifiers")
    identifiers = []
    for i, ident in enumerate(common.identifiers):
        f = f"common.identifiers[{i}]"
        if ident.type not in IDENTIFIER_TYPES:
            raise InvalidArgument(f"unknown identifier type; known: {', '.join(sorted(IDENTIFIER_TYPES))}", field=f"{f}.type")
        _bounded(f"{f}.value", ident.value, MAX_ID, required=True)
        identifiers.append(identifier_pb2.Identifier(type=ident.type, value=ident.value))

    original = _dt(common.timestamp, common.HasField("timestamp"))
    sent_at = _dt(common.sent_at, common.HasField("sent_at"))
    occurred_at = corrected_timestamp(received_at, original, sent_at)
    event_id = derived_id("ingest", source_id, message_id) if message_id else new_id
    ev = events_pb2.EventCollected(
        kind=kind,
        message_id=message_id or event_id,
        user_id=user_id,
        anonymous_id=anonymous_id,
        event=event,
        properties_json=json_fields["properties_json"],
        traits_json=json_fields["traits_json"],
        context_json=json_fields["common.context_json"],
        integrations_json=json_fields["common.integrations_json"],
        source_id=source_id,
        identifiers=identifiers,
    )
    ev.timestamp.CopyFrom(ts(occurred_at))
    ev.received_at.CopyFrom(ts(received_at))
    if original is not None:
        ev.original_timestamp.CopyFrom(ts(original))
    if sent_at is not None:
        ev.sent_at.CopyFrom(ts(sent_at))
    return Accepted(event_id, ev, occurred_at)
