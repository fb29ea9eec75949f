"""`cdp identity …`: the identity graph over cdp.identity.v1.IdentityService — rules, graphs,
merges with their provenance, splits, forgetting, the export and the review candidates."""

from __future__ import annotations

import asyncio
import json
import re
from typing import IO, Any

import click
import grpc
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cdp.common.v1 import identifier_pb2
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc

from . import client
from .output import write_lines, write_stream
from .render import iso

SERVICE = "identity"
TOKEN_HELP = ("Bearer token (profiles:read; profiles:write to change anything) "
              "(default: env CDP_TOKEN, else .cdp/token).")
IDENTIFIER_HELP = "Find the profile by one of its identifiers, TYPE:VALUE (e.g. email:ada@example.com)."
MAX_PAGE = 1000  # the service's largest page
WRITE_TIMEOUT_S = client.RPC_TIMEOUT_S * 6  # a split re-resolves the profile's events


def _out() -> Console:
    return Console(soft_wrap=True)


def _err() -> Console:
    return Console(stderr=True, soft_wrap=True)


# --- TYPE:VALUE and profile references ------------------------------------------------


def parse_identifier(text: str, *, param_hint: str = "TYPE:VALUE") -> identifier_pb2.Identifier:
    """TYPE:VALUE split on the first colon (a value may hold colons, e.g. a URN or an IPv6
    device id). The type is lower-cased and trimmed; the value is sent as given (the service
    normalizes it: e-mails lower-cased, phones to E.164, …)."""
    type_, sep, value = text.partition(":")
    type_ = type_.strip().lower()
    example = "e.g. email:ada@example.com or user_id:u-1"
    if not sep:
        raise click.BadParameter(f"{text!r} is not TYPE:VALUE: no colon ({example})", param_hint=param_hint)
    if not type_:
        raise click.BadParameter(f"{text!r} is not TYPE:VALUE: the type before the colon is empty ({example})",
                                 param_hint=param_hint)
    if not re.fullmatch(r"[a-z][a-z0-9_]*", type_):
        raise click.BadParameter(f"{text!r} is not TYPE:VALUE: the type {type_!r} is not an identifier type name "
                                 f"(letters, digits, underscores; {example})", param_hint=param_hint)
    if not value.strip():
        raise click.BadParameter(f"{text!r} is not TYPE:VALUE: the value after the colon is empty ({example})",
                                 param_hint=param_hint)
    return identifier_pb2.Identifier(type=type_, value=value)


def show_identifier(i: identifier_pb2.Identifier) -> str:
    return f"{i.type}:{i.value}"


def profile_ref(profile_id: str | None, identifier: str | None) -> identity_pb2.ProfileRef:
    """Exactly one of PROFILE_ID and --identifier TYPE:VALUE."""
    if (profile_id is None) == (identifier is None):
        raise click.UsageError("give a PROFILE_ID or --identifier TYPE:VALUE (exactly one)")
    if identifier is not None:
        return identity_pb2.ProfileRef(identifier=parse_identifier(identifier, param_hint="--identifier"))
    if not profile_id.strip():
        raise click.BadParameter("must not be empty", param_hint="PROFILE_ID")
    return identity_pb2.ProfileRef(profile_id=profile_id)


def describe(ref: identity_pb2.ProfileRef) -> str:
    if ref.WhichOneof("lookup") == "identifier":
        return f"identifier {show_identifier(ref.identifier)}"
    return f"profile id {ref.profile_id}"


# --- calls ----------------------------------------------------------------------------


class Refused(client.CliError):
    """The service refused the request as invalid (INVALID_ARGUMENT); the message names the field."""


def _refused(details: str, fields: dict[str, str]) -> str:
    """The service's message ("field: what is wrong") with the request's field names put in
    the words the operator typed (`identifiers[1]` -> `--split email:x`)."""
    field, sep, rest = details.partition(": ")
    if sep:
        for prefix, said in sorted(fields.items(), key=lambda kv: -len(kv[0])):
            if field == prefix or field.startswith(prefix + "."):
                return f"{said}: {rest}"
    return details


def _call(method: str, request, token: str | None, *, timeout: float = client.RPC_TIMEOUT_S,
          fields: dict[str, str] | None = None, not_found: str | None = None):
    """One unary call; errors become CliErrors: INVALID_ARGUMENT names the field at fault,
    NOT_FOUND says what was looked up."""
    tok = client.resolve_token(token)

    async def go():
        async with client.stub(SERVICE, identity_pb2_grpc.IdentityServiceStub, tok) as s:
            return await getattr(s, method)(request, timeout=timeout)

    try:
        return asyncio.run(go())
    except grpc.aio.AioRpcError as e:
        raise _error(e, fields or {}, not_found) from None


def _error(e: grpc.aio.AioRpcError, fields: dict[str, str], not_found: str | None) -> client.CliError:
    details = e.details() or e.code().name
    if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
        return Refused(_refused(details, fields))
    if e.code() == grpc.StatusCode.FAILED_PRECONDITION:  # e.g. the profile was merged away meanwhile
        return client.CliError(f"{_refused(details, fields)} (try again)")
    if e.code() == grpc.StatusCode.NOT_FOUND:
        return client.CliError(not_found or _refused(details, fields))
    if e.code() == grpc.StatusCode.UNIMPLEMENTED:
        return client.CliError(f"the identity service at {client.service_addr(SERVICE)} does not serve this "
                               "call (an older version?)")
    return client.rpc_error(SERVICE, e)


def _ref_fields(ref: identity_pb2.ProfileRef) -> dict[str, str]:
    if ref.WhichOneof("lookup") == "identifier":
        return {"profile.identifier": f"--identifier {show_identifier(ref.identifier)}", "profile": "PROFILE_ID"}
    return {"profile.profile_id": f"PROFILE_ID {ref.profile_id}", "profile": "PROFILE_ID"}


def _not_found(ref: identity_pb2.ProfileRef) -> str:
    if ref.WhichOneof("lookup") == "identifier":
        return f"no profile has the identifier {show_identifier(ref.identifier)}"
    hint = ""
    if ":" in ref.profile_id:
        hint = f" (to look a profile up by an identifier: --identifier {ref.profile_id})"
    return f"no profile with id {ref.profile_id}{hint}"


# --- JSON shapes ----------------------------------------------------------------------


def ident_dict(i: identifier_pb2.Identifier) -> dict[str, str]:
    return {"type": i.type, "value": i.value}


def _details(text: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def merge_to_dict(m: identity_pb2.Merge) -> dict[str, Any]:
    return {"merge_id": m.merge_id, "survivor_profile_id": m.survivor_profile_id,
            "merged_profile_id": m.merged_profile_id, "rule": m.rule,
            "identifier": ident_dict(m.identifier) if m.HasField("identifier") and m.identifier.type else None,
            "event_id": m.event_id, "confidence": m.confidence, "survivor_reason": m.survivor_reason,
            "details": _details(m.details_json), "merged_at": iso(m.merged_at),
            "undone_by_split": m.undone_by_split or None}


def graph_to_dict(g: identity_pb2.IdentityGraph) -> dict[str, Any]:
    return {"profile_id": g.profile_id, "event_count": g.event_count,
            "identifiers": [{**ident_dict(i.identifier), "first_event_id": i.first_event_id, "first_seq": i.first_seq}
                            for i in g.identifiers],
            "merged_profile_ids": list(g.merged_profile_ids),
            "merges": [merge_to_dict(m) for m in g.merges]}


def entry_to_dict(e: identity_pb2.ProfileGraphEntry) -> dict[str, Any]:
    return {"profile_id": e.profile_id, "identifiers": [ident_dict(i) for i in e.identifiers]}


def candidate_to_dict(c: identity_pb2.Candidate) -> dict[str, Any]:
    return {"profile_id": c.profile_id, "other_profile_id": c.other_profile_id, "probability": c.probability,
            "weight": c.weight, "details": _details(c.details_json), "event_id": c.event_id,
            "found_at": iso(c.found_at)}


def rules_to_dict(r: identity_pb2.Rules, *, dry_run: bool = False) -> dict[str, Any]:
    return {"version": None if dry_run else r.version, "applied_at": iso(r.applied_at), "dry_run": dry_run,
            "yaml": r.yaml}


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False))


# --- rich views -----------------------------------------------------------------------


def merges_view(merges: list[dict[str, Any]], *, title: str) -> Group:
    """One block per merge (readable at any terminal width): what merged into what, when,
    and its provenance."""
    parts: list = [Text(title, style="bold")]
    for m in merges:
        head = Text.assemble(("● ", "cyan"), (m["merged_at"] or "-", "dim"), "  ",
                             (m["merged_profile_id"], "bold"), " merged into ", (m["survivor_profile_id"], "bold"),
                             no_wrap=False)
        if m["undone_by_split"]:
            head.append(f"  (undone by split {m['undone_by_split']})", style="yellow")
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column()
        ident = m["identifier"]
        grid.add_row("    rule", Text(f"{m['rule']} (confidence {m['confidence']:.4g})"))
        grid.add_row("    identifier", Text(f"{ident['type']}:{ident['value']}" if ident else "-"))
        grid.add_row("    event", Text(m["event_id"] or "-"))
        grid.add_row("    survivor", Text(m["survivor_reason"] or "-"))
        if m["details"] is not None:
            grid.add_row("    details", Text(m["details"] if isinstance(m["details"], str)
                                             else json.dumps(m["details"], ensure_ascii=False)))
        grid.add_row("    merge id", Text(m["merge_id"], style="dim"))
        parts += [head, grid]
    return Group(*parts)


def graph_view(d: dict[str, Any]) -> Panel:
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("events", str(d["event_count"]))
    summary.add_row("identifiers", str(len(d["identifiers"])))
    summary.add_row("merged profiles", ", ".join(d["merged_profile_ids"]) or "none")

    idents = Table(title="Identifiers (and the event that first brought each)", title_justify="left")
    idents.add_column("type", style="cyan", no_wrap=True)
    idents.add_column("value")
    idents.add_column("first event", no_wrap=True)
    idents.add_column("log seq", justify="right", no_wrap=True, style="dim")
    for i in d["identifiers"]:
        idents.add_row(escape(i["type"]), escape(i["value"]), escape(i["first_event_id"] or "-"),
                       str(i["first_seq"] or "-"))
    parts: list = [summary, idents]
    if d["merges"]:
        parts.append(merges_view(d["merges"], title="Merges that built it (oldest first)"))
    return Panel(Group(*parts), title=f"[bold]Identity graph[/bold] {d['profile_id']}", title_align="left")


def entries_table(entries: list[dict[str, Any]], title: str) -> Table:
    t = Table(title=title, title_justify="left")
    t.add_column("profile", no_wrap=True)
    t.add_column("identifiers")
    for e in entries:
        t.add_row(escape(e["profile_id"]), escape(", ".join(f"{i['type']}:{i['value']}" for i in e["identifiers"])))
    return t


# --- the commands ---------------------------------------------------------------------

TOKEN_OPTION = click.option("--token", "token_", help=TOKEN_HELP)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
PROFILE_ARGUMENT = click.argument("profile_id", metavar="[PROFILE_ID]", required=False)
IDENTIFIER_OPTION = click.option("--identifier", "identifier", metavar="TYPE:VALUE", help=IDENTIFIER_HELP)


@click.group("identity")
def identity_group() -> None:
    """The identity graph: who an identifier belongs to, why profiles merged, splits, forgetting, rules."""


# rules


@identity_group.group("rules")
def rules_group() -> None:
    """The identity rules: limits, priority, blocked values, merge protection, matching."""


@rules_group.command("apply")
@click.option("-f", "--file", "path", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="The rules as YAML (or JSON); - reads stdin.")
@click.option("--dry-run", is_flag=True, help="Validate only; nothing is applied.")
@JSON_OPTION
@TOKEN_OPTION
def rules_apply(path: str, dry_run: bool, as_json: bool, token_: str | None) -> None:
    """Validate and activate new identity rules (from then on: existing profiles are not rebuilt).

    Prints the version applied. Rules the service refuses are reported with the field at
    fault (e.g. limits.user_id, blocked[2].regex); nothing is applied then."""
    name = "stdin" if path == "-" else path
    try:
        with click.open_file(path, "r", encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise client.CliError(f"cannot read {name}: {e}") from None
    if not text.strip():
        raise client.CliError(f"{name} is empty: give the whole rules document (`cdp identity rules show` "
                              "prints the active one)")
    try:
        r = _call("ApplyRules", identity_pb2.ApplyRulesRequest(yaml=text, dry_run=dry_run), token_)
    except Refused as e:  # the service names the field at fault: "limits.user_id: must be …"
        field, sep, rest = e.message.partition(": ")
        what = rest if sep and field == "rules" else e.message
        raise client.CliError(f"{name} refused, nothing applied: {what}") from None
    if as_json:
        _echo_json(rules_to_dict(r, dry_run=dry_run))
    elif dry_run:
        _out().print(f"{escape(name)}: valid (dry run, nothing applied)")
    else:
        at = iso(r.applied_at)
        _out().print(f"applied identity rules version {r.version}" + (f" at {at}" if at else ""))


@rules_group.command("show")
@JSON_OPTION
@TOKEN_OPTION
def rules_show(as_json: bool, token_: str | None) -> None:
    """The active rules as YAML on stdout (edit and `rules apply -f` them); the version on stderr."""
    r = _call("GetRules", identity_pb2.GetRulesRequest(), token_)
    if as_json:
        _echo_json(rules_to_dict(r))
        return
    if r.version:
        _err().print(f"# identity rules version {r.version}, applied at {iso(r.applied_at) or '?'}")
    else:
        _err().print("# the built-in default rules (none applied yet)")
    click.echo(r.yaml, nl=not r.yaml.endswith("\n"))


# resolve and graph


@identity_group.command("resolve")
@click.argument("identifier", metavar="TYPE:VALUE")
@JSON_OPTION
@TOKEN_OPTION
def resolve(identifier: str, as_json: bool, token_: str | None) -> None:
    """The profile an identifier belongs to, with every identifier of that profile."""
    ident = parse_identifier(identifier)
    resp = _call("ResolveIdentifier", identity_pb2.ResolveIdentifierRequest(identifier=ident), token_,
                 fields={"identifier": show_identifier(ident)},
                 not_found=f"no profile has the identifier {show_identifier(ident)}")
    d = {"profile_id": resp.profile_id, "identifiers": [ident_dict(i) for i in resp.identifiers]}
    if as_json:
        _echo_json(d)
        return
    out = _out()
    out.print(f"[bold]{escape(resp.profile_id)}[/bold]")
    t = Table()
    t.add_column("type", style="cyan", no_wrap=True)
    t.add_column("value")
    for i in d["identifiers"]:
        t.add_row(escape(i["type"]), escape(i["value"]))
    out.print(t)


@identity_group.command("graph")
@PROFILE_ARGUMENT
@IDENTIFIER_OPTION
@JSON_OPTION
@TOKEN_OPTION
def graph(profile_id: str | None, identifier: str | None, as_json: bool, token_: str | None) -> None:
    """A profile's identity graph: its identifiers with the event that brought each, the
    profiles merged into it, and the merges that built it with their provenance (rule,
    identifier, event, confidence, why this survivor).

    A merged profile's id shows its survivor's graph."""
    ref = profile_ref(profile_id, identifier)
    g = _call("GetIdentityGraph", identity_pb2.GetIdentityGraphRequest(profile=ref), token_,
              fields=_ref_fields(ref), not_found=_not_found(ref))
    d = graph_to_dict(g)
    if as_json:
        _echo_json(d)
    else:
        _out().print(graph_view(d))


@identity_group.command("merges")
@PROFILE_ARGUMENT
@IDENTIFIER_OPTION
@click.option("--limit", type=click.IntRange(min=1), help="At most this many (default: all).")
@JSON_OPTION
@TOKEN_OPTION
def merges(profile_id: str | None, identifier: str | None, limit: int | None, as_json: bool,
           token_: str | None) -> None:
    """Every merge that involves a profile (as survivor or as merged), newest first,
    including merges a split undid."""
    ref = profile_ref(profile_id, identifier)
    got = list_merges(ref, limit, token_)
    if as_json:
        _echo_json({"profile": describe(ref), "merges": got})
        return
    out = _out()
    if not got:
        out.print(f"no merges involve the profile of {escape(describe(ref))}")
        return
    out.print(merges_view(got, title=f"Merges involving the profile of {describe(ref)} (newest first)"))


def list_merges(ref: identity_pb2.ProfileRef, limit: int | None, token: str | None) -> list[dict[str, Any]]:
    """Pages through ListMerges (offset pages: a merge made meanwhile can shift one into the
    next page, so they are de-duplicated by id)."""
    tok = client.resolve_token(token)

    async def go() -> list[dict[str, Any]]:
        seen: set[str] = set()
        out: list[dict[str, Any]] = []
        page_token = ""
        async with client.stub(SERVICE, identity_pb2_grpc.IdentityServiceStub, tok) as s:
            while limit is None or len(out) < limit:
                size = MAX_PAGE if limit is None else min(MAX_PAGE, limit - len(out))
                resp = await s.ListMerges(identity_pb2.ListMergesRequest(profile=ref, page_size=size,
                                                                         page_token=page_token),
                                          timeout=client.RPC_TIMEOUT_S)
                for m in resp.merges:
                    if m.merge_id not in seen and (limit is None or len(out) < limit):
                        seen.add(m.merge_id)
                        out.append(merge_to_dict(m))
                if not resp.next_page_token:
                    break
                page_token = resp.next_page_token
        return out

    try:
        return asyncio.run(go())
    except grpc.aio.AioRpcError as e:
        raise _error(e, _ref_fields(ref), _not_found(ref)) from None


# split and forget


@identity_group.command("split")
@PROFILE_ARGUMENT
@IDENTIFIER_OPTION
@click.option("--split", "splits", metavar="TYPE:VALUE", multiple=True, required=True,
              help="An identifier to separate from the rest of the profile (repeatable; each must be on it, "
                   "and at least one identifier must stay).")
@click.option("--reason", default="", help="Why (recorded with the split).")
@JSON_OPTION
@TOKEN_OPTION
def split(profile_id: str | None, identifier: str | None, splits: tuple[str, ...], reason: str, as_json: bool,
          token_: str | None) -> None:
    """Undo a wrong merge: separate identifiers from a profile. Both sides are rebuilt from
    their own events, the separation is kept (they never merge again through the same
    identifiers), and the profiles downstream follow (cdp.identity.split)."""
    ref = profile_ref(profile_id, identifier)
    named = [parse_identifier(s, param_hint="--split") for s in splits]
    fields = {**_ref_fields(ref), "identifiers": "--split"}
    fields.update({f"identifiers[{n}]": f"--split {show_identifier(i)}" for n, i in enumerate(named)})
    resp = _call("SplitProfile", identity_pb2.SplitProfileRequest(profile=ref, identifiers=named, reason=reason),
                 token_, timeout=WRITE_TIMEOUT_S, fields=fields, not_found=_not_found(ref))
    d = {"split_id": resp.split_id, "events_rebuilt": resp.events_rebuilt,
         "profiles": [entry_to_dict(p) for p in resp.profiles]}
    if as_json:
        _echo_json(d)
        return
    out = _out()
    out.print(f"split {escape(resp.split_id)}: {resp.events_rebuilt} events re-resolved")
    out.print(entries_table(d["profiles"], "The profiles as rebuilt"))


@identity_group.command("forget")
@PROFILE_ARGUMENT
@IDENTIFIER_OPTION
@click.option("--reason", default="", help="Why (e.g. the ticket of the erasure request).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@JSON_OPTION
@TOKEN_OPTION
def forget(profile_id: str | None, identifier: str | None, reason: str, yes: bool, as_json: bool,
           token_: str | None) -> None:
    """Erase a person from the identity graph (GDPR/CCPA). Hashed tombstones are kept so a
    replay does not bring them back; the other services are told (cdp.identity.forgotten).
    Cannot be undone; asks for confirmation unless --yes."""
    ref = profile_ref(profile_id, identifier)
    if not yes:
        g = _call("GetIdentityGraph", identity_pb2.GetIdentityGraphRequest(profile=ref), token_,
                  fields=_ref_fields(ref), not_found=_not_found(ref))
        err = _err()
        err.print(f"profile {escape(g.profile_id)}: {len(g.identifiers)} identifiers, {g.event_count} events, "
                  f"{len(g.merged_profile_ids)} merged profiles")
        for i in g.identifiers[:10]:
            err.print(f"  {escape(show_identifier(i.identifier))}")
        if len(g.identifiers) > 10:
            err.print(f"  … and {len(g.identifiers) - 10} more")
        try:
            confirmed = click.confirm("Forget this person? This cannot be undone", default=False, err=True)
        except click.Abort:  # no terminal, stdin closed, Ctrl-C
            confirmed = False
        if not confirmed:
            raise client.CliError("not confirmed: nothing forgotten (--yes forgets without asking)")
        # forget exactly the profile shown, even if the identifier moved meanwhile
        ref = identity_pb2.ProfileRef(profile_id=g.profile_id)
    resp = _call("ForgetProfile", identity_pb2.ForgetProfileRequest(profile=ref, reason=reason), token_,
                 timeout=WRITE_TIMEOUT_S, fields=_ref_fields(ref), not_found=_not_found(ref))
    d = {"profile_ids": list(resp.profile_ids), "identifiers_forgotten": resp.identifiers_forgotten}
    if as_json:
        _echo_json(d)
    else:
        _out().print(f"forgot {len(d['profile_ids'])} profile(s) ({', '.join(d['profile_ids'])}): "
                     f"{d['identifiers_forgotten']} identifiers")


# export and candidates


@identity_group.command("export")
@click.option("--jsonl", is_flag=True, help="JSON lines: one object per profile (the only format; required).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, allow_dash=True),
              help="Write to this file (written beside it, then renamed when complete). Default: stdout.")
@TOKEN_OPTION
def export(jsonl: bool, out_path: str | None, token_: str | None) -> None:
    """Every live profile with its identifiers, streamed: one line per profile,
    {"profile_id": ..., "identifiers": [{"type": ..., "value": ...}, ...]}.

    The service reads one consistent snapshot; the count goes to stderr."""
    if not jsonl:
        raise click.UsageError("choose the format: --jsonl (one JSON object per profile a line)")
    tok = client.resolve_token(token_)
    write_lines(out_path, lambda f: _export_to(f, tok), "profiles")


def _export_to(f: IO[str], token: str) -> int:
    """Writes each profile as it arrives (nothing is held beyond one profile)."""

    async def go() -> int:
        async with client.stub(SERVICE, identity_pb2_grpc.IdentityServiceStub, token) as s:
            return await write_stream(f, s.ExportGraph(identity_pb2.ExportGraphRequest()), entry_to_dict)

    try:
        return asyncio.run(go())
    except grpc.aio.AioRpcError as e:
        raise _error(e, {}, None) from None


@identity_group.command("candidates")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, help="At most this many.")
@JSON_OPTION
@TOKEN_OPTION
def candidates(limit: int, as_json: bool, token_: str | None) -> None:
    """Probabilistic match candidates below the merge threshold, for review, best first."""
    tok = client.resolve_token(token_)

    async def go() -> tuple[list[dict[str, Any]], bool]:
        got: list[dict[str, Any]] = []
        page_token = ""
        more = False
        async with client.stub(SERVICE, identity_pb2_grpc.IdentityServiceStub, tok) as s:
            while len(got) < limit:
                resp = await s.ListCandidates(identity_pb2.ListCandidatesRequest(
                    page_size=min(MAX_PAGE, limit - len(got)), page_token=page_token), timeout=client.RPC_TIMEOUT_S)
                got.extend(candidate_to_dict(c) for c in resp.candidates)
                more = bool(resp.next_page_token)
                if not more:
                    break
                page_token = resp.next_page_token
        return got[:limit], more

    try:
        got, more = asyncio.run(go())
    except grpc.aio.AioRpcError as e:
        raise _error(e, {}, None) from None
    if as_json:
        _echo_json({"candidates": got, "more": more})
        return
    out = _out()
    if not got:
        out.print("no match candidates to review")
        return
    out.print(Text("Match candidates below the merge threshold (best first)", style="bold"))
    for c in got:
        out.print(Text.assemble(("● ", "cyan"), (c["profile_id"], "bold"), " ↔ ", (c["other_profile_id"], "bold"),
                                f"  probability {c['probability']:.4f}, weight {c['weight']:.2f}", no_wrap=False))
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column()
        grid.add_row("    event", Text(c["event_id"] or "-"))
        grid.add_row("    found at", Text(c["found_at"] or "-"))
        if c["details"] is not None:
            grid.add_row("    details", Text(c["details"] if isinstance(c["details"], str)
                                             else json.dumps(c["details"], ensure_ascii=False)))
        out.print(grid)
    if more:
        out.print(f"[dim]there are more: --limit {limit * 2} shows more[/dim]")


@identity_group.command("review")
@click.argument("profile_id")
@click.argument("other_profile_id")
@click.option("--accept/--reject", "accept", required=True, help="Merge the pair, or dismiss it for good.")
@click.option("--reason", default="", help="Why (kept with the merge).")
@JSON_OPTION
@TOKEN_OPTION
def review(profile_id: str, other_profile_id: str, accept: bool, reason: str, as_json: bool,
           token_: str | None) -> None:
    """Accept (merge, rule "review") or reject a match candidate from `cdp identity candidates`."""
    r = _call("ReviewCandidate", identity_pb2.ReviewCandidateRequest(
        profile_id=profile_id, other_profile_id=other_profile_id, accept=accept, reason=reason), token_,
        not_found=f"no open candidate pair {profile_id} ↔ {other_profile_id}")
    if as_json:
        _echo_json({"status": r.status, "survivor_profile_id": r.survivor_profile_id,
                    "merged_profile_id": r.merged_profile_id})
    elif r.status == "accepted":
        _out().print(f"accepted: {r.merged_profile_id} merged into {r.survivor_profile_id}")
    else:
        _out().print("rejected: the pair will not be listed again")


@identity_group.group("match-model")
def match_model_group() -> None:
    """The probabilistic matching model (m/u probabilities and prior)."""


@match_model_group.command("estimate")
@click.option("--max-records", type=click.IntRange(1, 200_000), default=50_000, show_default=True,
              help="Stored offline records sampled.")
@click.option("--apply", is_flag=True, help="Make it the active model (a new rules version).")
@JSON_OPTION
@TOKEN_OPTION
def match_model_estimate(max_records: int, apply: bool, as_json: bool, token_: str | None) -> None:
    """Learn the model from the stored offline records by EM (no labels needed); prints it as
    YAML (the rules' matching.model); --apply activates it."""
    r = _call("EstimateMatchModel", identity_pb2.EstimateMatchModelRequest(max_records=max_records, apply=apply),
              token_, timeout=max(client.RPC_TIMEOUT_S, 300.0))
    if as_json:
        _echo_json({"records": r.records, "version": r.version or None, "model_yaml": r.model_yaml})
        return
    _err().print(f"# estimated from {r.records} offline records"
                 + (f"; active as identity rules version {r.version}" if r.version else " (not applied)"))
    click.echo(r.model_yaml, nl=not r.model_yaml.endswith("\n"))
