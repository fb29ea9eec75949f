from datetime import UTC, datetime, timedelta

import pytest

from cdp_core.errors import InvalidArgument
from cdp_ingest.domain.calls import (
    MAX_DEPTH,
    MAX_EVENT_BYTES,
    MAX_KEYS,
    Call,
    Source,
    accept,
    call_from_json,
    call_to_json,
    corrected_timestamp,
)
from cdp_ingest.grpc_api import GRPC_NAMES

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SRC = Source("s1", "web", "web")


def build(kind="track", **kw):
    kw.setdefault("event", "Viewed" if kind == "track" else "")
    return accept(Call(kind=kind, **kw), SRC, NOW, new_id="generated")


def test_clock_skew_is_corrected_from_sent_at():
    # client clock 1 hour fast: sentAt and timestamp both read 1h ahead
    sent = NOW + timedelta(hours=1)
    happened = sent - timedelta(seconds=30)
    a = build(user_id="u", timestamp=happened.isoformat(), sent_at=sent.isoformat().replace("+00:00", "Z"))
    assert a.occurred_at == NOW - timedelta(seconds=30)
    assert a.event.original_timestamp.ToDatetime(tzinfo=UTC) == happened
    assert a.event.received_at.ToDatetime(tzinfo=UTC) == NOW


def test_without_timestamp_the_arrival_time_is_used_and_far_future_is_clamped():
    assert corrected_timestamp(NOW, None, None) == NOW
    assert corrected_timestamp(NOW, NOW - timedelta(days=1), None) == NOW - timedelta(days=1)
    assert corrected_timestamp(NOW, NOW + timedelta(days=3), None) == NOW


def test_event_id_derives_from_source_and_message_id():
    a, b = build(user_id="u", message_id="m1"), build(user_id="u", message_id="m1")
    assert a.event_id == b.event_id != build(user_id="u", message_id="m2").event_id
    other = accept(Call(kind="track", user_id="u", message_id="m1", event="V"), Source("s2", "x", "web"), NOW,
                   new_id="x")
    assert other.event_id != a.event_id
    assert build(user_id="u").event_id == "generated"
    assert a.event.source_id == "s1" and a.event.source_kind == "web"


@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(), "userId"),
        (dict(user_id="   "), "userId"),
        (dict(user_id=["a"]), "userId"),
        (dict(user_id="u", message_id="m" * 129), "messageId"),
        (dict(anonymous_id="a" * 513), "anonymousId"),
        (dict(user_id="u", properties="not json"), "properties"),
        (dict(user_id="u", properties='"a string"'), "properties"),
        (dict(user_id="u", properties=[1, 2]), "properties"),
        (dict(user_id="u", context="[]"), "context"),
        (dict(user_id="u", properties={"x": "y" * MAX_EVENT_BYTES}), "properties"),
        (dict(user_id="u", properties={f"k{i}": i for i in range(MAX_KEYS + 1)}), "properties"),
        (dict(user_id="u", timestamp="yesterday"), "timestamp"),
        (dict(user_id="u", sent_at=12), "sentAt"),
        (dict(user_id="u", identifiers=[("Shoe Size", "42")]), "identifiers[0].type"),
        (dict(user_id="u", identifiers=[("email", "a@b.c"), ("phone", "")]), "identifiers[1].value"),
    ],
)
def test_bad_input_names_the_field(kw, field):
    with pytest.raises(InvalidArgument) as e:
        build(**kw)
    assert e.value.field == field
    assert str(e.value).startswith(field)


def test_deep_nesting_is_refused_both_as_text_and_as_object():
    deep: dict = {}
    cur = deep
    for _ in range(MAX_DEPTH + 1):
        cur["a"] = {}
        cur = cur["a"]
    import json

    for value in (deep, json.dumps(deep)):
        with pytest.raises(InvalidArgument, match="nested deeper"):
            build(user_id="u", properties=value)
    with pytest.raises(InvalidArgument, match="nested deeper"):
        build(user_id="u", properties="[" * 100_000 + "]" * 100_000)


def test_kind_specific_requirements():
    with pytest.raises(InvalidArgument, match="^event"):
        build(event="", user_id="u")
    with pytest.raises(InvalidArgument, match="^groupId"):
        build("group", user_id="u")
    with pytest.raises(InvalidArgument, match="^previousId"):
        build("alias", user_id="u")
    assert build("identify", user_id="u").event.kind == "identify"
    assert build("alias", user_id="u", previous_id="old").event.previous_id == "old"


def test_grpc_callers_see_their_own_field_names():
    with pytest.raises(InvalidArgument) as e:
        accept(Call(kind="track", event="X", names=GRPC_NAMES, path="calls[2]"), SRC, NOW, new_id="x")
    assert e.value.field == "calls[2].common.user_id"


def test_segment_json_round_trip_and_batch_defaults():
    obj = {"type": "track", "userId": 42, "event": "Order Completed", "properties": {"revenue": 9.5},
           "messageId": "m1", "timestamp": "2026-11-28T11:00:00Z"}
    call = call_from_json(obj, path="batch[0]", defaults={"context": {"ip": "1.2.3.4"}, "sentAt": "2026-11-28T11:00:01Z"})
    assert call.context == {"ip": "1.2.3.4"}
    a = accept(call, SRC, NOW, new_id="x")
    assert a.event.user_id == "42" and a.properties == {"revenue": 9.5}
    assert call_to_json(call)["properties"] == {"revenue": 9.5}
    with pytest.raises(InvalidArgument, match=r"^batch\[1\].type"):
        call_from_json({"type": "explode"}, path="batch[1]")


def test_texts_orjson_would_misread_go_to_the_exact_parser():
    """orjson reads integers beyond 64 bits as floats; such texts are parsed by json.loads, and
    digit runs inside strings (hex ids) do not send a text there."""
    import json
    import random

    import orjson

    from cdp_ingest.domain.calls import may_hold_big_int

    # conservative: 20 digits (19 after a minus) always go there, even when they would fit
    assert may_hold_big_int(b'{"a": 18446744073709551616}') and not may_hold_big_int(b'{"a": 1844674407370955161}')
    assert may_hold_big_int(b'[1,-9223372036854775809]') and not may_hold_big_int(b'[1,-922337203685477580]')
    assert not may_hold_big_int(b'{"id": "3f12345678901234567890ab", "phone": "123456789012345678901"}')
    rng = random.Random(1)

    def value(depth=0):
        c = rng.random()
        if c < 0.3 and depth < 3:
            return {str(rng.randrange(100)): value(depth + 1) for _ in range(rng.randrange(4))}
        if c < 0.45 and depth < 3:
            return [value(depth + 1) for _ in range(rng.randrange(4))]
        if c < 0.6:
            return rng.randrange(-10 ** rng.randrange(1, 25), 10 ** rng.randrange(1, 25))
        if c < 0.7:
            return rng.random() * 10 ** rng.randrange(-5, 25)
        return "".join(rng.choice("0123456789:,[ -ab") for _ in range(rng.randrange(30)))

    misread = 0
    for _ in range(6000):
        text = json.dumps(value(), indent=rng.choice([None, 1])).encode()
        if repr(orjson.loads(text)) != repr(json.loads(text)):
            assert may_hold_big_int(text), text
            misread += 1
    assert misread > 50
    big = Call(kind="track", user_id="u", event="E", properties='{"n": -9849867083580040443}')
    assert accept(big, SRC, NOW).properties == {"n": -9849867083580040443}
