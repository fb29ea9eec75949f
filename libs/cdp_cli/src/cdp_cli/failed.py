"""`cdp failed list|show|replay`: cdp.common.v1.FailedEventService, served by every service
on its gRPC port (what ingest rejected, what a projection could not apply)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import click
import grpc
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cdp.common.v1 import failed_pb2, failed_pb2_grpc

from . import client
from .render import iso

TOKEN_HELP = "Bearer token with admin scope (default: env CDP_TOKEN, else .cdp/token)."
SERVICE_OPTION = click.option("--service", default="ingest", show_default=True,
                              type=click.Choice(sorted(client.SERVICES)), help="Whose failed events.")


def _call(service: str, method: str, request, token: str | None):
    async def go():
        async with client.stub(service, failed_pb2_grpc.FailedEventServiceStub, client.resolve_token(token)) as s:
            try:
                return await getattr(s, method)(request, timeout=client.RPC_TIMEOUT_S * 6)
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    raise client.CliError(e.details() or e.code().name) from None
                if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                    raise client.CliError(f"the {service} service at {client.service_addr(service)} "
                                          "does not serve failed events") from None
                raise client.rpc_error(service, e, what=e.details()) from None
    return asyncio.run(go())


def event_to_dict(e: failed_pb2.FailedEvent) -> dict[str, Any]:
    return {"id": e.id, "kind": e.kind, "consumer": e.consumer, "stream": e.stream, "stream_seq": e.stream_seq,
            "subject": e.subject, "event_id": e.event_id, "source_id": e.source_id, "reason": e.reason,
            "failed_at": iso(e.failed_at), "attempts": e.attempts, "replayed_at": iso(e.replayed_at),
            "replay_result": e.replay_result, "size_bytes": e.size_bytes, "content_type": e.content_type}


def data_value(resp: failed_pb2.GetFailedEventResponse) -> dict[str, Any]:
    """The original bytes as JSON when they are, else as text, else base64."""
    if resp.data_text:
        try:
            return {"data": json.loads(resp.data_text)}
        except ValueError:
            return {"data_text": resp.data_text}
    return {"data_base64": base64.b64encode(resp.data).decode()}


@click.group("failed")
def failed_group() -> None:
    """Failed events: rejected calls and messages a service could not process; re-drive them after a fix."""


@failed_group.command("list")
@SERVICE_OPTION
@click.option("--all", "include_replayed", is_flag=True, help="Include events already replayed.")
@click.option("--kind", type=click.Choice(["rejected", "consumer"]), help="Only this kind.")
@click.option("--consumer", help="Only this consumer or entry point (e.g. ingest.http, ingest.import).")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True, help="At most this many.")
@click.option("--before-id", type=int, default=0, help="Page: only ids below this one.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--token", "token_", help=TOKEN_HELP)
def failed_list(service: str, include_replayed: bool, kind: str | None, consumer: str | None, limit: int,
                before_id: int, as_json: bool, token_: str | None) -> None:
    """Failed events, newest first (pending only unless --all)."""
    resp = _call(service, "ListFailedEvents", failed_pb2.ListFailedEventsRequest(
        include_replayed=include_replayed, kind=kind or "", consumer=consumer or "", page_size=limit,
        before_id=before_id), token_)
    events = [event_to_dict(e) for e in resp.events]
    if as_json:
        click.echo(json.dumps({"service": service, "pending_total": resp.pending_total, "events": events}))
        return
    out = Console(soft_wrap=True)
    if not events:
        out.print(f"no {'' if include_replayed else 'pending '}failed events in {service}")
        return
    t = Table(title=f"{service}: {resp.pending_total} pending", title_justify="left")
    for col in ("id", "kind", "consumer", "failed at", "attempts", "state", "reason"):
        t.add_column(col, no_wrap=col != "reason")
    for e in events:
        state = "replayed" if e["replayed_at"] else "pending"
        t.add_row(str(e["id"]), e["kind"], escape(e["consumer"]), e["failed_at"] or "", str(e["attempts"]), state,
                  escape(e["reason"]))
    out.print(t)


@failed_group.command("show")
@click.argument("event_id", metavar="ID", type=int)
@SERVICE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--token", "token_", help=TOKEN_HELP)
def failed_show(event_id: int, service: str, as_json: bool, token_: str | None) -> None:
    """One failed event with its reason and original data."""
    resp = _call(service, "GetFailedEvent", failed_pb2.GetFailedEventRequest(id=event_id), token_)
    d = {**event_to_dict(resp.event), **data_value(resp)}
    if as_json:
        click.echo(json.dumps(d, ensure_ascii=False))
        return
    out = Console(soft_wrap=True)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for k, v in d.items():
        if k.startswith("data") or v in ("", None, 0) and k not in ("attempts",):
            continue
        grid.add_row(k, escape(str(v)))
    out.print(grid)
    if "data" in d:
        out.print_json(json.dumps(d["data"], ensure_ascii=False))
    elif "data_text" in d:
        out.print(d["data_text"], markup=False, highlight=False)
    else:
        out.print(f"{resp.event.size_bytes} bytes ({resp.event.content_type}); --json gives them in base64")


@failed_group.command("replay")
@click.argument("ids", metavar="ID...", nargs=-1, type=int)
@click.option("--all", "all_", is_flag=True, help="Replay every pending failed event (up to 1000 per run).")
@SERVICE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--token", "token_", help=TOKEN_HELP)
def failed_replay(ids: tuple[int, ...], all_: bool, service: str, as_json: bool, token_: str | None) -> None:
    """Process failed events again after a fix. Exit 1 when any is still refused."""
    if bool(ids) == all_:
        raise click.UsageError("give failed event ids, or --all")
    resp = _call(service, "ReplayFailedEvents", failed_pb2.ReplayFailedEventsRequest(ids=list(ids), all=all_), token_)
    results = [{"id": r.id, "ok": r.ok, "detail": r.detail} for r in resp.results]
    ok = sum(r["ok"] for r in results)
    if as_json:
        click.echo(json.dumps({"service": service, "replayed": ok, "failed": len(results) - ok, "results": results}))
    else:
        out = Console(soft_wrap=True)
        for r in results:
            mark = "[green]ok[/green]" if r["ok"] else "[red]still failing[/red]"
            out.print(f"{r['id']}: {mark} {escape(r['detail'])}")
        out.print(f"{ok} replayed, {len(results) - ok} still failing" if results else "nothing to replay")
    if ok != len(results):
        raise SystemExit(1)
