"""Running `cdp` in-process from tests (the services of the test run on the test's loop)."""

from __future__ import annotations

import asyncio

from click.testing import CliRunner, Result


async def run_cdp(*args: str, input: str | None = None, code: int = 0) -> Result:
    """`cdp ARGS` in a thread of this process; asserts its exit code."""
    from .main import cli

    r = await asyncio.to_thread(CliRunner().invoke, cli, list(args), input=input, catch_exceptions=False)
    assert r.exit_code == code, f"cdp {' '.join(args)} -> {r.exit_code}\n{r.stdout}\n{r.stderr}"
    return r
