"""JSON and rich rendering of a Profile message."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console

from cdp.common.v1 import identifier_pb2
from cdp.profile.v1 import profile_pb2
from cdp_cli.render import profile_json, profile_to_dict, profile_view


def ts(*args) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(datetime(*args, tzinfo=UTC))
    return t


def sample_profile() -> profile_pb2.Profile:
    return profile_pb2.Profile(
        profile_id="p-1",
        identifiers=[
            identifier_pb2.Identifier(type="user_id", value="u-1"),
            identifier_pb2.Identifier(type="email", value="ada@example.com"),
        ],
        traits=[
            profile_pb2.Trait(name="email", value_json='"ada@example.com"', updated_at=ts(2025, 1, 2, 3, 4, 5),
                              event_id="e-1"),
            profile_pb2.Trait(name="age", value_json="36"),
            profile_pb2.Trait(name="address", value_json='{"city": "London", "zip": null}'),
            profile_pb2.Trait(name="vip", value_json="true"),
            profile_pb2.Trait(name="broken", value_json="{not json"),
        ],
        event_count=5,
        first_seen=ts(2025, 1, 2, 3, 4, 5),
        last_seen=ts(2025, 1, 2, 3, 9, 5, 250000),
        merged_profile_ids=["p-0"],
    )


def test_profile_to_dict():
    assert profile_to_dict(sample_profile()) == {
        "profile_id": "p-1",
        "identifiers": [{"type": "user_id", "value": "u-1"}, {"type": "email", "value": "ada@example.com"}],
        "traits": {
            "email": "ada@example.com",
            "age": 36,
            "address": {"city": "London", "zip": None},
            "vip": True,
            "broken": "{not json",
        },
        "computed": {
            "event_count": 5,
            "first_seen": "2025-01-02T03:04:05Z",
            "last_seen": "2025-01-02T03:09:05.250Z",
        },
        "merged_profile_ids": ["p-0"],
    }


def test_profile_json_is_one_object_and_parses_back():
    text = profile_json(sample_profile())
    assert "\n" not in text
    assert json.loads(text) == profile_to_dict(sample_profile())


def test_empty_profile_has_null_times_and_empty_collections():
    d = profile_to_dict(profile_pb2.Profile(profile_id="p-2"))
    assert d == {
        "profile_id": "p-2",
        "identifiers": [],
        "traits": {},
        "computed": {"event_count": 0, "first_seen": None, "last_seen": None},
        "merged_profile_ids": [],
    }


def test_timestamps_parse_as_iso():
    d = profile_to_dict(sample_profile())
    first = datetime.fromisoformat(d["computed"]["first_seen"])
    assert first == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_rich_view_shows_everything():
    console = Console(record=True, width=120)
    console.print(profile_view(sample_profile()))
    text = console.export_text()
    for expected in ("p-1", "u-1", "ada@example.com", "event_count", "5", "London", "p-0",
                     "2025-01-02T03:04:05Z"):
        assert expected in text
