"""The one envelope of every log message (cdp.common.v1.Envelope).

Event ids of derived events are deterministic (uuid5 of the cause and a discriminator),
so that re-processing a message re-publishes the same ids and JetStream's duplicate
window, and the consumers' idempotency, drop the copies.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from functools import lru_cache

from google.protobuf import any_pb2, timestamp_pb2
from google.protobuf.message import DecodeError, Message

from cdp.common.v1 import envelope_pb2

from .errors import PoisonMessage

Envelope = envelope_pb2.Envelope
_NS = uuid.UUID("6f1c3a52-8f4e-4a8e-9d55-0c5c1d4e2b7a")


_NS_BYTES = _NS.bytes


_sha1 = hashlib.sha1
# the hex digit of the variant nibble (binary 10xx) for each hex digit of the hash
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def json_object(text: str | bytes | None) -> dict:
    """A free-form JSON object carried in an event (properties, traits, context) as a dict:
    {} when empty, not valid JSON or not an object (what a sender put there is not trusted)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def derived_id(*parts: str) -> str:
    """A deterministic event id for an event derived from others: exactly
    str(uuid.uuid5(_NS, "\\x1f".join(parts))), computed without the UUID object (hot path):
    the first 16 bytes of the SHA-1, version nibble 5, variant bits 10."""
    h = _sha1(_NS_BYTES + "\x1f".join(parts).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def ts(dt: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A protobuf Timestamp (naive datetimes are taken as UTC); microsecond precision."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return timestamp_pb2.Timestamp(seconds=int(dt.timestamp() // 1), nanos=dt.microsecond * 1000)


def ts_fields(dt: datetime) -> tuple[int, int]:
    """(seconds, nanos) of ts(dt), without building the message."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() // 1), dt.microsecond * 1000


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64 on the wire: two's complement, ten bytes
    if n < 0x80:
        return bytes((n,))
    if n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# ---- protobuf wire format, for the messages the hot path writes directly -------------------
# Each writer gives exactly the bytes upb's SerializeToString() gives for the field (proto3:
# an empty string or bytes field is omitted; fields in ascending number order). The callers
# keep a test that compares their output with the protobuf message's, byte for byte.


def pb_key(number: int, wire_type: int = 2) -> bytes:
    """The key (tag) of a field: varint of (number << 3 | wire_type); 2 = length-delimited."""
    return _varint(number << 3 | wire_type)


def pb_len(key: bytes, data: bytes) -> bytes:
    """A length-delimited field (key, length, data), present even when data is empty."""
    n = len(data)
    return key + (bytes((n,)) if n < 0x80 else _varint(n)) + data


def pb_str(key: bytes, s: str) -> bytes:
    """A proto3 string field: b"" when empty; UTF-8 (a lone surrogate raises
    UnicodeEncodeError, as setting it on a message does)."""
    if not s:
        return b""
    b = s.encode()
    n = len(b)
    return key + (bytes((n,)) if n < 0x80 else _varint(n)) + b


def _field(tag: int, data: bytes) -> bytes:
    """A length-delimited field (one-byte tag, length, data)."""
    n = len(data)
    return bytes((tag, n)) + data if n < 0x80 else bytes((tag,)) + _varint(n) + data


def _ts_bytes(seconds: int, nanos: int) -> bytes:
    return (b"\x08" + _varint(seconds) if seconds else b"") + (b"\x10" + _varint(nanos) if nanos else b"")


@lru_cache(maxsize=1024)
def _ts_field(tag: int, seconds: int, nanos: int) -> bytes:
    """A Timestamp field's bytes; remembered (a batch shares its instants)."""
    return _field(tag, _ts_bytes(seconds, nanos))


@lru_cache(maxsize=4096)
def pb_ts(key: bytes, seconds: int, nanos: int) -> bytes:
    """A present google.protobuf.Timestamp field (SetInParent at the epoch: key and length 0);
    remembered (a batch shares its instants)."""
    return pb_len(key, _ts_bytes(seconds, nanos))


def _bytes(tag: int, b: bytes) -> bytes:
    return _field(tag, b) if b else b""


def _str(tag: int, s: str) -> bytes:
    return _field(tag, s.encode()) if s else b""


def encode(type: str, payload: Message, *, producer: str, event_id: str, occurred_at: tuple[int, int],
           recorded_at: tuple[int, int]) -> bytes:
    """The serialized Envelope, byte for byte what `make(type, payload, producer=...,
    event_id=..., occurred_at=...).SerializeToString()` gives (no cause: the correlation id
    is the event id), built without the message objects (the hot path of ingest).
    occurred_at and recorded_at are (seconds, nanos), as ts_fields returns them."""
    return encode_raw(type, type_url(payload), payload.SerializeToString(), producer=producer, event_id=event_id,
                      occurred_at=occurred_at, recorded_at=recorded_at)


@lru_cache(maxsize=256)
def _constant_fields(type: str, producer: str, type_url: str) -> tuple[bytes, bytes, bytes]:
    """(type field, producer field, the Any's type_url field) of an envelope."""
    return _str(0x12, type), _str(0x3A, producer), _str(0x0A, type_url)


# varints of lengths below 2**14 (one or two bytes), the common case of the fields written here
_SHORT_VARINTS = tuple(_varint(n) for n in range(1 << 14))


def _len_varint(n: int) -> bytes:
    return _SHORT_VARINTS[n] if n < 0x4000 else _varint(n)


def encode_raw(type: str, type_url: str, payload: bytes, *, producer: str, event_id: str,
               occurred_at: tuple[int, int], recorded_at: tuple[int, int]) -> bytes:
    """`encode` of a payload given as its serialized bytes and its Any type_url
    (`type_url(message)`): what the hot path uses when it writes the payload's bytes itself."""
    type_field, producer_field, url_field = _constant_fields(type, producer, type_url)
    ev = _str(0x0A, event_id)
    n = len(payload)
    if n:
        n_varint = _len_varint(n)
        any_len = len(url_field) + 1 + len(n_varint) + n
        tail = (url_field, b"\x12", n_varint, payload)
    else:  # an empty payload's value field is omitted
        any_len = len(url_field)
        tail = (url_field,)
    return b"".join((
        ev,
        type_field,
        _ts_field(0x1A, *occurred_at),
        _ts_field(0x22, *recorded_at),
        b"\x2a" + ev[1:] if ev else b"",  # correlation_id: the event id itself
        producer_field,
        b"\x42",
        _len_varint(any_len),
        *tail,
    ))


_TYPE_URLS: dict[str, str] = {}


def type_url(payload: Message | type[Message]) -> str:
    """The type_url Any.Pack writes for a message (or message class)."""
    name = payload.DESCRIPTOR.full_name
    url = _TYPE_URLS.get(name)
    if url is None:
        url = _TYPE_URLS[name] = "type.googleapis.com/" + name  # as Any.Pack writes it
    return url


_type_url = type_url


def from_ts(t: timestamp_pb2.Timestamp) -> datetime:
    return t.ToDatetime(tzinfo=UTC)


def now() -> datetime:
    return datetime.now(UTC)


def make(
    type: str,
    payload: Message,
    *,
    producer: str,
    event_id: str | None = None,
    occurred_at: datetime | None = None,
    cause: Envelope | None = None,
) -> Envelope:
    """A new envelope; with `cause`, correlation and causation ids follow from it."""
    env = Envelope(
        event_id=event_id or str(uuid.uuid4()),
        type=type,
        producer=producer,
        correlation_id=(cause.correlation_id or cause.event_id) if cause else "",
        causation_id=cause.event_id if cause else "",
    )
    if not env.correlation_id:
        env.correlation_id = env.event_id
    env.recorded_at.CopyFrom(ts(now()))
    if occurred_at is not None:
        env.occurred_at.CopyFrom(ts(occurred_at))
    elif cause is not None:
        env.occurred_at.CopyFrom(cause.occurred_at)
    else:
        env.occurred_at.CopyFrom(env.recorded_at)
    any_ = any_pb2.Any()
    any_.Pack(payload)
    env.payload.CopyFrom(any_)
    return env


def decode(data: bytes) -> Envelope:
    env = Envelope()
    try:
        env.ParseFromString(data)
    except DecodeError as e:
        raise PoisonMessage(f"not a cdp.common.v1.Envelope: {e}") from None
    if not env.event_id or not env.type:
        raise PoisonMessage("envelope lacks event_id or type")
    return env


def unpack(env: Envelope, cls: type[Message]) -> Message:
    msg = cls()
    if not env.payload.Unpack(msg):
        raise PoisonMessage(f"payload is {env.payload.type_url!r}, expected {cls.DESCRIPTOR.full_name}")
    return msg
