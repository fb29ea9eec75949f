"""Per-source token buckets: each accepted call costs one token."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass
class Bucket:
    rate: float  # tokens per second
    burst: float  # bucket size
    tokens: float
    updated: float

    def take(self, n: int, now: float) -> float:
        """Takes n tokens; returns 0 when allowed, else the seconds to wait before retrying."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if n <= self.tokens:
            self.tokens -= n
            return 0.0
        if n > self.burst:  # never satisfiable at once: let it through when the bucket is full
            if self.tokens >= self.burst:
                self.tokens = 0.0
                return 0.0
            return (self.burst - self.tokens) / self.rate
        return (n - self.tokens) / self.rate


class RateLimiter:
    def __init__(self, default_rate: float, burst_seconds: float = 2.0, clock=time.monotonic):
        self.default_rate, self.burst_seconds, self.clock = default_rate, burst_seconds, clock
        self.buckets: dict[str, Bucket] = {}

    def check(self, source_id: str, n: int, rate: float = 0) -> int:
        """0 when allowed; else whole seconds until a retry can succeed (Retry-After)."""
        rate = rate or self.default_rate
        if rate <= 0:
            return 0
        now = self.clock()
        b = self.buckets.get(source_id)
        if b is None or b.rate != rate:
            b = self.buckets[source_id] = Bucket(rate, rate * self.burst_seconds, rate * self.burst_seconds, now)
        wait = b.take(n, now)
        return 0 if wait == 0 else max(1, math.ceil(wait))
