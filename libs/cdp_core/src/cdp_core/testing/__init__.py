"""Test support: a pytest plugin (registered as `cdp`) starting real servers, and helpers."""

from __future__ import annotations

import asyncio


async def eventually(fn, timeout: float = 20.0, interval: float = 0.05):
    """Polls `fn` (async, returning a truthy value or raising) until it succeeds; no fixed sleeps."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Exception | None = None
    while loop.time() < deadline:
        try:
            result = await fn()
            if result:
                return result
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last error: {last!r})")
