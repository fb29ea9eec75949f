"""`cdp segment …`: segment definitions over cdp.segment.v1.SegmentService — apply a YAML file,
list, preview a definition without saving it, list or export the members of a segment."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click
import grpc
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cdp.segment.v1 import segment_pb2, segment_pb2_grpc

from . import client
from .render import iso

SERVICE = "segment"
TOKEN_OPTION = click.option("--token", "token_", help="Bearer token (segments:read; segments:write to apply) "
                                                      "(default: env CDP_TOKEN, else .cdp/token).")
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")


def _out() -> Console:
    return Console(soft_wrap=True)


def _read(path: str) -> tuple[str, str]:
    name = "stdin" if path == "-" else path
    try:
        with click.open_file(path, "r", encoding="utf-8") as f:
            return name, f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise client.CliError(f"cannot read {name}: {e}") from None


def _call(method: str, request, token: str | None, *, refused: str | None = None):
    tok = client.resolve_token(token)

    async def go():
        async with client.stub(SERVICE, segment_pb2_grpc.SegmentServiceStub, tok) as s:
            return await getattr(s, method)(request, timeout=client.RPC_TIMEOUT_S * 6)

    try:
        return asyncio.run(go())
    except grpc.aio.AioRpcError as e:
        if e.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
                        grpc.StatusCode.NOT_FOUND) and refused:
            raise client.CliError(f"{refused}: {e.details()}") from None
        raise client.rpc_error(SERVICE, e) from None


def segment_record(s: segment_pb2.SegmentInfo) -> dict[str, Any]:
    return {"name": s.definition.name, "segment_id": s.segment_id, "version": s.version, "predefined": s.predefined,
            "members": s.member_count, "backfill_done": s.backfill_done, "created_at": iso(s.created_at),
            "updated_at": iso(s.updated_at), "suppresses": list(s.definition.suppresses), "yaml": s.yaml}


@click.group("segment")
def segment_group() -> None:
    """Segments: named condition trees whose members are kept current from the stream."""


@segment_group.command("apply")
@click.option("-f", "--file", "path", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="A definition, or `segments: [...]` (and `stores: [...]`), as YAML or JSON; - reads stdin.")
@click.option("--dry-run", is_flag=True, help="Validate and say what would change; nothing is saved.")
@JSON_OPTION
@TOKEN_OPTION
def segment_apply(path: str, dry_run: bool, as_json: bool, token_: str | None) -> None:
    """Create or update segments (a new version each time one changes); members are
    evaluated in the background. A refused document names the node at fault
    (e.g. where.all[2].event.window) and nothing is saved."""
    name, text = _read(path)
    r = _call("ApplySegments", segment_pb2.ApplySegmentsRequest(yaml=text, dry_run=dry_run), token_,
              refused=f"{name} refused, nothing applied")
    if as_json:
        click.echo(json.dumps({"dry_run": r.dry_run, "results": [
            {"outcome": x.outcome, **segment_record(x.segment)} for x in r.results]}))
        return
    out = _out()
    for x in r.results:
        verb = f"would be {x.outcome}" if dry_run else x.outcome
        out.print(f"{escape(x.segment.definition.name)}: {verb} (version {x.segment.version})")


@segment_group.command("list")
@JSON_OPTION
@TOKEN_OPTION
def segment_list(as_json: bool, token_: str | None) -> None:
    """Every segment with its version and member count."""
    r = _call("ListSegments", segment_pb2.ListSegmentsRequest(), token_)
    records = [segment_record(s) for s in r.segments]
    if as_json:
        click.echo(json.dumps({"segments": records}))
        return
    from rich.table import Column

    # the descriptions are in --json: in a table beside six columns they wrap a word a line
    t = Table(Column("name", no_wrap=True), Column("version", justify="right"), Column("members", justify="right"),
              "predefined", "backfill", "suppresses")
    for s in r.segments:
        t.add_row(escape(s.definition.name), str(s.version), str(s.member_count), "yes" if s.predefined else "",
                  "done" if s.backfill_done else "running", ", ".join(s.definition.suppresses))
    _out().print(t)


@segment_group.command("preview")
@click.option("-f", "--file", "path", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="One definition as YAML or JSON; - reads stdin.")
@click.option("--sample", default=10, show_default=True, type=click.IntRange(1, 100), help="Profile ids to show.")
@JSON_OPTION
@TOKEN_OPTION
def segment_preview(path: str, sample: int, as_json: bool, token_: str | None) -> None:
    """How many profiles the definition would hold now (evaluated in SQL), and a sample;
    nothing is saved."""
    name, text = _read(path)
    r = _call("Preview", segment_pb2.PreviewRequest(yaml=text, sample_size=sample), token_, refused=f"{name} refused")
    if as_json:
        click.echo(json.dumps({"count": r.count, "profiles_total": r.profiles_total,
                               "sample_profile_ids": list(r.sample_profile_ids)}))
        return
    out = _out()
    out.print(f"{r.count} of {r.profiles_total} profiles")
    for pid in r.sample_profile_ids:
        out.print(f"  {pid}")


@segment_group.command("members")
@click.argument("name")
@click.option("--jsonl", is_flag=True, help="JSON lines: one {profile_id, since} per member (the only format).")
@click.option("--exclude-suppressed-on", "channel", default="", help="Leave out profiles suppressed on this channel.")
@TOKEN_OPTION
def segment_members(name: str, jsonl: bool, channel: str, token_: str | None) -> None:
    """Every member of the segment, streamed, ordered by profile id."""
    if not jsonl:
        raise click.UsageError("choose the format: --jsonl (one JSON object per member a line)")
    tok = client.resolve_token(token_)

    async def go() -> int:
        n = 0
        async with client.stub(SERVICE, segment_pb2_grpc.SegmentServiceStub, tok) as s:
            async for m in s.ExportMembers(segment_pb2.ExportMembersRequest(name=name, exclude_suppressed_on=channel)):
                sys.stdout.write(json.dumps({"profile_id": m.profile_id, "since": iso(m.since)}) + "\n")
                n += 1
        return n

    try:
        asyncio.run(go())
    except grpc.aio.AioRpcError as e:
        if e.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            raise client.CliError(e.details() or "refused") from None
        raise client.rpc_error(SERVICE, e) from None
    sys.stdout.flush()
