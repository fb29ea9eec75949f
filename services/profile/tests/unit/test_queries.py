"""Pure parts of the profile service's reads: field masks, page tokens, channels, filters."""

from __future__ import annotations

import pytest

from cdp.ingest.v1 import events_pb2 as ingest_events
from cdp.profile.v1 import profile_pb2
from cdp_core.errors import InvalidArgument
from cdp_profile import queries as q


def test_masks():
    assert q.parse_mask([]) == q.ALL
    m = q.parse_mask(["event_count", "traits.plan", "traits.a.b"])
    assert m.fields == {"profile_id", "event_count", "traits"} and m.trait_names == {"plan", "a.b"}
    assert q.parse_mask(["traits", "traits.plan"]).trait_names is None  # the whole field wins
    with pytest.raises(InvalidArgument) as e:
        q.parse_mask(["identifiers", "bogus", "traits.", "Traits"])
    assert e.value.field == "field_mask.paths"
    assert "'bogus', 'traits.', 'Traits'" in str(e.value) and "'identifiers'" not in str(e.value)


def test_tokens_are_bound_to_their_filters():
    fp = q.fingerprint("timeline", ["track"])
    token = q.encode_token(fp, 1234567, "e-1")
    assert q.decode_token(token, fp, 2) == [1234567, "e-1"]
    assert q.decode_token("", fp, 2) is None
    for bad, other in ((token, q.fingerprint("timeline", ["page"])), ("!!", fp), (q.encode_token(fp, 1), fp)):
        with pytest.raises(InvalidArgument) as e:
            q.decode_token(bad, other, 2)
        assert e.value.field == "page_token"


@pytest.mark.parametrize("fields,channel", [
    ({"event": "Email Opened", "source_kind": "server"}, "email"),
    ({"event": "Push Notification Tapped", "source_kind": "app"}, "push"),
    ({"event": "Order Completed", "source_kind": "shopify"}, "web"),
    ({"event": "Order Completed", "source_kind": "crm"}, None),
    ({"event": "X", "properties_json": '{"channel": " SMS "}', "source_kind": "web"}, "sms"),
    ({"name": "Home", "kind": "page", "context_json": '{"channel": "kiosk"}'}, "kiosk"),
    ({"event": "X", "properties_json": '{"channel": 3}', "source_kind": "pos"}, "pos"),
])
def test_channel_of(fields, channel):
    assert q.channel_of(ingest_events.EventCollected(**fields)) == channel


def test_pg_json():
    assert q.pg_json("") is None
    assert q.pg_json('{"a": "x\\u0000"}') == '{"a": "x\\ufffd"}'


def test_filters_become_parameterised_sql():
    F = profile_pb2.TraitFilter
    conds, params = q.trait_conditions([F(name="plan", equals_json='"pro"'), F(name="email", contains="50%_off"),
                                        F(name="age", number={"gte": 18, "lt": 65})], first_param=3)
    assert len(conds) == 3 and "$3" in conds[0] and "$4::jsonb" in conds[0]
    assert params[:2] == ["plan", '"pro"'] and params[3] == "%50\\%\\_off%"
    assert params[-2:] == [18.0, 65.0]
    with pytest.raises(InvalidArgument) as e:
        q.trait_conditions([F(name="age", number={"gt": float("nan")})], first_param=1)
    assert e.value.field == "filters[0].number.gt"
