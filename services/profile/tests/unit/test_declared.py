"""Declared computed traits: parsing, validation (errors name the field) and evaluation."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest

from cdp_core.errors import InvalidArgument
from cdp_profile import declared as d
from cdp_profile.computed import Event

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)
_ids = itertools.count(1)


def ev(name: str, at: datetime, props: dict | None = None, *, kind: str = "track", eid: str | None = None) -> Event:
    return Event(eid or f"e{next(_ids):06d}", kind, name, at, props or {})


def one(**kw) -> d.TraitDefinition:
    spec = {"name": "t_one", "aggregation": "count", "window": "all", **kw}
    return d.parse_dict({"definitions": [spec]})[0]


def refused(spec, field: str) -> str:
    doc = spec if isinstance(spec, (str, dict)) and ("definitions" in spec or isinstance(spec, str)) else \
        {"definitions": [spec]}
    with pytest.raises(InvalidArgument) as e:
        d.parse_document(doc) if isinstance(doc, str) else d.parse_dict(doc)
    assert e.value.field == field, str(e.value)
    assert str(e.value).startswith(f"{field}: ")
    return str(e.value)


ORDERS = [
    ev("Order Completed", T0 - 40 * DAY, {"total": 100, "currency": "EUR", "store": "Madrid"}),
    ev("Order Completed", T0 - 20 * DAY, {"total": "25.50", "currency": "EUR", "store": "Lisbon"}),
    ev("Order Completed", T0 - 10 * DAY, {"total": 10, "currency": "USD", "store": "Madrid"}),
    ev("Order Completed", T0 - 1 * DAY, {"total": 4.5, "currency": "EUR", "store": "Lisbon", "coupon": "X"}),
    ev("Product Viewed", T0, {"sku": "A", "price": 1000}),
    ev("Home", T0 - 2 * DAY, kind="page"),
]


# --- parsing ---------------------------------------------------------------------------------


def test_a_document_parses_to_canonical_definitions():
    [a, b] = d.parse_document("""
definitions:
  - name: eur_revenue_30d
    description: "  Revenue in euros, last 30 days  "
    event:
      kind: track
      name: Order Completed
      where:
        - {property: currency, equals: EUR}
        - {property: total, gte: 0, lt: 10000}
    aggregation: SUM
    property: total
    window: 30D
  - name: favourite_store
    event: {names: [Order Completed, Store Visited], where: [{property: store, exists: true}]}
    aggregation: most-frequent
    property: store
    window: all
""")
    assert a.to_dict() == {
        "name": "eur_revenue_30d", "description": "Revenue in euros, last 30 days",
        "event": {"kinds": ["track"], "names": ["Order Completed"],
                  "where": [{"property": "currency", "equals": "EUR"},
                            {"property": "total", "gte": 0, "lt": 10000}]},
        "aggregation": "sum", "property": "total", "window": "30d"}
    assert a.window == 30 * DAY and b.window is None and b.aggregation == "most_frequent"
    assert b.names == ("Order Completed", "Store Visited") and not b.kinds
    # the canonical form reads back to the same definition; the description is not part of the computation
    assert d.parse_definition(a.to_dict()) == a
    assert d.parse_definition({**a.to_dict(), "description": "other"}).computation() == a.computation()
    assert one(window="12h").window == timedelta(hours=12) and one(window=" 4 w ").window_text == "4w"
    assert one(window="3650d").window == 3650 * DAY


@pytest.mark.parametrize(("spec", "field", "words"), [
    ({"aggregation": "count", "window": "all"}, "definitions[0].name", "required"),
    ({"name": "X1", "aggregation": "count", "window": "all"}, "definitions[0].name", "lower-case"),
    ({"name": "a", "aggregation": "count", "window": "all"}, "definitions[0].name", "2 to 64"),
    ({"name": "orders", "aggregation": "count", "window": "all"}, "definitions[0].name", "built-in"),
    ({"name": "declared", "aggregation": "count", "window": "all"}, "definitions[0].name", "built-in"),
    ({"name": 12, "aggregation": "count", "window": "all"}, "definitions[0].name", "not a number"),
    ({"name": "t_x", "window": "all"}, "definitions[0].aggregation", "required"),
    ({"name": "t_x", "aggregation": "median", "window": "all", "property": "p"}, "definitions[0].aggregation",
     "one of count, sum"),
    ({"name": "t_x", "aggregation": ["sum"], "window": "all"}, "definitions[0].aggregation", "not a list"),
    ({"name": "t_x", "aggregation": "sum", "window": "all"}, "definitions[0].property", "required for"),
    ({"name": "t_x", "aggregation": "max", "window": "all", "property": "a..b"}, "definitions[0].property",
     "empty segment"),
    ({"name": "t_x", "aggregation": "max", "window": "all", "property": 3}, "definitions[0].property",
     "must be a string"),
    ({"name": "t_x", "aggregation": "count"}, "definitions[0].window", "required"),
    ({"name": "t_x", "aggregation": "count", "window": 30}, "definitions[0].window", "not a number"),
    ({"name": "t_x", "aggregation": "count", "window": "30"}, "definitions[0].window", "unit"),
    ({"name": "t_x", "aggregation": "count", "window": "30m"}, "definitions[0].window", "unit"),
    ({"name": "t_x", "aggregation": "count", "window": "-3d"}, "definitions[0].window", "unit"),
    ({"name": "t_x", "aggregation": "count", "window": "0d"}, "definitions[0].window", "longer than zero"),
    ({"name": "t_x", "aggregation": "count", "window": "3651d"}, "definitions[0].window", "at most 3650 days"),
    ({"name": "t_x", "aggregation": "count", "window": "522w"}, "definitions[0].window", "at most 3650 days"),
    ({"name": "t_x", "aggregation": "count", "window": "all", "windw": "1d"}, "definitions[0].windw",
     "unknown field"),
    ({"name": "t_x", "aggregation": "count", "window": "all", "event": "Order"}, "definitions[0].event",
     "mapping"),
    ({"name": "t_x", "aggregation": "count", "window": "all", "event": {"kinds": ["click"]}},
     "definitions[0].event.kinds[0]", "one of track"),
    ({"name": "t_x", "aggregation": "count", "window": "all", "event": {"kind": "track", "kinds": ["page"]}},
     "definitions[0].event.kind", "not both"),
    ({"name": "t_x", "aggregation": "count", "window": "all", "event": {"names": []}},
     "definitions[0].event.names", "empty"),
    ({"name": "t_x", "aggregation": "count", "window": "all", "event": {"names": [3]}},
     "definitions[0].event.names[0]", "not a number"),
    ({"name": "t_x", "aggregation": "count", "window": "all", "event": {"names": ["x"] * 101}},
     "definitions[0].event.names", "at most 100"),
    ({"name": "t_x", "aggregation": "count", "window": "all", "event": {"where": {"property": "a"}}},
     "definitions[0].event.where", "list"),
    ({"name": "t_x", "aggregation": "count", "window": "all", "event": {"where": [{"equals": 1}]}},
     "definitions[0].event.where[0].property", "required"),
    ({"name": "t_x", "aggregation": "count", "window": "all", "event": {"where": [{"property": "a"}]}},
     "definitions[0].event.where[0]", "needs an operator"),
    ({"name": "t_x", "aggregation": "count", "window": "all",
      "event": {"where": [{"property": "a", "gte": "10"}]}}, "definitions[0].event.where[0].gte", "not a string"),
    ({"name": "t_x", "aggregation": "count", "window": "all",
      "event": {"where": [{"property": "a", "gte": True}]}}, "definitions[0].event.where[0].gte", "boolean"),
    ({"name": "t_x", "aggregation": "count", "window": "all",
      "event": {"where": [{"property": "a", "gt": 10, "lt": 5}]}}, "definitions[0].event.where[0].lt",
     "no number"),
    ({"name": "t_x", "aggregation": "count", "window": "all",
      "event": {"where": [{"property": "a", "gt": 1, "gte": 2}]}}, "definitions[0].event.where[0].gte",
     "one lower bound"),
    ({"name": "t_x", "aggregation": "count", "window": "all",
      "event": {"where": [{"property": "a", "equals": 1, "exists": True}]}},
     "definitions[0].event.where[0].exists", "one operator"),
    ({"name": "t_x", "aggregation": "count", "window": "all",
      "event": {"where": [{"property": "a", "equals": None}]}}, "definitions[0].event.where[0].equals",
     "exists: false"),
    ({"name": "t_x", "aggregation": "count", "window": "all",
      "event": {"where": [{"property": "a", "equals": {"x": 1}}]}}, "definitions[0].event.where[0].equals",
     "mapping"),
    ({"name": "t_x", "aggregation": "count", "window": "all",
      "event": {"where": [{"property": "a", "in": "EUR"}]}}, "definitions[0].event.where[0].in", "list"),
    ({"name": "t_x", "aggregation": "count", "window": "all",
      "event": {"where": [{"property": "a", "in": ["x", []]}]}}, "definitions[0].event.where[0].in[1]", "list"),
    ({"name": "t_x", "aggregation": "count", "window": "all",
      "event": {"where": [{"property": "a", "exists": "yes"}]}}, "definitions[0].event.where[0].exists",
     "true or false"),
    ({"name": "t_x", "aggregation": "count", "window": "all",
      "event": {"where": [{"property": "a", "like": "x"}]}}, "definitions[0].event.where[0].like", "unknown"),
    ({"name": "t_x", "aggregation": "count", "window": "all", "description": 5}, "definitions[0].description",
     "string"),
])
def test_bad_definitions_name_the_field(spec, field, words):
    assert words in refused(spec, field)


def test_bad_documents_name_the_field():
    assert "YAML" in refused("definitions: [", "yaml")
    assert "empty" in refused("  ", "yaml")
    assert "mapping" in refused("- name: x", "yaml")
    assert "list" in refused("definitions: {name: x}", "definitions")
    assert "at least one" in refused("definitions: []", "definitions")
    assert "unknown" in refused({"definitions": [], "extra": 1}, "extra")
    spec = {"name": "t_x", "aggregation": "count", "window": "all"}
    assert "at most 100" in refused({"definitions": [dict(spec, name=f"t_{i}") for i in range(101)]}, "definitions")
    assert "defined twice" in refused({"definitions": [spec, {"name": "t_y", "aggregation": "count",
                                                              "window": "1d"}, spec]}, "definitions[2].name")
    assert "KiB" in refused("definitions: []\n#" + "x" * d.MAX_DOCUMENT_BYTES, "yaml")
    # a later definition at fault: nothing parses, the field says which
    assert refused({"definitions": [spec, dict(spec, name="t_z", window="5y")]}, "definitions[1].window")


# --- evaluation ------------------------------------------------------------------------------


@pytest.mark.parametrize(("agg", "prop", "window", "expected"), [
    ("count", None, "all", 4),
    ("count", None, "30d", 3),
    ("count", "coupon", "all", 1),  # count with a property: events where it is present
    ("sum", "total", "all", 140),  # 100 + 25.50 + 10 + 4.5; numeric strings count
    ("sum", "total", "30d", 40),
    ("avg", "total", "all", 35),
    ("avg", "total", "30d", 40 / 3),
    ("min", "total", "all", 4.5),
    ("max", "total", "all", 100),
    ("max", "total", "15d", 10),
    ("last", "store", "all", "Lisbon"),
    ("last", "total", "all", 4.5),
    ("most_frequent", "store", "all", "Lisbon"),  # 2 each: the one seen last wins the tie
    ("most_frequent", "currency", "all", "EUR"),
    ("distinct_count", "store", "all", 2),
    ("distinct_count", "currency", "all", 2),
    ("distinct_count", "store", "5d", 1),
])
def test_each_aggregation(agg, prop, window, expected):
    defn = one(aggregation=agg, window=window, event={"names": ["Order Completed"]},
               **({"property": prop} if prop else {}))
    got = d.evaluate(defn, ORDERS, T0)
    assert got == pytest.approx(expected) and type(got) is type(expected)


def test_no_data():
    for agg in ("sum", "avg", "min", "max", "last", "most_frequent"):
        assert d.evaluate(one(aggregation=agg, property="total"), [], T0) is None
        assert d.evaluate(one(aggregation=agg, property="nothing"), ORDERS, T0) is None
    assert d.evaluate(one(), [], T0) == 0
    assert d.evaluate(one(aggregation="distinct_count", property="x"), [], T0) == 0
    # values that are not numbers are skipped by numeric aggregations, kept by the others
    evs = [ev("X", T0, {"v": "abc"}), ev("X", T0, {"v": True}), ev("X", T0, {"v": None}), ev("X", T0, {"v": [1]})]
    assert d.evaluate(one(aggregation="sum", property="v"), evs, T0) is None
    assert d.evaluate(one(aggregation="count", property="v"), evs, T0) == 3  # null is absent
    assert d.evaluate(one(aggregation="distinct_count", property="v"), evs, T0) == 3


def test_window_edges_are_inclusive_and_nothing_after_now_counts():
    evs = [ev("X", T0 - 30 * DAY), ev("X", T0 - 30 * DAY - timedelta(microseconds=1)), ev("X", T0),
           ev("X", T0 + timedelta(seconds=1))]
    assert d.evaluate(one(window="30d"), evs, T0) == 2
    assert d.evaluate(one(window="720h"), evs, T0) == 2
    assert d.evaluate(one(window="all"), evs, T0) == 3
    assert d.evaluate(one(window="1h"), [ev("X", T0 - timedelta(hours=1))], T0) == 1


def test_filters():
    def count(**event) -> int:
        return d.evaluate(one(event=event), ORDERS, T0)

    assert count(kinds=["page"]) == 1 and count(kind="track") == 5
    assert count(name="Home") == 1 and count(names=["Home", "Product Viewed"]) == 2
    assert count(where=[{"property": "currency", "equals": "EUR"}]) == 3
    assert count(where=[{"property": "currency", "in": ["USD", "GBP"]}]) == 1
    assert count(where=[{"property": "coupon", "exists": True}]) == 1
    assert count(where=[{"property": "coupon", "exists": False}]) == 5
    assert count(where=[{"property": "total", "gt": 10}]) == 2  # 100, "25.50"
    assert count(where=[{"property": "total", "gte": 10, "lte": 25.5}]) == 2
    assert count(where=[{"property": "total", "lt": 10}]) == 1
    assert count(names=["Order Completed"], where=[{"property": "currency", "equals": "EUR"},
                                                   {"property": "total", "gte": 20}]) == 2
    nested = [ev("X", T0, {"ship": {"country": "ES", "n": 3}}), ev("X", T0, {"ship": "ES"})]
    assert d.evaluate(one(event={"where": [{"property": "ship.country", "equals": "ES"}]}), nested, T0) == 1
    assert d.evaluate(one(aggregation="sum", property="ship.n"), nested, T0) == 3
    # JSON equality: 31 and 31.0 are one value, "31" another; true is not 1
    evs = [ev("X", T0, {"v": 31}), ev("X", T0, {"v": 31.0}), ev("X", T0, {"v": "31"}), ev("X", T0, {"v": True})]
    assert d.evaluate(one(event={"where": [{"property": "v", "equals": 31}]}), evs, T0) == 2
    assert d.evaluate(one(event={"where": [{"property": "v", "equals": True}]}), evs, T0) == 1
    assert d.evaluate(one(aggregation="distinct_count", property="v"), evs, T0) == 3


def test_a_function_of_the_set_of_events():
    defns = [one(aggregation=a, property="total", event={"names": ["Order Completed"]})
             for a in ("sum", "avg", "last", "most_frequent", "distinct_count")]
    defns = [d.TraitDefinition(**{**x.__dict__, "name": f"t_{i}"}) for i, x in enumerate(defns)]
    tie = [ev("Order Completed", T0, {"total": 1}, eid="b"), ev("Order Completed", T0, {"total": 2}, eid="a")]
    evs = ORDERS + tie + ORDERS[:2]  # duplicates by event id count once
    expected = d.evaluate_all(defns, evs, T0)
    assert expected["t_2"] == 1  # same time: the greater event id is the later one
    for seed in range(5):
        shuffled = evs[:]
        random.Random(seed).shuffle(shuffled)
        assert d.evaluate_all(defns, shuffled, T0) == expected
    assert d.evaluate(defns[0], evs, T0) == 143
    naive = [ev("X", (T0 - DAY).replace(tzinfo=None))]  # naive times are UTC
    assert d.evaluate(one(window="2d"), naive, T0) == 1
