"""domain/tracking_plan.py: compiling plans (refusals name the field) and checking calls."""

from __future__ import annotations

import json

import pytest

from cdp_core.errors import InvalidArgument
from cdp_ingest.domain.tracking_plan import MAX_PLAN_EVENTS, MAX_VIOLATIONS, compile_plan

ORDER = {
    "type": "object",
    "properties": {"revenue": {"type": "number"}, "currency": {"type": "string", "enum": ["EUR", "USD"]}},
    "required": ["revenue"],
}
TRAITS = {"type": "object", "properties": {"email": {"type": "string"}, "age": {"type": "integer", "minimum": 0}}}


def plan(mode="block", unplanned="allow", events=None, identify=TRAITS):
    return compile_plan("s1", mode, unplanned, json.dumps({"Order Completed": ORDER} if events is None else events),
                        json.dumps(identify) if identify is not None else "")


def test_a_planned_event_that_conforms_has_no_violations():
    assert plan().check("track", "Order Completed", {"revenue": 10, "currency": "EUR"}, {}) == ([], "")


@pytest.mark.parametrize("mode", ["allow", "flag", "block"])
def test_a_planned_event_with_bad_properties_gets_the_plan_mode(mode):
    v, action = plan(mode).check("track", "Order Completed", {"revenue": "ten", "currency": "GBP"}, {})
    assert action == mode
    assert v == ["properties.currency: 'GBP' is not one of ['EUR', 'USD']",
                 "properties.revenue: 'ten' is not of type 'number'"]


def test_a_missing_required_property_is_a_violation_at_the_top():
    v, _ = plan().check("track", "Order Completed", {}, {})
    assert v == ["properties: 'revenue' is a required property"]


@pytest.mark.parametrize("unplanned", ["allow", "flag", "block"])
def test_an_unplanned_event_gets_the_unplanned_mode(unplanned):
    v, action = plan("allow", unplanned).check("track", "Signed Up", {}, {})
    assert v == ["event 'Signed Up' is not in the tracking plan"]
    assert action == unplanned


def test_identify_traits_are_checked_and_other_kinds_are_not():
    p = plan("flag")
    v, action = p.check("identify", "", {}, {"age": -1, "email": 3})
    assert action == "flag"
    assert v == ["traits.age: -1 is less than the minimum of 0", "traits.email: 3 is not of type 'string'"]
    assert p.check("identify", "", {}, {"age": 30}) == ([], "")
    for kind in ("page", "screen", "group", "alias"):
        assert p.check(kind, "", {"x": 1}, {"age": "old"}) == ([], "")


def test_without_an_identify_schema_identify_is_not_checked():
    assert plan(identify=None).check("identify", "", {}, {"age": "old"}) == ([], "")


def test_violations_are_capped_per_call():
    many = {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(30)}}
    v, _ = plan(events={"E": many}).check("track", "E", {f"p{i}": "x" for i in range(30)}, {})
    assert len(v) == MAX_VIOLATIONS + 1
    assert v[-1] == "properties: more violations not shown"


def test_nested_paths_are_named():
    schema = {"type": "object", "properties": {"products": {"type": "array", "items": {
        "type": "object", "properties": {"price": {"type": "number"}}}}}}
    v, _ = plan(events={"E": schema}).check("track", "E", {"products": [{"price": 1}, {"price": "x"}]}, {})
    assert v == ["properties.products.1.price: 'x' is not of type 'number'"]


def test_the_schema_draft_follows_dollar_schema():
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object",
              "properties": {"n": {"type": "number", "minimum": 0, "exclusiveMinimum": True}}}
    v, _ = plan(events={"E": draft4}).check("track", "E", {"n": 0}, {})
    assert v and v[0].startswith("properties.n:")


def test_unplanned_defaults_to_allow_and_the_raw_plan_is_kept():
    p = compile_plan("s1", "flag", "", json.dumps({"A": ORDER}), "")
    assert p.unplanned_events == "allow"
    assert p.raw_events == {"A": ORDER} and p.raw_identify is None


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"mode": "warn"}, "plan.mode"),
    ({"mode": ""}, "plan.mode"),
    ({"unplanned": "drop"}, "plan.unplanned_events"),
    ({"events": ["Order Completed"]}, "plan.events_json"),
    ({"events": {"Order Completed": {"type": "nope"}}}, "plan.events_json['Order Completed']"),
    ({"events": {"Order Completed": {"required": "revenue"}}}, "plan.events_json['Order Completed']"),
    ({"events": {"Order Completed": "not a schema"}}, "plan.events_json['Order Completed']"),
    ({"identify": {"type": "object", "minProperties": -1}}, "plan.identify_traits_schema_json"),
    ({"identify": [1]}, "plan.identify_traits_schema_json"),
])
def test_an_invalid_plan_is_refused_naming_the_field(kwargs, field):
    with pytest.raises(InvalidArgument) as e:
        plan(**kwargs)
    assert e.value.field == field
    assert str(e.value).startswith(field + ":")


def test_events_json_that_is_not_json_is_refused():
    with pytest.raises(InvalidArgument) as e:
        compile_plan("s1", "block", "allow", "{nope", "")
    assert e.value.field == "plan.events_json" and "not valid JSON" in str(e.value)


def test_identify_schema_that_is_not_json_names_its_own_field():
    with pytest.raises(InvalidArgument) as e:
        compile_plan("s1", "block", "allow", "{}", "{nope")
    assert e.value.field == "plan.identify_traits_schema_json"


def test_too_many_planned_events_are_refused():
    with pytest.raises(InvalidArgument) as e:
        plan(events={f"E{i}": {} for i in range(MAX_PLAN_EVENTS + 1)})
    assert e.value.field == "plan.events_json" and str(MAX_PLAN_EVENTS) in str(e.value)
