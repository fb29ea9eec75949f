"""The in-memory graph: resolution, merges, order independence, rebuilds, separations."""

from __future__ import annotations

import random

import pytest

from cdp_identity.graph import Graph, profile_id_for, rebuild
from cdp_identity.normalize import IdentifierTypes
from cdp_identity.rules import Rules, Unresolvable

U, A, E = "user_id", "anonymous_id", "email"


def partition(g: Graph) -> dict[str, frozenset]:
    return {pid: frozenset(n.keys()) for pid, n in g.nodes.items()}


def apply(rules: Rules, events, order) -> Graph:
    g = Graph(rules)
    for i in order:
        seq, eid, keys = events[i]
        try:
            g.resolve(seq, eid, keys)
        except Unresolvable:
            pass
    return g


def test_an_anonymous_visitor_who_identifies_keeps_the_profile_of_the_first_event():
    g = Graph(Rules())
    a = g.resolve(1, "e1", [(A, "a1")])
    assert a.created and a.profile_id == profile_id_for(A, "a1")
    b = g.resolve(2, "e2", [(U, "u1"), (A, "a1")])
    assert not b.created and b.profile_id == a.profile_id and b.new_identifiers == ((U, "u1"),)
    assert set(g.nodes[a.profile_id].keys()) == {(A, "a1"), (U, "u1")}


def test_a_link_merges_into_the_older_profile_with_provenance():
    g = Graph(Rules())
    p1 = g.resolve(1, "e1", [(A, "a1")]).profile_id
    p2 = g.resolve(2, "e2", [(E, "x@y.co")]).profile_id
    out = g.resolve(3, "e3", [(E, "x@y.co"), (A, "a1")])
    assert out.profile_id == p1
    (m,) = out.merges
    assert (m.survivor, m.merged) == (p1, p2)
    assert m.provenance.rule == "shared-identifier" and m.provenance.identifier == (E, "x@y.co")
    assert "log sequence 1" in m.provenance.reason
    assert g.changes.merged_into == {p2: p1} and list(g.nodes) == [p1]


def test_an_event_applied_late_creates_the_profile_it_would_have_created_in_log_order():
    g = Graph(Rules())
    later = g.resolve(5, "e5", [(U, "u1"), (A, "a1")]).profile_id
    assert later == profile_id_for(U, "u1")
    out = g.resolve(2, "e2", [(A, "a1")])  # in log order this event came first
    assert out.late and out.profile_id == profile_id_for(A, "a1")
    assert [(m.survivor, m.merged) for m in out.merges] == [(profile_id_for(A, "a1"), later)]
    assert g.nodes[out.profile_id].created_seq == 2


def random_events(rng: random.Random, n: int, people: int) -> list[tuple[int, str, list]]:
    events = []
    for seq in range(1, n + 1):
        p = rng.randrange(people)
        keys = {(A, f"a{p}-{rng.randrange(3)}")}
        if rng.random() < 0.4:
            keys.add((U, f"u{p}"))
        if rng.random() < 0.3:
            keys.add((E, f"p{p}@x.co"))
        if rng.random() < 0.05:  # a shared device: links two people
            keys.add((A, f"a{rng.randrange(people)}-0"))
        events.append((seq, f"e{seq}", sorted(keys)))
    return events


@pytest.mark.parametrize("seed", range(8))
def test_without_order_dependent_rules_any_order_gives_the_same_graph_and_ids(seed):
    rng = random.Random(seed)
    events = random_events(rng, 300, 40)
    rules = Rules()
    in_order = apply(rules, events, range(len(events)))
    shuffled = list(range(len(events)))
    rng.shuffle(shuffled)
    assert partition(apply(rules, events, shuffled)) == partition(in_order)


@pytest.mark.parametrize("seed", range(8))
def test_with_limits_a_rebuild_in_log_order_equals_applying_in_order(seed):
    rng = random.Random(100 + seed)
    events = random_events(rng, 300, 40)
    rules = Rules.from_dict({"limits": {"user_id": 1}, "merge_protection": ["user_id"]})
    in_order = apply(rules, events, range(len(events)))
    shuffled = list(events)
    rng.shuffle(shuffled)
    g, assigned = rebuild(rules, shuffled)
    assert partition(g) == partition(in_order)
    assert len(assigned) == len(events)


def test_out_of_order_application_under_a_limit_asks_for_a_rebuild():
    rules = Rules.from_dict({"limits": {"user_id": 1}})
    g = Graph(rules)
    g.resolve(20, "e20", [(U, "u2"), (A, "a")])
    out = g.resolve(10, "e10", [(U, "u1"), (A, "a")])  # in log order, a went with u1
    assert out.needs_rebuild
    assert [d.provenance.rule for d in out.dropped] == ["limit"]
    g2, _ = rebuild(rules, [(20, "e20", [(U, "u2"), (A, "a")]), (10, "e10", [(U, "u1"), (A, "a")])])
    assert {frozenset(n.keys()) for n in g2.nodes.values()} == {
        frozenset({(U, "u1"), (A, "a")}), frozenset({(U, "u2")})}


def test_in_order_application_never_asks_for_a_rebuild():
    rules = Rules.from_dict({"limits": {"user_id": 1}})
    g = Graph(rules)
    g.resolve(10, "e10", [(U, "u1"), (A, "a")])
    out = g.resolve(20, "e20", [(U, "u2"), (A, "a")])
    assert out.conflicted and not out.late and not out.needs_rebuild


def test_separated_identifiers_never_join_again():
    seps = {(E, "shared@x.co"): frozenset({("s1", 1)}), (U, "u1"): frozenset({("s1", 0)})}
    g = Graph(Rules(), separations=seps)
    p = g.resolve(1, "e1", [(U, "u1")]).profile_id
    out = g.resolve(2, "e2", [(U, "u1"), (E, "shared@x.co")])
    assert out.profile_id == p and [d.provenance.rule for d in out.dropped] == ["split"]
    other = g.resolve(3, "e3", [(E, "shared@x.co")])
    assert other.created and other.profile_id != p


def test_every_identifier_blocked_is_unresolvable():
    rules = Rules.from_dict({"blocked": [{"value": "null"}]})
    with pytest.raises(Unresolvable, match="blocked"):
        Graph(rules).resolve(1, "e1", [(A, "null")])


def test_a_gone_profile_id_is_not_reused():
    g = Graph(Rules(), taken_ids=[profile_id_for(A, "a1")])
    out = g.resolve(7, "e7", [(A, "a1")])
    assert out.profile_id not in (profile_id_for(A, "a1"),) and out.created


def test_a_device_seen_on_more_profiles_than_allowed_stops_linking():
    rules = Rules.from_dict({"limits": {"user_id": 1}, "shared_max_profiles": {"device_id": 2}})
    g = Graph(rules)
    d = ("device_id", "tablet")
    p1 = g.resolve(1, "e1", [(U, "u1"), d]).profile_id
    p2 = g.resolve(2, "e2", [(U, "u2"), d]).profile_id  # the limit keeps d with u1; d seen on 2 profiles
    assert p1 != p2 and g.sightings[d] == {p1, p2}
    g.resolve(3, "e3", [(U, "u3"), d])  # 3 profiles now
    out = g.resolve(4, "e4", [(A, "a4"), d])
    assert [x.provenance.rule for x in out.dropped] == ["shared-value"]
    assert out.created and g.owner[d] == p1
    assert (d, out.profile_id) in g.changes.sighted


def test_a_probabilistic_link_may_cross_merge_protection_but_not_a_limit():
    from cdp_identity.graph import Link

    crm = "crm_id"
    rules = Rules.from_dict({"merge_protection": ["user_id", crm], "limits": {"user_id": 1}},
                            types=IdentifierTypes([crm]))
    g = Graph(rules)
    a = g.resolve(1, "e1", [(crm, "C1"), (E, "ana@x.co")]).profile_id
    b = g.resolve(2, "e2", [(crm, "C2"), (E, "ana.g@x.co")]).profile_id  # a CRM duplicate of Ana
    shared = g.resolve(3, "e3", [(E, "ana@x.co"), (E, "ana.g@x.co")])  # one shared link: protection holds
    assert [d.provenance.rule for d in shared.dropped] == ["merge-protection"] and len(g.nodes) == 2
    m = g.link(Link(4, "e4", (crm, "C2"), (crm, "C1"), "probabilistic", 0.999))
    assert m is not None and (m.survivor, m.merged) == (a, b) and m.provenance.rule == "probabilistic"
    u1 = g.resolve(5, "e5", [(U, "u1")]).profile_id
    u2 = g.resolve(6, "e6", [(U, "u2")]).profile_id
    assert g.link(Link(7, "e7", (U, "u1"), (U, "u2"), "probabilistic", 0.999)) is None  # two user ids: limit
    assert g.link_conflict(u1, u2) and u1 in g.nodes and u2 in g.nodes
