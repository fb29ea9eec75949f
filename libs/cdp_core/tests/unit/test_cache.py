from cdp_core.cache import TtlCache


async def test_entries_expire_and_none_is_cached():
    now = [0.0]
    loads: list[str] = []

    async def load(key: str):
        loads.append(key)
        return None if key == "missing" else key.upper()

    c: TtlCache[str, str | None] = TtlCache(5, clock=lambda: now[0])
    assert await c.get("a", load) == "A"
    assert await c.get("missing", load) is None
    now[0] = 4.9
    assert await c.get("a", load) == "A" and await c.get("missing", load) is None
    assert loads == ["a", "missing"]  # both served from the cache, the unknown one too
    now[0] = 5.1
    assert await c.get("a", load) == "A"
    assert loads == ["a", "missing", "a"]  # expired: loaded again
    c.clear()
    await c.get("a", load)
    assert loads[-1] == "a" and len(loads) == 4


async def test_the_size_is_bounded():
    async def load(key: int) -> int:
        return key

    c: TtlCache[int, int] = TtlCache(60, max_entries=3)
    for k in range(10):
        await c.get(k, load)
    assert len(c._entries) <= 3
