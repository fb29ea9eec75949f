"""The states the projection holds between batches (projection.StateCache): a state is given
back only for the very version of the row it was stored under, once, and the least recently
used go first; those evicted with events their rows lack are kept to be written back."""

from __future__ import annotations

from datetime import UTC, datetime

from cdp_profile.computed import Event
from cdp_profile.incremental import State
from cdp_profile.projection import Held, SavePolicy, StateCache

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _state(n: int) -> State:
    st = State()
    for i in range(n):
        st.fold(Event(f"e{i}", "page", "/", T0))
    return st


def test_a_state_is_given_back_only_for_the_version_it_was_stored_under_and_only_once():
    cache = StateCache(10)
    a = _state(1)
    cache.put("p1", Held("100", a))
    assert cache.versions(["p1", "p2"]) == ["100", None]
    assert cache.take("p1", "101") is None  # another transaction wrote the row since
    assert cache.take("p1", "100") is None  # taken (and dropped) by the miss above
    cache.put("p1", Held("102", a))
    assert cache.take("p1", "102").state is a
    assert cache.take("p1", "102") is None  # a batch folding into it holds it alone
    assert cache.take("p1", None) is None  # no row (deleted): nothing


def test_take_all_and_the_least_recently_used_go_first():
    cache = StateCache(2)
    a, b, c = _state(1), _state(2), _state(3)
    cache.put("a", Held("1", a))
    cache.put("b", Held("2", b))
    cache.put("a", Held("3", a))  # a is now the most recent
    cache.put("c", Held("4", c))  # b goes
    assert cache.versions(["a", "b", "c"]) == ["3", None, "4"]
    assert {p: (h.version, h.state) for p, h in cache.take_all(["a", "b", "x"]).items()} == {"a": ("3", a)}
    assert cache.versions(["a", "c"]) == [None, "4"]
    off = StateCache(0)
    off.put("a", Held("1", a))
    assert off.versions(["a"]) == [None]


def test_states_evicted_with_unsaved_events_are_kept_for_writing_back():
    cache = StateCache(2)
    a, b, c = _state(1), _state(2), _state(3)
    cache.put("a", Held("1", a, unsaved=1, since=5.0))
    cache.put("b", Held("2", b))  # saved: nothing to write back when it goes
    cache.put("c", Held("3", c, unsaved=2, since=6.0))
    cache.put("d", Held("4", _state(1)))  # a and b go; only a is unsaved
    assert [(p, h.state) for p, h in cache.evicted] == [("a", a)]
    assert sorted(p for p, _ in cache.unsaved()) == ["a", "c"]
    held_c = cache.take_all(["c"])["c"]
    cache.put("c", held_c)
    cache.saved("c", held_c, "9")  # written back: current under its new version, nothing unsaved
    assert cache.versions(["c"]) == ["9"]
    assert [p for p, _ in cache.unsaved()] == ["a"]


def test_when_a_state_is_due_for_saving():
    policy = SavePolicy(events=10, seconds=30)
    assert not policy.due(9, since=100.0, now=129.0)
    assert policy.due(10, since=100.0, now=100.0)
    assert policy.due(1, since=100.0, now=130.0)
    assert StateCache(0, policy).must_save(1, 100.0, 100.0)  # nothing held: always written
    assert not StateCache(5, policy).must_save(1, 100.0, 100.0)
