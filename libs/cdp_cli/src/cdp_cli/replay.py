"""`cdp replay SERVICE`: rebuild a service's projection from the log and swap it in."""

from __future__ import annotations

import asyncio
import time

import click
import grpc
from rich.console import Console

from cdp.common.v1 import replay_pb2, replay_pb2_grpc

from . import client

CONSUMERS = ("identity", "profile", "segment", "prediction")  # the services that read a stream today
POLL_S = 0.5


@click.command("replay")
@click.argument("service", type=click.Choice(CONSUMERS))
@click.option("--no-wait", is_flag=True, help="Start it and return; `cdp replay SERVICE --status` follows it.")
@click.option("--status", "status_only", is_flag=True, help="Show the state of the last replay only.")
@click.option("--token", "token_", help="Bearer token with the admin scope (default: env CDP_TOKEN, else .cdp/token).")
def replay_command(service: str, no_wait: bool, status_only: bool, token_: str | None) -> None:
    """Rebuild SERVICE's projection afresh from sequence 1 of the streams it reads, into new
    tables, and swap them in while it keeps serving (the live consumers pause only for the
    swap). Prints progress; exits 1 if the replay fails (the live tables are then untouched)."""
    tok = client.resolve_token(token_)
    out = Console(stderr=True, soft_wrap=True)

    async def go() -> replay_pb2.ReplayStatus:
        async with client.stub(service, replay_pb2_grpc.ReplayServiceStub, tok) as s:
            if status_only:
                return await s.GetReplayStatus(replay_pb2.GetReplayStatusRequest(), timeout=client.RPC_TIMEOUT_S)
            st = await s.StartReplay(replay_pb2.StartReplayRequest(), timeout=client.RPC_TIMEOUT_S)
            out.print(f"{service}: replay started")
            if no_wait:
                return st
            t0, last = time.monotonic(), ""
            while st.state in ("replaying", "swapping"):
                await asyncio.sleep(POLL_S)
                st = await s.GetReplayStatus(replay_pb2.GetReplayStatusRequest(), timeout=client.RPC_TIMEOUT_S)
                line = f"{service}: {st.state}, {st.applied:,} applied, {st.pending:,} pending"
                if line != last:
                    out.print(f"{line} ({time.monotonic() - t0:.1f} s)")
                    last = line
            return st

    try:
        st = asyncio.run(go())
    except grpc.aio.AioRpcError as e:
        raise client.rpc_error(service, e) from None
    if st.state == "failed":
        raise client.CliError(f"{service}: the replay failed, the live tables are unchanged: {st.error}")
    extra = f"; live consumers paused {st.paused_seconds:.2f} s for the swap" if st.state == "done" else ""
    click.echo(f"{service}: {st.state}, {st.applied:,} messages applied{extra}")
