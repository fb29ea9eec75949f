"""`cdp export …`: whole projections as JSON lines, streamed (never held in memory)."""

from __future__ import annotations

import asyncio
from typing import IO

import click
import grpc
from rich.console import Console

from cdp.profile.v1 import profile_pb2, profile_pb2_grpc

from . import client
from .output import write_lines, write_stream
from .profiles import profile_record

TOKEN_HELP = "Bearer token (profiles:read) (default: env CDP_TOKEN, else .cdp/token)."


def _err() -> Console:
    return Console(stderr=True, soft_wrap=True)


@click.group("export")
def export_group() -> None:
    """Export projections as JSON lines."""


@export_group.command("profiles")
@click.option("--jsonl", is_flag=True, help="JSON lines: one object per profile (the only format; required).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, allow_dash=True),
              help="Write to this file (written beside it, then renamed when complete). Default: stdout.")
@click.option("--token", "token_", help=TOKEN_HELP)
def export_profiles(jsonl: bool, out_path: str | None, token_: str | None) -> None:
    """Every live profile, streamed (ExportProfiles, one consistent snapshot), one line each:
    {"profile_id", "identifiers", "traits", "computed", "merged_profile_ids"} as
    `cdp profile get --json` prints it, ordered by profile id."""
    if not jsonl:
        raise click.UsageError("choose the format: --jsonl (one JSON object per profile a line)")
    tok = client.resolve_token(token_)
    write_lines(out_path, lambda f: _profiles_to(f, tok), "profiles")


def _profiles_to(f: IO[str], token: str) -> int:
    async def go() -> int:
        async with client.stub("profile", profile_pb2_grpc.ProfileServiceStub, token) as s:
            return await write_stream(f, s.ExportProfiles(profile_pb2.ExportProfilesRequest()), profile_record)

    try:
        return asyncio.run(go())
    except grpc.aio.AioRpcError as e:
        if e.code() == grpc.StatusCode.UNIMPLEMENTED:
            raise client.CliError(f"the profile service at {client.service_addr('profile')} does not serve "
                                  "ExportProfiles (an older version?)") from None
        raise client.rpc_error("profile", e) from None
