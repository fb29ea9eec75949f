"""Parsing and validation: what a definition may say, and the errors that point at the node."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cdp_segment import definition as d
from cdp_segment import evaluate as ev
from cdp_segment import predefined

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


def compile_(where, **resolver) -> d.Compiled:
    return d.validate(d.from_dict({"name": "t", "where": where}), d.Resolver(**resolver) if resolver else None)


def error(where, **resolver) -> str:
    with pytest.raises(d.DefinitionError) as e:
        compile_(where, **resolver)
    return str(e.value)


@pytest.mark.parametrize(("where", "expected"), [
    ({"all": [{"known": {"known": True}}, {"trait": {"name": "x", "op": "nope"}}]}, "where.all[1].trait.op: unknown operator 'nope'"),
    ({"trait": {"name": "x", "type": "number", "op": "before", "value": "2026-01-01"}},
     "where.trait.op: operator 'before' does not apply to a number value (it applies to date)"),
    ({"computed": {"name": "orders.count", "op": "within_last_days", "value": 3}}, "where.computed.op: operator 'within_last_days'"),
    ({"computed": {"name": "orders.colour", "op": "equals", "value": 3}}, "where.computed.name: unknown computed trait"),
    ({"trait": {"name": "x", "op": "before", "value": 5}}, "where.trait.value: must be an ISO 8601 date"),
    ({"trait": {"name": "x", "op": "gt", "value": "5"}}, "where.trait.value: must be a number"),
    ({"trait": {"name": "x", "op": "exists", "value": 1}}, "where.trait.value: this operator takes no value"),
    ({"trait": {"name": "x", "op": "matches", "value": "\\d+"}}, "where.trait.value: patterns may use"),
    ({"trait": {"name": "x", "op": "matches", "value": "(a"}}, "where.trait.value: not a valid pattern"),
    ({"trait": {"name": "1x", "op": "exists"}}, "where.trait.name: each dot-separated part"),
    ({"any": []}, "where.any: needs at least one node"),
    ({"any": [{}]}, "where.any[0]: empty node"),
    ({"event": {"name": "E", "colour": "red"}}, "where.event.colour: unknown field"),
    ({"event": {"name": "E", "count": {"op": "at_least", "value": "2"}}}, "where.event.count.value: must be a whole number"),
    ({"event": {"name": "E", "did_not": True, "count": {"op": "at_least", "value": 2}}}, "where.event.count: did_not means"),
    ({"event": {"name": "E", "window": {"last_days": 401}}}, "where.event.window.last_days: cannot be evaluated"),
    ({"event": {"name": "E", "window": {"last_days": 1, "last_hours": 2}}}, "where.event.window: give exactly one"),
    ({"event": {"name": "E", "window": {"from_days_ago": 7, "to_days_ago": 7}}}, "where.event.window: cannot be evaluated"),
    ({"event": {"name": "E", "window": {"after": "2026-02-01", "before": "2026-01-01"}}}, "where.event.window: cannot be evaluated"),
    ({"sequence": {"steps": [{"name": "A"}], "within_hours": 1}}, "where.sequence.steps: between 2 and 4"),
    ({"sequence": {"steps": [{"name": "A"}, {"name": "B"}], "within_hours": 0}}, "where.sequence.within_hours"),
    ({"reachable": {"channel": "fax"}}, "where.reachable.channel"),
    ({"near": {"store": "nowhere", "km": 3}}, "where.near.store: unknown store"),
    ({"near": {"latitude": 91, "longitude": 0, "km": 3}}, "where.near: latitude must be"),
    ({"segment": {"name": "ghost"}}, "where.segment.name: no segment has this name"),
    ({"segment": {"name": "t"}}, "where.segment.name: a segment cannot refer to itself"),
    ({"predicted": {"name": "happiness", "op": "gt", "value": 1}}, "where.predicted.name: unknown predicted trait"),
    ({"product": {"list": "wished"}}, "where.product.list"),
    ({"not": {"all": [{"known": {"known": True}}, {"affinity": {"dimension": "mood", "op": "top_is", "value": "x"}}]}},
     "where.not.all[1].affinity.dimension"),
])
def test_errors_point_at_the_offending_node(where, expected):
    assert error(where).startswith(expected)


def test_cycles_through_other_segments_are_refused():
    b = d.validate(d.from_dict({"name": "b", "where": {"segment": {"name": "a"}}}),
                   d.Resolver(lambda n: compile_({"known": {"known": True}}) if n == "a" else None))
    with pytest.raises(d.DefinitionError, match="cycle: b refers back to a"):
        d.validate(d.from_dict({"name": "a", "where": {"segment": {"name": "b"}}}),
                   d.Resolver(lambda n: b if n == "b" else None))


def test_documents_name_the_entry_and_reject_bad_yaml():
    with pytest.raises(d.DefinitionError, match=r"^segments\[1\]\.where\.trait\.nme: unknown field"):
        d.load_documents("segments:\n- {name: a, where: {known: {known: true}}}\n- {name: b, where: {trait: {nme: x}}}\n")
    with pytest.raises(d.DefinitionError, match="^yaml: not valid YAML"):
        d.load_documents("name: [")
    with pytest.raises(d.DefinitionError, match="^name: must be 1-64"):
        d.validate(d.from_dict({"name": "Bad Name", "where": {"known": {"known": True}}}))


def test_yaml_round_trip_keeps_the_definition():
    text = predefined.AUDIENCES
    for definition in d.load_documents(text):
        again = d.load_documents(d.to_yaml(definition))[0]
        assert again == definition


def test_time_dependence_and_boundaries():
    c = compile_({"event": {"name": "A", "window": {"last_days": 7}}})
    assert d.time_dependent(c.tree)
    s = ev.State("p", events=[ev.Ev("e1", "A", NOW - timedelta(days=2))])
    assert ev.evaluate(c.tree, s, NOW)
    b = ev.next_boundary(c.tree, s, NOW)
    assert b == NOW + timedelta(days=5)  # the event leaves the window then
    assert not ev.evaluate(c.tree, s, b) and ev.evaluate(c.tree, s, b - timedelta(microseconds=1))
    assert not d.time_dependent(compile_({"trait": {"name": "x", "op": "equals", "value": "y"}}).tree)


def test_a_cart_item_becomes_abandoned_when_its_window_passes():
    """`product: {list: abandoned}` reads products_in_cart by the segment's clock: an item added
    now is abandoned ABANDON_WINDOW later, a due time scheduled without a new event."""
    c = compile_({"product": {"list": "abandoned"}})
    assert d.time_dependent(c.tree)
    added = NOW - timedelta(hours=1)
    s = ev.State("p", computed={"products_in_cart": [{"sku": "S1", "at": added.isoformat()}, {"sku": "S2"}],
                                "products_abandoned": []})
    assert not ev.evaluate(c.tree, s, NOW)
    b = ev.next_boundary(c.tree, s, NOW)
    assert b == added + d.ABANDON_WINDOW
    assert ev.evaluate(c.tree, s, b) and not ev.evaluate(c.tree, s, b - timedelta(microseconds=1))
    # a profile computed before products_in_cart existed: its own products_abandoned
    assert ev.evaluate(c.tree, ev.State("p", computed={"products_abandoned": [{"sku": "S1"}]}), NOW)


def test_sequence_needs_strict_order_within_the_time():
    c = compile_({"sequence": {"steps": [{"name": "A"}, {"name": "B"}, {"name": "C"}], "within_hours": 1}})
    t = NOW - timedelta(hours=3)

    def s(*evs):
        return ev.State("p", events=[ev.Ev(f"e{i}", n, t + timedelta(minutes=m)) for i, (n, m) in enumerate(evs)])
    assert ev.evaluate(c.tree, s(("A", 0), ("B", 10), ("C", 60)), NOW)
    assert not ev.evaluate(c.tree, s(("A", 0), ("B", 10), ("C", 61)), NOW)
    assert not ev.evaluate(c.tree, s(("A", 0), ("B", 0), ("C", 5)), NOW)  # B not strictly after A
    assert ev.evaluate(c.tree, s(("A", 0), ("A", 30), ("B", 40), ("C", 80)), NOW)  # a later A starts it
