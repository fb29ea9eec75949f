"""A small per-replica cache whose entries expire: for lookups that may be a few
seconds stale (write keys, tracking plans), where every replica refreshes on its own."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(self, ttl_s: float, *, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.ttl_s, self.max_entries, self.clock = ttl_s, max_entries, clock
        self._entries: dict[K, tuple[V, float]] = {}

    def clear(self) -> None:
        self._entries.clear()

    async def get(self, key: K, load: Callable[[K], Awaitable[V]]) -> V:
        """The cached value (None included) while fresh, else `await load(key)`, kept ttl_s."""
        now = self.clock()
        hit = self._entries.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        value = await load(key)
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (value, now + self.ttl_s)
        return value
