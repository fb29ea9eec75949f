import json

import pytest

from cdp.common.v1 import identifier_pb2
from cdp.ingest.v1 import events_pb2
from cdp_core.errors import PoisonMessage
from cdp_identity.domain import identifiers_of, normalize


def test_emails_are_trimmed_and_lower_cased():
    assert normalize("email", "  Ada@Example.COM ") == "ada@example.com"
    assert normalize("email", "not-an-email") is None
    assert normalize("user_id", "  ") is None
    assert normalize("user_id", " U1 ") == "U1"


def test_identifiers_come_from_ids_traits_context_and_explicit_list_in_priority_order():
    ev = events_pb2.EventCollected(
        kind="identify",
        user_id="u1",
        anonymous_id="a1",
        traits_json=json.dumps({"email": "A@B.co"}),
        context_json=json.dumps({"traits": {"email": "other@b.co"}}),
        identifiers=[identifier_pb2.Identifier(type="device_id", value="d1")],
    )
    assert identifiers_of(ev) == [
        ("user_id", "u1"), ("email", "a@b.co"), ("email", "other@b.co"), ("device_id", "d1"), ("anonymous_id", "a1")]


def test_duplicates_collapse_and_malformed_json_is_ignored():
    ev = events_pb2.EventCollected(kind="track", anonymous_id="a1", traits_json="{bad", context_json="[]",
                                   identifiers=[identifier_pb2.Identifier(type="anonymous_id", value="a1")])
    assert identifiers_of(ev) == [("anonymous_id", "a1")]


def test_an_event_without_identifiers_is_poison():
    with pytest.raises(PoisonMessage):
        identifiers_of(events_pb2.EventCollected(kind="track", user_id="  "))


def test_malformed_identifiers_are_reported_with_the_reason_not_the_value():
    from cdp_identity.domain import extract

    ev = events_pb2.EventCollected(
        kind="identify", user_id="u1",
        traits_json=json.dumps({"email": "ada@@example", "phone": "12"}),
        identifiers=[identifier_pb2.Identifier(type="device_id", value="d" * 600)])
    x = extract(ev)
    assert x.keys == [("user_id", "u1")]
    assert sorted(t for t, _ in x.invalid) == ["device_id", "email", "phone"]
    assert all("ada" not in why and "ddd" not in why for _, why in x.invalid)
    assert any("longer than 512" in why for _, why in x.invalid)
