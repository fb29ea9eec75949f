"""The declared traits kept incrementally (declared_incremental.DeclaredState) give exactly
what declared.evaluate_all gives over all the events as of the latest one, for random
definitions and random events folded in random batches and orders."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from cdp_profile import declared as d
from cdp_profile.computed import Event
from cdp_profile.declared_incremental import DeclaredState

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NAMES = ("Order Completed", "Product Viewed", "Email Opened")


def random_definitions(rng: random.Random) -> list[tuple[d.TraitDefinition, int]]:
    out = []
    for i in range(rng.randint(1, 6)):
        agg = rng.choice(d.AGGREGATIONS)
        spec: dict = {"name": f"t_{i}", "aggregation": agg, "window": rng.choice(("all", "2h", "1d", "3d"))}
        if agg != "count" or rng.random() < 0.5:
            spec["property"] = rng.choice(("total", "sku", "meta.kind"))
        event: dict = {}
        if rng.random() < 0.6:
            event["names"] = rng.sample(NAMES, rng.randint(1, 2))
        if rng.random() < 0.3:
            event["kinds"] = ["track"]
        if rng.random() < 0.3:
            event["where"] = [rng.choice(({"property": "total", "gte": 10}, {"property": "currency", "equals": "EUR"},
                                          {"property": "sku", "exists": True}))]
        if event:
            spec["event"] = event
        out.append((d.parse_definition(spec, f"definitions[{i}]"), rng.randint(1, 9)))
    return out


def random_events(rng: random.Random, n: int) -> list[Event]:
    evs = []
    for i in range(n):
        at = T0 + timedelta(minutes=rng.choice((1, 30, 200, 3000)) * rng.random())
        if evs and rng.random() < 0.15:
            at = rng.choice(evs).occurred_at
        props: dict = {}
        if rng.random() < 0.8:
            props["total"] = rng.choice((5, 12, 12.0, "15.50", "x", None, [1], 31))
        if rng.random() < 0.6:
            props["sku"] = rng.choice(("A", "B", "C", 1, 1.0))
        if rng.random() < 0.5:
            props["currency"] = rng.choice(("EUR", "USD"))
        if rng.random() < 0.3:
            props["meta"] = {"kind": rng.choice(("x", "y"))}
        kind = "track" if rng.random() < 0.85 else "page"
        evs.append(Event(f"e{i:03d}-{rng.randrange(10**6)}", kind, rng.choice(NAMES), at, props))
    return evs


@pytest.mark.parametrize("seed", range(200))
def test_random_definitions_and_events_fold_to_evaluate_all(seed):
    rng = random.Random(seed)
    defs = random_definitions(rng)
    events = random_events(rng, rng.randint(1, 50))
    want = d.evaluate_all([x for x, _ in defs], events, max(e.occurred_at for e in events))
    order = events[:]
    rng.shuffle(order)
    state = None
    i = 0
    while i < len(order):
        batch = order[i:i + rng.randint(1, 5)]
        i += len(batch)
        if state is None:
            state = DeclaredState.from_events(defs, batch)
        else:
            state.fold(batch)
        state = DeclaredState.loads(state.dumps(), defs)
        assert state is not None
    assert state.values() == want
    # from the events some definition can use (as the store reads them), as of the latest event
    usable = [e for e in events if any(x.matches(e) for x, _ in defs)]
    built = DeclaredState.from_events(defs, usable, max(e.occurred_at for e in events))
    assert built.values() == want


def test_a_state_built_for_other_definitions_or_versions_is_not_used():
    rng = random.Random(1)
    defs = random_definitions(rng)
    blob = DeclaredState.from_events(defs, random_events(rng, 5)).dumps()
    assert DeclaredState.loads(blob, defs) is not None
    x, v = defs[0]
    assert DeclaredState.loads(blob, [(x, v + 1), *defs[1:]]) is None
    assert DeclaredState.loads(blob, defs[1:]) is None


def test_an_event_leaves_the_window_as_newer_ones_come():
    (defn, v), = [(d.parse_definition({"name": "views_2h", "aggregation": "count", "window": "2h"}), 1)]
    st = DeclaredState.from_events([(defn, v)], [Event("a", "track", "X", T0)])
    st.fold([Event("b", "track", "X", T0 + timedelta(hours=1))])
    assert st.values() == {"views_2h": 2}
    st.fold([Event("c", "track", "X", T0 + timedelta(hours=2, seconds=1))])
    assert st.values() == {"views_2h": 2}  # a left the window
    st.fold([Event("old", "track", "X", T0 - timedelta(hours=5))])  # arrives late, outside: not counted
    assert st.values() == {"views_2h": 2}
