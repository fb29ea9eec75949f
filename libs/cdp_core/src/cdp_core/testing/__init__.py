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


async def apply_envelopes(pool, projection, envelopes) -> None:
    """Hands each envelope to `projection` in its own transaction, as a consumer would deliver
    them one by one (stream sequences 1, 2, ...; outgoing events are not kept)."""
    from cdp_core.consumer import Delivery
    from cdp_core.outbox import OutboxWriter

    for seq, env in enumerate(envelopes, 1):
        async with pool.acquire() as conn, conn.transaction():
            await projection.handle(conn, Delivery(env, env.type, seq, {}), OutboxWriter())
