"""`cdp source ...` and `cdp tracking-plan ...`: ingest's SourceService (scope admin)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click
import grpc
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cdp.ingest.v1 import ingest_pb2, ingest_pb2_grpc

from . import client
from .render import iso

TOKEN_HELP = "Bearer token with admin scope (default: env CDP_TOKEN, else .cdp/token)."
PLAN_KEYS = {"mode", "unplanned_events", "events", "identify_traits"}


def _call(method: str, request, token: str | None, *, what: str | None = None):
    """One SourceService RPC; gRPC errors become CliErrors."""
    async def go():
        async with client.stub("ingest", ingest_pb2_grpc.SourceServiceStub, client.resolve_token(token)) as s:
            try:
                return await getattr(s, method)(request, timeout=client.RPC_TIMEOUT_S)
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND and what:
                    raise client.CliError(what) from None
                if e.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS):
                    raise client.CliError(e.details() or e.code().name) from None
                raise client.rpc_error("ingest", e) from None
    return asyncio.run(go())


def source_to_dict(s: ingest_pb2.Source) -> dict[str, Any]:
    return {"source_id": s.source_id, "name": s.name, "kind": s.kind, "enabled": s.enabled,
            "write_key_hint": s.write_key_hint, "rate_limit_per_s": s.rate_limit_per_s,
            "accepted": s.accepted, "rejected": s.rejected, "created_at": iso(s.created_at)}


def _out() -> Console:
    return Console(soft_wrap=True)


def _err() -> Console:
    return Console(stderr=True, soft_wrap=True)


# --- cdp source ----------------------------------------------------------------------


@click.group("source")
def source_group() -> None:
    """Sources: named write keys with a kind (web, app, server, shopify, crm, pos, ...)."""


def _print_key(src: ingest_pb2.Source, key: str, verb: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({**source_to_dict(src), "write_key": key}))
        return
    _err().print(f"{verb} source [bold]{src.name}[/bold] (kind {src.kind}, id {src.source_id}); "
                 "its write key, shown only now:")
    click.echo(key)


@source_group.command("create")
@click.argument("name")
@click.option("--kind", required=True, help="web, app, server, shopify, crm, pos, email, sms, ... or your own word.")
@click.option("--webhook-secret", default="", help="Shared secret of signed webhooks (Shopify: the app's secret).")
@click.option("--rate", type=float, default=0.0, help="Events per second the source may send (0: the default).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (with write_key).")
@click.option("--token", "token_", help=TOKEN_HELP)
def source_create(name: str, kind: str, webhook_secret: str, rate: float, as_json: bool, token_: str | None) -> None:
    """Create a source and print its write key (shown once)."""
    resp = _call("CreateSource", ingest_pb2.CreateSourceRequest(name=name, kind=kind, webhook_secret=webhook_secret,
                                                                rate_limit_per_s=rate), token_)
    _print_key(resp.source, resp.write_key, "created", as_json)


@source_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--token", "token_", help=TOKEN_HELP)
def source_list(as_json: bool, token_: str | None) -> None:
    """Every source, its key hint and its counts."""
    resp = _call("ListSources", ingest_pb2.ListSourcesRequest(), token_)
    if as_json:
        click.echo(json.dumps({"sources": [source_to_dict(s) for s in resp.sources]}))
        return
    t = Table()
    for col in ("name", "kind", "enabled", "key", "accepted", "rejected", "rate/s", "created"):
        t.add_column(col, no_wrap=True)
    for s in resp.sources:
        t.add_row(escape(s.name), escape(s.kind), "yes" if s.enabled else "[red]no[/red]", "…" + s.write_key_hint, str(s.accepted),
                  str(s.rejected), f"{s.rate_limit_per_s:g}" if s.rate_limit_per_s else "default",
                  iso(s.created_at) or "")
    _out().print(t if resp.sources else "no sources: create one with `cdp source create NAME --kind KIND`")


@source_group.command("rotate")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (with write_key).")
@click.option("--token", "token_", help=TOKEN_HELP)
def source_rotate(name: str, as_json: bool, token_: str | None) -> None:
    """Issue a new write key; the old one stops working (within seconds on every replica)."""
    resp = _call("RotateSourceKey", ingest_pb2.RotateSourceKeyRequest(name=name), token_,
                 what=f"no source named {name!r}")
    _print_key(resp.source, resp.write_key, "rotated the key of", as_json)


def _toggle(method: str, req, name: str, word: str, as_json: bool, token_: str | None) -> None:
    resp = _call(method, req, token_, what=f"no source named {name!r}")
    if as_json:
        click.echo(json.dumps(source_to_dict(resp.source)))
    else:
        _out().print(f"source {name} {word}")


@source_group.command("disable")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the source as one JSON object.")
@click.option("--token", "token_", help=TOKEN_HELP)
def source_disable(name: str, as_json: bool, token_: str | None) -> None:
    """Refuse the source's calls from now on (they are kept in failed events)."""
    _toggle("DisableSource", ingest_pb2.DisableSourceRequest(name=name), name, "disabled", as_json, token_)


@source_group.command("enable")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the source as one JSON object.")
@click.option("--token", "token_", help=TOKEN_HELP)
def source_enable(name: str, as_json: bool, token_: str | None) -> None:
    """Accept the source's calls again."""
    _toggle("EnableSource", ingest_pb2.EnableSourceRequest(name=name), name, "enabled", as_json, token_)


# --- cdp tracking-plan ---------------------------------------------------------------


def plan_request(doc: Any, source: str, where: str = "plan") -> ingest_pb2.ApplyTrackingPlanRequest:
    """A tracking-plan YAML document -> ApplyTrackingPlanRequest (click errors name the key)."""
    if not isinstance(doc, dict):
        raise client.CliError(f"{where}: must be a YAML object with mode, unplanned_events, events, identify_traits")
    unknown = set(doc) - PLAN_KEYS
    if unknown:
        raise client.CliError(f"{where}: unknown keys {', '.join(sorted(unknown))}; known: {', '.join(sorted(PLAN_KEYS))}")
    events = doc.get("events") or {}
    if not isinstance(events, dict):
        raise client.CliError(f"{where}: events must map each event name to the JSON Schema of its properties")
    identify = doc.get("identify_traits")
    if identify is not None and not isinstance(identify, dict):
        raise client.CliError(f"{where}: identify_traits must be a JSON Schema object")
    return ingest_pb2.ApplyTrackingPlanRequest(plan=ingest_pb2.TrackingPlan(
        source_name=source, mode=str(doc.get("mode") or "allow"),
        unplanned_events=str(doc.get("unplanned_events") or "allow"),
        events_json=json.dumps(events, default=str),
        identify_traits_schema_json=json.dumps(identify, default=str) if identify is not None else ""))


def plan_to_dict(p: ingest_pb2.TrackingPlan) -> dict[str, Any]:
    return {"source_name": p.source_name, "mode": p.mode, "unplanned_events": p.unplanned_events,
            "events": json.loads(p.events_json or "{}"),
            "identify_traits": json.loads(p.identify_traits_schema_json) if p.identify_traits_schema_json else None,
            "updated_at": iso(p.updated_at)}


def plan_yaml(p: ingest_pb2.TrackingPlan) -> str:
    """The plan in the file format `apply -f` reads, so get -> edit -> apply round-trips."""
    d = plan_to_dict(p)
    doc = {"mode": d["mode"], "unplanned_events": d["unplanned_events"], "events": d["events"]}
    if d["identify_traits"] is not None:
        doc["identify_traits"] = d["identify_traits"]
    header = f"# tracking plan of source {p.source_name}, updated {d['updated_at']}\n"
    return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


@click.group("tracking-plan")
def plan_group() -> None:
    """Tracking plans (as Segment Protocols): JSON Schemas per event and for identify traits."""


@plan_group.command("apply")
@click.option("--source", required=True, help="The source's name.")
@click.option("-f", "--file", "file_", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="Plan YAML (or - for stdin).")
@click.option("--json", "as_json", is_flag=True, help="Print the applied plan as one JSON object.")
@click.option("--token", "token_", help=TOKEN_HELP)
def plan_apply(source: str, file_: str, as_json: bool, token_: str | None) -> None:
    """Set the source's tracking plan (replacing any previous one)."""
    try:
        text = sys.stdin.read() if file_ == "-" else Path(file_).read_text()
        doc = yaml.safe_load(text)
    except OSError as e:
        raise client.CliError(f"cannot read {file_}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise client.CliError(f"{file_} is not valid YAML: {e}") from None
    resp = _call("ApplyTrackingPlan", plan_request(doc, source, file_), token_, what=f"no source named {source!r}")
    if as_json:
        click.echo(json.dumps(plan_to_dict(resp.plan)))
    else:
        d = plan_to_dict(resp.plan)
        _out().print(f"tracking plan of {source} applied: mode {d['mode']}, unplanned events {d['unplanned_events']}, "
                     f"{len(d['events'])} events, identify traits {'planned' if d['identify_traits'] else 'not planned'}")


@plan_group.command("get")
@click.option("--source", required=True, help="The source's name.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--token", "token_", help=TOKEN_HELP)
def plan_get(source: str, as_json: bool, token_: str | None) -> None:
    """Print the source's tracking plan (YAML, the format `apply -f` reads)."""
    resp = _call("GetTrackingPlan", ingest_pb2.GetTrackingPlanRequest(source_name=source), token_,
                 what=f"source {source!r} has no tracking plan (or does not exist)")
    click.echo(json.dumps(plan_to_dict(resp.plan)) if as_json else plan_yaml(resp.plan), nl=as_json)


@plan_group.command("violations")
@click.option("--source", default="", help="Only this source.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--token", "token_", help=TOKEN_HELP)
def plan_violations(source: str, as_json: bool, token_: str | None) -> None:
    """Tracking-plan violations counted per source, event, message and action."""
    resp = _call("ListViolations", ingest_pb2.ListViolationsRequest(source_name=source), token_,
                 what=f"no source named {source!r}")
    rows = [{"source_name": v.source_name, "event": v.event, "message": v.message, "action": v.action,
             "count": v.count, "last_seen": iso(v.last_seen)} for v in resp.violations]
    if as_json:
        click.echo(json.dumps({"violations": rows}))
        return
    if not rows:
        _out().print("no violations")
        return
    t = Table()
    for col in ("source", "event", "violation", "action", "count", "last seen"):
        t.add_column(col)
    for r in rows:
        t.add_row(escape(r["source_name"]), escape(r["event"]), escape(r["message"]), r["action"], str(r["count"]),
                  r["last_seen"] or "")
    _out().print(t)
