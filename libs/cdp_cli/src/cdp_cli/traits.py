"""`cdp trait …`: declared computed traits over cdp.profile.v1.TraitService — apply
definitions from a YAML file, list them with their backfill, delete one."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import click
import grpc
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cdp.profile.v1 import traits_pb2, traits_pb2_grpc

from . import client
from .render import iso

SERVICE = "profile"
TOKEN_HELP = ("Bearer token (profiles:read; profiles:write to apply or delete) "
              "(default: env CDP_TOKEN, else .cdp/token).")
TOKEN_OPTION = click.option("--token", "token_", help=TOKEN_HELP)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")


def _out() -> Console:
    return Console(soft_wrap=True)


class Refused(client.CliError):
    """INVALID_ARGUMENT: the message names the field at fault."""


def _call(method: str, request, token: str | None, *, not_found: str | None = None):
    tok = client.resolve_token(token)

    async def go():
        async with client.stub(SERVICE, traits_pb2_grpc.TraitServiceStub, tok) as s:
            return await getattr(s, method)(request, timeout=client.RPC_TIMEOUT_S * 3)

    try:
        return asyncio.run(go())
    except grpc.aio.AioRpcError as e:
        if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
            raise Refused(e.details() or "invalid") from None
        if e.code() == grpc.StatusCode.NOT_FOUND and not_found:
            raise client.CliError(not_found) from None
        if e.code() == grpc.StatusCode.UNIMPLEMENTED:
            raise client.CliError(f"the profile service at {client.service_addr(SERVICE)} does not serve "
                                  "declared traits (an older version?)") from None
        raise client.rpc_error(SERVICE, e) from None


def definition_record(t: traits_pb2.TraitDefinition, *, stored: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"name": t.name, "definition": json.loads(t.definition_json or "{}")}
    if stored:
        out.update({"version": t.version, "created_at": iso(t.created_at), "updated_at": iso(t.updated_at),
                    "backfill": {"done": t.backfill.done, "profiles_done": t.backfill.profiles_done,
                                 "profiles_total": t.backfill.profiles_total,
                                 "finished_at": iso(t.backfill.finished_at)}})
    return out


def _backfill_text(t: traits_pb2.TraitDefinition) -> str:
    b = t.backfill
    if b.done:
        return f"done ({b.profiles_done} profiles)"
    return f"running ({b.profiles_done}/{b.profiles_total} profiles)"


def _what(t: traits_pb2.TraitDefinition) -> str:
    spec = json.loads(t.definition_json or "{}")
    event = spec.get("event", {})
    parts = [t.aggregation + (f"({t.property})" if t.property else "")]
    if event.get("kinds"):
        parts.append("kinds " + ", ".join(event["kinds"]))
    if event.get("names"):
        parts.append("events " + ", ".join(event["names"]))
    for c in event.get("where", []):
        cond = {k: v for k, v in c.items() if k != "property"}
        parts.append(f"{c['property']} " + " ".join(f"{k} {json.dumps(v, ensure_ascii=False)}"
                                                   for k, v in cond.items()))
    parts.append(f"window {t.window}")
    return "; ".join(parts)


@click.group("trait")
def trait_group() -> None:
    """Declared computed traits: an aggregation of a person's events, kept on every profile."""


@trait_group.command("apply")
@click.option("-f", "--file", "path", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="The definitions as YAML (or JSON): `definitions: [...]`; - reads stdin.")
@click.option("--dry-run", is_flag=True, help="Validate and say what would change; nothing is applied.")
@click.option("--wait", is_flag=True, help="Wait until the backfill of what changed is done.")
@JSON_OPTION
@TOKEN_OPTION
def trait_apply(path: str, dry_run: bool, wait: bool, as_json: bool, token_: str | None) -> None:
    """Add or change trait definitions (the others are left alone); existing profiles are
    backfilled in the background (`cdp trait list` shows how far).

    A document the service refuses is reported with the field at fault (e.g.
    definitions[0].window); nothing is applied then."""
    name = "stdin" if path == "-" else path
    try:
        with click.open_file(path, "r", encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise client.CliError(f"cannot read {name}: {e}") from None
    try:
        r = _call("ApplyTraitDefinitions", traits_pb2.ApplyTraitDefinitionsRequest(yaml=text, dry_run=dry_run),
                  token_)
    except Refused as e:
        raise client.CliError(f"{name} refused, nothing applied: {e.message}") from None
    if wait and not dry_run:
        names = {x.definition.name for x in r.results if x.outcome != "unchanged"}
        _wait(names, token_, quiet=as_json)
    if as_json:
        click.echo(json.dumps({"dry_run": r.dry_run, "results": [
            {"outcome": x.outcome, **definition_record(x.definition, stored=not dry_run)} for x in r.results]},
            ensure_ascii=False))
        return
    out = _out()
    for x in r.results:
        would = "would be " if dry_run else ""
        line = f"{escape(x.definition.name)}: {would}{x.outcome}"
        if not dry_run:
            line += f" (version {x.definition.version}; backfill {_backfill_text(x.definition)})"
        out.print(line)
    if dry_run:
        out.print(f"{escape(name)}: valid (dry run, nothing applied)")


def _wait(names: set[str], token: str | None, *, quiet: bool) -> None:
    if not names:
        return
    with Console(stderr=True).status("backfilling …") as status:
        while True:
            r = _call("ListTraitDefinitions", traits_pb2.ListTraitDefinitionsRequest(), token)
            running = [t for t in r.definitions if t.name in names and not t.backfill.done]
            if not running:
                return
            if not quiet:
                status.update(", ".join(f"{t.name}: {t.backfill.profiles_done}/{t.backfill.profiles_total}"
                                        for t in running))
            time.sleep(0.5)


@trait_group.command("list")
@JSON_OPTION
@TOKEN_OPTION
def trait_list(as_json: bool, token_: str | None) -> None:
    """Every trait definition, with its version and backfill."""
    r = _call("ListTraitDefinitions", traits_pb2.ListTraitDefinitionsRequest(), token_)
    if as_json:
        click.echo(json.dumps({"definitions": [definition_record(t) for t in r.definitions]}, ensure_ascii=False))
        return
    if not r.definitions:
        _out().print("no trait definitions (add some with `cdp trait apply -f traits.yaml`)")
        return
    t = Table(title="Declared computed traits", title_justify="left")
    for col in ("name", "computes", "version", "backfill", "updated"):
        t.add_column(col, no_wrap=col in ("name", "version"))
    for d in r.definitions:
        t.add_row(escape(d.name), escape(_what(d)), str(d.version), _backfill_text(d), iso(d.updated_at) or "-")
    _out().print(t)


@trait_group.command("delete")
@click.argument("name")
@TOKEN_OPTION
def trait_delete(name: str, token_: str | None) -> None:
    """Delete a trait definition: its values are no longer served."""
    try:
        _call("DeleteTraitDefinition", traits_pb2.DeleteTraitDefinitionRequest(name=name), token_,
              not_found=f"no trait definition named {name!r} (`cdp trait list` shows them)")
    except Refused as e:
        raise client.CliError(e.message) from None
    _out().print(f"deleted trait definition {escape(name)}")
