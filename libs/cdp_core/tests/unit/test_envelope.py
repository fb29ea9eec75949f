"""The one envelope of every log message."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from cdp.common.v1.identifier_pb2 import Identifier
from cdp_core import envelope
from cdp_core.errors import PoisonMessage


def test_make_decode_unpack_round_trip():
    occurred = datetime(2024, 5, 1, 12, 30, 15, 123000, tzinfo=UTC)
    env = envelope.make(
        "cdp.identity.resolved", Identifier(type="email", value="a@b.c"), producer="identity", occurred_at=occurred
    )
    assert uuid.UUID(env.event_id)
    assert env.type == "cdp.identity.resolved"
    assert env.producer == "identity"
    # an original event correlates with itself and has no cause
    assert env.correlation_id == env.event_id
    assert env.causation_id == ""
    decoded = envelope.decode(env.SerializeToString())
    assert decoded == env
    assert envelope.from_ts(decoded.occurred_at) == occurred
    recorded = envelope.from_ts(decoded.recorded_at)
    assert abs((recorded - envelope.now()).total_seconds()) < 5
    assert envelope.unpack(decoded, Identifier) == Identifier(type="email", value="a@b.c")


def test_explicit_event_id_and_default_occurred_at():
    env = envelope.make("cdp.x.y", StringValue(value="v"), producer="x", event_id="evt-1")
    assert env.event_id == "evt-1"
    assert env.occurred_at == env.recorded_at


def test_naive_datetimes_are_utc():
    naive = datetime(2024, 1, 2, 3, 4, 5)
    assert envelope.from_ts(envelope.ts(naive)) == naive.replace(tzinfo=UTC)
    plus2 = datetime(2024, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert envelope.from_ts(envelope.ts(plus2)) == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert envelope.ts(None) is None


def test_correlation_and_causation_follow_the_cause():
    root = envelope.make(
        "cdp.ingest.event.track",
        StringValue(value="r"),
        producer="ingest",
        occurred_at=datetime(2023, 3, 3, tzinfo=UTC),
    )
    child = envelope.make("cdp.identity.resolved", StringValue(value="c"), producer="identity", cause=root)
    grandchild = envelope.make("cdp.profile.changed", StringValue(value="g"), producer="profile", cause=child)
    assert child.causation_id == root.event_id
    assert child.correlation_id == root.event_id
    assert grandchild.causation_id == child.event_id
    assert grandchild.correlation_id == root.event_id  # the first event's id, all the way down
    assert child.occurred_at == root.occurred_at  # a derived event happened when its cause did
    assert child.event_id != root.event_id


def test_derived_id_is_deterministic():
    a = envelope.derived_id("evt-1", "resolved")
    assert a == envelope.derived_id("evt-1", "resolved")
    assert uuid.UUID(a).version == 5
    assert a != envelope.derived_id("evt-1", "merged")
    assert a != envelope.derived_id("evt-2", "resolved")
    # parts are joined unambiguously: ("ab", "c") is not ("a", "bc")
    assert envelope.derived_id("ab", "c") != envelope.derived_id("a", "bc")


@pytest.mark.parametrize("data", [b"\xff\xff\xff\xff", b"\x0a\x05ab", b"garbage that is not protobuf \x00\x01"])
def test_decode_of_garbage_is_poison(data):
    with pytest.raises(PoisonMessage):
        envelope.decode(data)


def test_decode_of_an_envelope_without_id_or_type_is_poison():
    with pytest.raises(PoisonMessage, match="event_id or type"):
        envelope.decode(b"")
    with pytest.raises(PoisonMessage, match="event_id or type"):
        envelope.decode(envelope.Envelope(type="cdp.x.y").SerializeToString())
    with pytest.raises(PoisonMessage, match="event_id or type"):
        envelope.decode(envelope.Envelope(event_id="e").SerializeToString())


def test_payload_of_the_wrong_type_is_poison():
    env = envelope.make("cdp.x.y", StringValue(value="v"), producer="x")
    with pytest.raises(PoisonMessage, match="google.protobuf.StringValue"):
        envelope.unpack(env, Identifier)


def test_encode_gives_the_bytes_of_make_and_serialize():
    """The hot path's hand-built envelope is byte for byte the protobuf one."""
    import random
    from datetime import UTC, datetime, timedelta

    from cdp.ingest.v1 import events_pb2
    from cdp_core import envelope as env_mod

    rng = random.Random(7)
    base = datetime(2026, 11, 28, tzinfo=UTC)
    for i in range(300):
        occurred = base + timedelta(seconds=rng.randint(-10**9, 10**9), microseconds=rng.choice([0, rng.randrange(10**6)]))
        recorded = base + timedelta(microseconds=rng.randrange(10**12))
        payload = events_pb2.EventCollected(kind="track", user_id="u" * rng.randrange(300), event="E" * (i % 3),
                                            properties_json=f'{{"x": {i}}}' if i % 2 else "")
        event_id = env_mod.derived_id("t", str(i))
        expected = env_mod.make("cdp.ingest.event.track", payload, producer="ingest", event_id=event_id,
                                occurred_at=occurred)
        expected.recorded_at.CopyFrom(env_mod.ts(recorded))
        got = env_mod.encode("cdp.ingest.event.track", payload, producer="ingest", event_id=event_id,
                             occurred_at=env_mod.ts_fields(occurred), recorded_at=env_mod.ts_fields(recorded))
        assert got == expected.SerializeToString(), i
        assert env_mod.decode(got) == expected


def test_derived_id_is_uuid5_of_the_joined_parts():
    import random

    rng = random.Random(11)
    for _ in range(2000):
        parts = ["".join(chr(rng.randrange(32, 0x3000)) for _ in range(rng.randrange(0, 40)))
                 for _ in range(rng.randrange(1, 4))]
        assert envelope.derived_id(*parts) == str(uuid.uuid5(envelope._NS, "\x1f".join(parts)))


def test_field_writers_give_the_protobuf_bytes():
    """pb_str / pb_len / pb_ts / encode_raw: the bytes protobuf writes for the same fields."""
    import random

    from google.protobuf.timestamp_pb2 import Timestamp

    from cdp.ingest.v1 import events_pb2

    rng = random.Random(5)
    for n in [0, 1, 127, 128, 300, 16383, 16384, 70000]:
        s = "é" * (n // 2) + "a" * (n % 2)
        m = Identifier(type="email", value=s)
        assert envelope.pb_str(envelope.pb_key(1), "email") + envelope.pb_str(envelope.pb_key(2), s) == \
            m.SerializeToString()
        ev = events_pb2.EventCollected(source_kind=s, violations=[s])  # fields 21 and 20: two-byte keys
        assert envelope.pb_len(envelope.pb_key(20), s.encode()) + envelope.pb_str(envelope.pb_key(21), s) == \
            ev.SerializeToString()
    for _ in range(500):
        seconds = rng.choice([0, rng.randrange(-10**11, 10**11), rng.randrange(0, 2**31)])
        nanos = rng.choice([0, rng.randrange(0, 10**9)])
        ev = events_pb2.EventCollected()
        ev.received_at.CopyFrom(Timestamp(seconds=seconds, nanos=nanos))
        if not (seconds or nanos):
            ev.received_at.SetInParent()
        assert envelope.pb_ts(envelope.pb_key(16), seconds, nanos) == ev.SerializeToString()
    # encode_raw of a payload's bytes: the Envelope message's bytes, empty payloads included
    from google.protobuf import any_pb2

    at = datetime(2026, 1, 1, 0, 0, 0, 250, tzinfo=UTC)
    for payload in [events_pb2.EventCollected(), events_pb2.EventCollected(kind="track", properties_json="x" * 20000)]:
        for event_id in ["", "e-1"]:
            expected = envelope.Envelope(event_id=event_id, type="cdp.ingest.event.track", producer="ingest",
                                         correlation_id=event_id)
            expected.occurred_at.CopyFrom(envelope.ts(at))
            expected.recorded_at.CopyFrom(envelope.ts(at))
            any_ = any_pb2.Any()
            any_.Pack(payload)
            expected.payload.CopyFrom(any_)
            assert envelope.encode_raw("cdp.ingest.event.track", envelope.type_url(payload),
                                       payload.SerializeToString(), producer="ingest", event_id=event_id,
                                       occurred_at=envelope.ts_fields(at), recorded_at=envelope.ts_fields(at)) == \
                expected.SerializeToString()
