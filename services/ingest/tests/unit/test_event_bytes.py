"""accept() writes the EventCollected's bytes directly: they must be, byte for byte, what the
protobuf message built field by field serializes to (and the pipeline's envelope what
envelope.make gives)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from cdp.common.v1 import identifier_pb2
from cdp.ingest.v1 import events_pb2
from cdp_core import envelope
from cdp_ingest.domain.calls import MAX_EVENT_BYTES, Call, Source, accept
from cdp_ingest.grpc_api import GRPC_NAMES

NOW = datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _text(rng: random.Random, n: int) -> str:
    alphabet = "abcXYZ019 _-.:/@" + "éß漢字🙂\u0300\"\\\n"
    return "".join(rng.choice(alphabet) for _ in range(n))


def _json(rng: random.Random, as_text: bool):
    obj = {_text(rng, rng.randrange(1, 8)): rng.choice([
        _text(rng, rng.randrange(0, 40)), rng.randrange(-10**6, 10**6), rng.random() * 1000, True, None,
        [1, "two", {"three": 3.5}], {"nested": {"deep": [_text(rng, 3)]}},
    ]) for _ in range(rng.randrange(0, 6))}
    if rng.random() < 0.1:  # long enough for two- and three-byte lengths
        obj["blob"] = _text(rng, rng.choice([200, 5000, 20000]))
    return json.dumps(obj, ensure_ascii=rng.random() < 0.5) if as_text else obj


def _when(rng: random.Random):
    return rng.choice([
        None,
        EPOCH,  # the epoch: a present, empty Timestamp
        EPOCH + timedelta(microseconds=rng.randrange(1, 10**6)),
        NOW - timedelta(seconds=rng.randrange(0, 10**9), microseconds=rng.randrange(0, 10**6)),
        NOW + timedelta(hours=rng.randrange(0, 48)),
        (NOW - timedelta(days=3)).isoformat(),
        "2026-11-28T11:59:59.5Z",
    ])


def _random_call(rng: random.Random, i: int) -> Call:
    kind = rng.choice(["track", "identify", "page", "screen", "group", "alias"])
    as_text = rng.random() < 0.5  # gRPC sends JSON text, HTTP parsed objects

    def s(n: int) -> str:
        return _text(rng, rng.randrange(0, n)) if rng.random() < 0.6 else ""

    return Call(
        kind=kind,
        message_id=rng.choice(["", f"m-{i}", _text(rng, 100)]),
        user_id=rng.choice([f"u{i}", _text(rng, 300), "", 42]),
        anonymous_id=rng.choice(["", f"anon-{i}"]) or "a",
        event=("Order Completed" if kind == "track" else s(20)),
        name=s(30), category=s(30),
        group_id=f"g{i}" if kind == "group" else s(10),
        previous_id=f"p{i}" if kind == "alias" else s(10),
        properties=_json(rng, as_text) if rng.random() < 0.7 else rng.choice([None, ""]),
        traits=_json(rng, as_text) if rng.random() < 0.4 else None,
        context=_json(rng, as_text) if rng.random() < 0.7 else None,
        integrations=_json(rng, as_text) if rng.random() < 0.2 else None,
        timestamp=_when(rng), sent_at=_when(rng),
        identifiers=[(rng.choice(["email", "phone", "device_id"]), "x" + _text(rng, rng.randrange(0, 30)))
                     for _ in range(rng.choice([0, 0, 1, 3]))],
        path=f"calls[{i}]", names=GRPC_NAMES if as_text else None,
    )


def _message(call: Call, source: Source, a, violations: list[str]) -> events_pb2.EventCollected:
    """The event as the protobuf message API builds it from the same validated values."""

    def text(v):
        if v is None or v == "":
            return ""
        return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), ensure_ascii=False)

    def ts(field, dt):
        seconds, nanos = envelope.ts_fields(dt)
        field.seconds, field.nanos = seconds, nanos
        if not (seconds or nanos):
            field.SetInParent()

    def when(v):
        if v is None or v == "":
            return None
        if isinstance(v, str):
            return datetime.fromisoformat(v.replace("Z", "+00:00"))
        return v

    ev = events_pb2.EventCollected(
        kind=call.kind, message_id=call.message_id or a.event_id, user_id=str(call.user_id or ""),
        anonymous_id=call.anonymous_id, event=call.event, name=call.name, category=call.category,
        group_id=call.group_id, previous_id=call.previous_id, properties_json=text(call.properties),
        traits_json=text(call.traits), context_json=text(call.context), integrations_json=text(call.integrations),
        source_id=source.source_id, source_kind=source.kind, violations=violations,
        identifiers=[identifier_pb2.Identifier(type=t, value=v) for t, v in call.identifiers],
    )
    ts(ev.timestamp, a.occurred_at)
    ts(ev.received_at, NOW)
    if when(call.timestamp) is not None:
        ts(ev.original_timestamp, when(call.timestamp))
    if when(call.sent_at) is not None:
        ts(ev.sent_at, when(call.sent_at))
    return ev


def test_accepted_bytes_are_the_protobuf_messages():
    rng = random.Random(4)
    sources = [Source("s1", "s1", "web"), Source("token:svc", "svc", "server"), Source("é" * 70, "x", "crm")]
    checked = 0
    for i in range(2000):
        call = _random_call(rng, i)
        source = rng.choice(sources)
        try:
            a = accept(call, source, NOW, new_id=f"generated-{i}")
        except Exception as e:  # noqa: BLE001 - only the size limit may refuse these calls
            assert "the limit is 32768" in str(e), e
            continue
        violations = rng.choice([[], [], ["properties.revenue: 'five' is not of type 'number'", _text(rng, 200)]])
        expected = _message(call, source, a, violations)
        assert a.payload(violations) == expected.SerializeToString(), i
        plain = _message(call, source, a, [])
        assert a.size == plain.ByteSize()  # what the 32 KB limit is checked against
        assert a.event == plain
        # the envelope the pipeline appends: what envelope.make(...) serializes to
        recorded = NOW + timedelta(microseconds=rng.randrange(10**6))
        subject = f"cdp.ingest.event.{call.kind}"
        env = envelope.make(subject, expected, producer="ingest", event_id=a.event_id, occurred_at=a.occurred_at)
        env.recorded_at.CopyFrom(envelope.ts(recorded))
        got = envelope.encode_raw(subject, envelope.type_url(events_pb2.EventCollected), a.payload(violations),
                                  producer="ingest", event_id=a.event_id,
                                  occurred_at=envelope.ts_fields(a.occurred_at),
                                  recorded_at=envelope.ts_fields(recorded))
        assert got == env.SerializeToString(), i
        checked += 1
    assert checked > 1600


def test_the_size_limit_counts_the_written_bytes():
    src = Source("s1", "s1", "web")
    base = accept(Call(kind="track", user_id="u", message_id="m", event="E", properties='{"x":""}'), src, NOW)
    room = MAX_EVENT_BYTES - base.size
    # a properties text that makes the event exactly MAX_EVENT_BYTES (its length field grows by 2 bytes)
    fits = accept(Call(kind="track", user_id="u", message_id="m", event="E",
                       properties=json.dumps({"x": "a" * (room - 2)}, separators=(",", ":"))), src, NOW)
    assert fits.size == MAX_EVENT_BYTES == fits.event.ByteSize()
    with pytest.raises(Exception, match="32769 bytes; the limit is 32768"):
        accept(Call(kind="track", user_id="u", message_id="m", event="E",
                    properties=json.dumps({"x": "a" * (room - 1)}, separators=(",", ":"))), src, NOW)


def test_a_lone_surrogate_fails_as_setting_it_on_the_message_did():
    src = Source("s1", "s1", "web")
    with pytest.raises(UnicodeEncodeError):
        events_pb2.EventCollected(user_id="\ud800")
    with pytest.raises(UnicodeEncodeError):
        accept(Call(kind="track", user_id="\ud800", event="E"), src, NOW)
    with pytest.raises(UnicodeEncodeError):
        accept(Call(kind="track", user_id="u", event="E", properties={"x": "\ud800"}), src, NOW)
