"""The identity benchmark at a tiny size, so it cannot rot: its shape and its bookkeeping
(every event resolved, merges where the workload builds them, pair counts consistent), never
its speed."""

from __future__ import annotations

import json

import pytest

from cdp_bench.cli import parser, render
from cdp_bench.identity import _Replay, make_workload, run_identity_bench, score


def test_the_merge_heavy_workload_builds_the_merges_it_asks_for():
    wl = make_workload(2000, merge_share=0.3, seed=3)
    assert len(wl.messages) == 2000
    assert 0.25 <= wl.intended_merges / 2000 <= 0.31
    assert len({m.msg_id for m in wl.messages}) == 2000
    plain = make_workload(500, seed=3)
    assert plain.intended_merges == 0 and set(plain.kinds) <= {"page", "track", "identify"}
    with pytest.raises(ValueError):
        make_workload(10, merge_share=0.6)


def _resolved(pid, keys, source_kind="web"):
    class Ev:
        pass

    class Msg:
        pass

    m = Msg()
    m.rebuilt_by, m.profile_id = "", pid
    m.new_identifiers = [type("I", (), {"type": t, "value": v})() for t, v in keys]
    m.event = Ev()
    m.event.source_kind = source_kind
    return ("cdp.identity.resolved", m)


def _merged(survivor, merged, rule):
    m = type("M", (), {"survivor_profile_id": survivor, "merged_profile_id": merged, "rule": rule})()
    return ("cdp.identity.merged", m)


def test_pairs_are_attributed_to_the_link_that_made_them_and_shared_identifiers_left_out():
    a1, a2, e, crm, shared = ("anonymous_id", "a1"), ("anonymous_id", "a2"), ("email", "x@y.es"), \
        ("user_id", "crm-1"), ("email", "family@y.es")
    b1 = ("anonymous_id", "b1")
    truth = [
        {"person_id": "p1", "identifiers": [{"type": "anonymous_id", "value": "a1"},
                                            {"type": "anonymous_id", "value": "a2"},
                                            {"type": "email", "value": "x@y.es"}, {"type": "crm_id", "value": "1"},
                                            {"type": "email", "value": "family@y.es", "shared": True}]},
        {"person_id": "p2", "identifiers": [{"type": "anonymous_id", "value": "b1"},
                                            {"type": "email", "value": "family@y.es", "shared": True}]},
    ]
    stream = [
        _resolved("P1", [a1, e]),              # one event: a1-e (event, true)
        _resolved("P2", [a2]),
        _merged("P1", "P2", "shared-identifier"),  # a2 joins: 2 true pairs
        _resolved("P3", [crm], "crm"),
        _merged("P1", "P3", "probabilistic"),  # crm joins: 3 true pairs
        _resolved("P4", [b1, shared]),
        _merged("P1", "P4", "shared-identifier"),  # the family e-mail: b1 with p1's 4 = 4 false pairs
    ]
    graph = {k: "P1" for k in (a1, a2, e, crm, b1, shared)}
    s = score(graph, stream, truth)
    assert s["identifiers_evaluable"] == 5 and s["identifiers_excluded_shared_or_placeholder"] == 1
    assert s["overall"]["predicted_pairs"] == 10 and s["overall"]["true_positive_pairs"] == 6
    assert s["deterministic"]["by_rule"]["event"] == {"predicted_pairs": 1, "true_positive_pairs": 1}
    assert s["deterministic"]["by_rule"]["shared-identifier"] == {"predicted_pairs": 6, "true_positive_pairs": 2}
    assert s["probabilistic"]["predicted_pairs"] == 3 and s["probabilistic"]["precision"] == 1.0
    assert s["replay_matches_export"] is True
    assert s["profiles_with_two_or_more_people"] == 1
    r = _Replay({}, skip=frozenset({"probabilistic"}))
    r.merged("X", "Y", "probabilistic")
    assert r.find("X") != r.find("Y")


@pytest.mark.component
async def test_identity_bench_smoke_at_a_tiny_size():
    r = await run_identity_bench(events=400, merge_events=400, repetitions=1, people=25, days=4, seed=2)
    json.dumps(r)  # plain JSON
    for key in ("deterministic", "merge_heavy"):
        x = r[key]
        assert all(run["events"] == 400 and run["failed"] == 0 for run in x["runs"])
        assert x["vs_copy"]["figure"] > 0 and x["vs_copy"]["baseline"] > 0 and x["vs_fetch_ack"]["baseline"] > 0
    assert r["merge_heavy"]["merges"] >= 0.8 * r["merge_heavy"]["intended_merges"] > 0
    assert r["deterministic"]["memory"]["identifiers"] > 0
    a = r["accuracy"]
    assert a["caught_up"] and a["replay_matches_export"]
    assert a["identifiers_evaluable"] > 0 and 0 <= a["overall"]["precision"] <= 1
    text = render(r)
    assert "resolutions/s" in text and "precision" in text
    assert parser().parse_args(["identity", "--events", "10", "--skip", "accuracy"]).events == 10
