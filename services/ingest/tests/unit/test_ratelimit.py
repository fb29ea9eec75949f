"""domain/ratelimit.py: per-source token buckets, with a fake clock."""

from __future__ import annotations

import pytest

from cdp_ingest.domain.ratelimit import Bucket, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_full_bucket_allows_its_burst_then_refuses(clock):
    rl = RateLimiter(10, burst_seconds=2, clock=clock)
    assert all(rl.check("s", 1) == 0 for _ in range(20))  # 2 s of 10/s
    assert rl.check("s", 1) == 1  # 0.1 s away: Retry-After is whole seconds, at least 1


def test_tokens_refill_at_the_rate(clock):
    rl = RateLimiter(10, burst_seconds=2, clock=clock)
    assert rl.check("s", 20) == 0
    clock.advance(0.5)  # 5 tokens back
    assert rl.check("s", 5) == 0
    assert rl.check("s", 1) == 1
    clock.advance(100)  # never more than the burst
    assert rl.check("s", 20) == 0
    assert rl.check("s", 1) == 1


def test_retry_after_is_the_whole_seconds_until_enough_tokens(clock):
    rl = RateLimiter(2, burst_seconds=5, clock=clock)  # bucket of 10
    assert rl.check("s", 10) == 0
    assert rl.check("s", 5) == 3  # 5 tokens at 2/s: 2.5 s, rounded up
    clock.advance(2.5)
    assert rl.check("s", 5) == 0


def test_a_refused_call_takes_no_tokens(clock):
    rl = RateLimiter(1, burst_seconds=4, clock=clock)
    assert rl.check("s", 4) == 0
    clock.advance(1)
    assert rl.check("s", 3) == 2
    assert rl.check("s", 1) == 0  # the token that came back is still there


def test_sources_have_their_own_buckets(clock):
    rl = RateLimiter(1, burst_seconds=1, clock=clock)
    assert rl.check("a", 1) == 0
    assert rl.check("a", 1) == 1
    assert rl.check("b", 1) == 0


def test_a_source_rate_overrides_the_default_and_a_change_starts_a_new_bucket(clock):
    rl = RateLimiter(1, burst_seconds=1, clock=clock)
    assert rl.check("s", 50, rate=50) == 0
    assert rl.check("s", 1, rate=50) == 1
    assert rl.check("s", 100, rate=100) == 0  # the source's rate changed: a fresh, full bucket


def test_zero_turns_limiting_off(clock):
    rl = RateLimiter(0, clock=clock)
    assert all(rl.check("s", 10_000) == 0 for _ in range(10))
    default = RateLimiter(5, burst_seconds=2, clock=clock)
    assert default.check("s", 10, rate=0) == 0  # 0 means "the default", here 5/s
    assert default.check("s", 1, rate=0) == 1


def test_a_request_larger_than_the_burst_passes_only_on_a_full_bucket(clock):
    rl = RateLimiter(10, burst_seconds=1, clock=clock)  # bucket of 10
    assert rl.check("s", 25) == 0  # full: let through, bucket emptied
    assert rl.check("s", 1) == 1
    clock.advance(0.5)
    assert rl.check("s", 25) == 1  # 5 tokens short of full
    clock.advance(0.5)
    assert rl.check("s", 25) == 0


def test_bucket_take_reports_fractional_waits():
    b = Bucket(rate=4, burst=8, tokens=0, updated=0)
    assert b.take(2, 0) == pytest.approx(0.5)
    assert b.take(2, 0.5) == 0
    assert b.tokens == pytest.approx(0)
