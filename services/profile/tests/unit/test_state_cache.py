"""The states the projection holds between batches (projection.StateCache): a state is given
back only for the very version of the row it was stored under, once, and the least recently
used go first."""

from __future__ import annotations

from datetime import UTC, datetime

from cdp_profile.computed import Event
from cdp_profile.incremental import State
from cdp_profile.projection import StateCache

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _state(n: int) -> State:
    st = State()
    for i in range(n):
        st.fold(Event(f"e{i}", "page", "/", T0))
    return st


def test_a_state_is_given_back_only_for_the_version_it_was_stored_under_and_only_once():
    cache = StateCache(10)
    a = _state(1)
    cache.put("p1", "100", a)
    assert cache.versions(["p1", "p2"]) == ["100", None]
    assert cache.take("p1", "101") is None  # another transaction wrote the row since
    assert cache.take("p1", "100") is None  # taken (and dropped) by the miss above
    cache.put("p1", "102", a)
    assert cache.take("p1", "102") is a
    assert cache.take("p1", "102") is None  # a batch folding into it holds it alone
    assert cache.take("p1", None) is None  # no row (deleted): nothing


def test_take_all_and_the_least_recently_used_go_first():
    cache = StateCache(2)
    a, b, c = _state(1), _state(2), _state(3)
    cache.put("a", "1", a)
    cache.put("b", "2", b)
    cache.put("a", "3", a)  # a is now the most recent
    cache.put("c", "4", c)  # b goes
    assert cache.versions(["a", "b", "c"]) == ["3", None, "4"]
    assert cache.take_all(["a", "b", "x"]) == {"a": ("3", a)}
    assert cache.versions(["a", "c"]) == [None, "4"]
    off = StateCache(0)
    off.put("a", "1", a)
    assert off.versions(["a"]) == [None]
