from datetime import datetime, timedelta, timezone

import pytest
from cdp.common.v1 import identifier_pb2
from cdp.ingest.v1 import ingest_pb2
from cdp_ingest.domain import MAX_JSON_BYTES, build_event, corrected_timestamp

from cdp_core.envelope import ts
from cdp_core.errors import InvalidArgument

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


def build(kind="track", event="Viewed", **common):
    props = common.pop("properties_json", "")
    return build_event(kind, ingest_pb2.EventCommon(**common), source_id="s1", received_at=NOW, event=event,
                       properties_json=props, new_id="generated")


def test_clock_skew_is_corrected_from_sent_at():
    # client clock 1 hour fast: sent_at and timestamp both read 1h ahead
    sent = NOW + timedelta(hours=1)
    happened = sent - timedelta(seconds=30)
    a = build(user_id="u", timestamp=ts(happened), sent_at=ts(sent))
    assert a.occurred_at == NOW - timedelta(seconds=30)
    assert a.event.original_timestamp.ToDatetime(tzinfo=timezone.utc) == happened
    assert a.event.received_at.ToDatetime(tzinfo=timezone.utc) == NOW


def test_without_timestamp_the_arrival_time_is_used():
    assert corrected_timestamp(NOW, None, None) == NOW
    assert corrected_timestamp(NOW, NOW - timedelta(days=1), None) == NOW - timedelta(days=1)


def test_event_id_derives_from_source_and_message_id():
    a, b = build(user_id="u", message_id="m1"), build(user_id="u", message_id="m1")
    assert a.event_id == b.event_id != build(user_id="u", message_id="m2").event_id
    other_source = build_event("track", ingest_pb2.EventCommon(user_id="u", message_id="m1"), source_id="s2",
                               received_at=NOW, event="Viewed", new_id="x")
    assert other_source.event_id != a.event_id
    assert build(user_id="u").event_id == "generated"


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(), "common.user_id"),
        (dict(user_id="   "), "common.user_id"),
        (dict(user_id="u", message_id="m" * 129), "common.message_id"),
        (dict(anonymous_id="a" * 513), "common.anonymous_id"),
        (dict(user_id="u", properties_json="not json"), "properties_json"),
        (dict(user_id="u", properties_json='"a string"'), "properties_json"),
        (dict(user_id="u", context_json="[]"), "common.context_json"),
        (dict(user_id="u", properties_json='{"x": "%s"}' % ("y" * MAX_JSON_BYTES)), "properties_json"),
    ],
)
def test_bad_input_names_the_field(kwargs, field):
    with pytest.raises(InvalidArgument) as e:
        build(**kwargs)
    assert e.value.field == field
    assert str(e.value).startswith(field)


def test_track_needs_an_event_name():
    with pytest.raises(InvalidArgument) as e:
        build(event="", user_id="u")
    assert e.value.field == "event"
    assert build("identify", event="", user_id="u").event.kind == "identify"


def test_identifiers_are_checked():
    ok = build(user_id="u", identifiers=[identifier_pb2.Identifier(type="email", value="a@b.c")])
    assert [(i.type, i.value) for i in ok.event.identifiers] == [("email", "a@b.c")]
    with pytest.raises(InvalidArgument, match=r"common.identifiers\[0\].type"):
        build(user_id="u", identifiers=[identifier_pb2.Identifier(type="crm", value="1")])
    with pytest.raises(InvalidArgument, match=r"common.identifiers\[1\].value"):
        build(user_id="u", identifiers=[identifier_pb2.Identifier(type="email", value="a@b.c"),
                                         identifier_pb2.Identifier(type="phone", value="")])
    with pytest.raises(InvalidArgument, match="limit is 20"):
        build(user_id="u", identifiers=[identifier_pb2.Identifier(type="device_id", value=str(i)) for i in range(21)])
