"""`cdp profile …`: profiles and their timelines over cdp.profile.v1.ProfileService."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import grpc
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cdp.common.v1 import identifier_pb2
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_core import envelope

from . import client, render
from .client import RPC_TIMEOUT_S, CliError, rpc_error, stub
from .identity import parse_identifier
from .output import quiet_broken_pipe, write_out

SERVICE = "profile"
TOKEN_HELP = "Bearer token (profiles:read) (default: env CDP_TOKEN, else .cdp/token)."
MAX_PAGE = 1000  # the service's largest page
KINDS = ("track", "identify", "page", "screen", "group", "alias")

# --flag -> identifier type; "profile_id" looks up by the profile's own id.
LOOKUPS = {
    "user_id": "user_id",
    "email": "email",
    "anonymous_id": "anonymous_id",
    "profile_id": "profile_id",
}


def _out() -> Console:
    return Console(soft_wrap=True)


# --- look-ups ---------------------------------------------------------------------------


def lookup_request(kind: str, value: str) -> profile_pb2.GetProfileRequest:
    if kind not in LOOKUPS:
        raise ValueError(f"unknown lookup {kind!r}")
    if not value:
        raise CliError(f"--{kind.replace('_', '-')} must not be empty")
    if kind == "profile_id":
        return profile_pb2.GetProfileRequest(profile_id=value)
    return profile_pb2.GetProfileRequest(identifier=identifier_pb2.Identifier(type=LOOKUPS[kind], value=value))


def describe(req) -> str:
    if req.WhichOneof("lookup") == "profile_id":
        return f"profile_id={req.profile_id}"
    return f"{req.identifier.type}={req.identifier.value}"


def choose_lookup(flags: dict[str, str | None], identifier: str | None,
                  positional: tuple[str, str | None] | None = None) -> profile_pb2.ProfileLookup:
    """Exactly one of the look-up flags (--user-id, --email, --anonymous-id, --profile-id),
    --identifier TYPE:VALUE, or the positional PROFILE_ID."""
    given = {k: v for k, v in flags.items() if v is not None}
    if identifier is not None:
        given["identifier"] = identifier
    if positional is not None and positional[1] is not None:
        given[positional[0]] = positional[1]
    names = [*(["PROFILE_ID"] if positional else []), "--identifier TYPE:VALUE",
             *(f"--{k.replace('_', '-')}" for k in flags)]
    if len(given) != 1:
        raise click.UsageError(f"give exactly one of {', '.join(names)}")
    (kind, value), = given.items()
    if kind == "identifier":
        return profile_pb2.ProfileLookup(identifier=parse_identifier(value, param_hint="--identifier"))
    if not value.strip():
        hint = "PROFILE_ID" if positional and kind == positional[0] else f"--{kind.replace('_', '-')}"
        raise click.BadParameter("must not be empty", param_hint=hint)
    if kind in ("profile_id", "PROFILE_ID"):
        return profile_pb2.ProfileLookup(profile_id=value)
    return profile_pb2.ProfileLookup(identifier=identifier_pb2.Identifier(type=LOOKUPS[kind], value=value))


class ProfileNotFound(CliError):
    pass


async def get_profile(req: profile_pb2.GetProfileRequest, token: str) -> profile_pb2.Profile:
    """The profile, or a CliError (ProfileNotFound for NOT_FOUND)."""
    async with stub("profile", profile_pb2_grpc.ProfileServiceStub, token) as s:
        try:
            resp = await s.GetProfile(req, timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                raise ProfileNotFound(f"no profile found for {describe(req)}") from None
            if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise CliError(e.details() or "refused") from None
            raise rpc_error("profile", e) from None
    return resp.profile


# --- JSON shapes ----------------------------------------------------------------------------


def _json_or_none(text: str) -> Any:
    return render.trait_value(text) if text else None


def profile_record(p: profile_pb2.Profile) -> dict[str, Any]:
    """The one JSON shape of a profile (`profile get --json`, `export profiles`): profile_id,
    identifiers, traits, computed (event_count, first_seen, last_seen, then the computed
    traits by name), merged_profile_ids."""
    d = render.profile_to_dict(p)
    computed = _json_or_none(p.computed_json)
    if isinstance(computed, dict):
        d["computed"].update(computed)
    return d


def event_record(e: profile_pb2.TimelineEvent) -> dict[str, Any]:
    return {
        "event_id": e.event_id,
        "kind": e.kind,
        "event": e.event or None,
        "occurred_at": render.iso(e.occurred_at),
        "received_at": render.iso(e.received_at),
        "channel": e.channel or None,
        "source_id": e.source_id or None,
        "source_kind": e.source_kind or None,
        "properties": _json_or_none(e.properties_json),
        "traits": _json_or_none(e.traits_json),
        "context": _json_or_none(e.context_json),
    }


# --- times --------------------------------------------------------------------------------

_RELATIVE = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, *, param_hint: str, now: datetime | None = None) -> datetime:
    """RFC 3339 / ISO 8601 (`2026-03-01`, `2026-03-01T12:00:00Z`; no zone = UTC) or an age
    (`30m`, `24h`, `7d`, `2w`: that long before now)."""
    t = text.strip()
    m = _RELATIVE.fullmatch(t)
    if m:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a time: give e.g. 2026-03-01, 2026-03-01T12:00:00Z, or an age "
                                 "such as 30m, 24h, 7d", param_hint=param_hint) from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


# --- calls -----------------------------------------------------------------------------------

_TIMELINE_FIELDS = {"kinds": "--kind", "event_names": "--event", "since": "--since", "until": "--until",
                    "identifier": "--identifier", "profile_id": "PROFILE_ID"}


def _said(details: str) -> str:
    """The service's "field: what is wrong" in the words of the command line."""
    field, sep, rest = details.partition(": ")
    if sep:
        base = field.split("[")[0].split(".")[0]
        if base in _TIMELINE_FIELDS:
            return f"{_TIMELINE_FIELDS[base]}: {rest}"
    return details


def _not_found(lookup: profile_pb2.ProfileLookup) -> str:
    if lookup.WhichOneof("lookup") == "identifier":
        return f"no profile has the identifier {lookup.identifier.type}:{lookup.identifier.value}"
    hint = ""
    if ":" in lookup.profile_id:
        hint = f" (to look a profile up by an identifier: --identifier {lookup.profile_id})"
    return f"no profile with id {lookup.profile_id}{hint}"


def _error(e: grpc.aio.AioRpcError, lookup: profile_pb2.ProfileLookup) -> CliError:
    if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
        return CliError(_said(e.details() or "refused"))
    if e.code() == grpc.StatusCode.NOT_FOUND:
        return CliError(_not_found(lookup))
    if e.code() == grpc.StatusCode.UNIMPLEMENTED:
        return CliError(f"the profile service at {client.service_addr(SERVICE)} does not serve this call "
                        "(an older version?)")
    return rpc_error(SERVICE, e)


def timeline_request(lookup: profile_pb2.ProfileLookup, *, kinds=(), events=(), since: datetime | None = None,
                     until: datetime | None = None) -> profile_pb2.GetTimelineRequest:
    req = profile_pb2.GetTimelineRequest(kinds=list(kinds), event_names=list(events))
    if lookup.WhichOneof("lookup") == "identifier":
        req.identifier.CopyFrom(lookup.identifier)
    else:
        req.profile_id = lookup.profile_id
    if since is not None:
        req.since.CopyFrom(envelope.ts(since))
    if until is not None:
        req.until.CopyFrom(envelope.ts(until))
    return req


def fetch_timeline(req: profile_pb2.GetTimelineRequest, lookup: profile_pb2.ProfileLookup, limit: int, token: str,
                   on_event: Callable[[profile_pb2.TimelineEvent], None]) -> tuple[str, str, bool]:
    """Pages through GetTimeline, newest first, handing each event to `on_event` as its page
    arrives, until `limit` events or the end. Returns (profile id, merged id asked for, more)."""

    async def go() -> tuple[str, str, bool]:
        got, profile_id, merged = 0, "", ""
        async with stub(SERVICE, profile_pb2_grpc.ProfileServiceStub, token) as s:
            while True:
                req.page_size = min(MAX_PAGE, limit - got)
                page = await s.GetTimeline(req, timeout=RPC_TIMEOUT_S)
                profile_id, merged = page.profile_id, page.merged_profile_id
                for e in page.events:
                    on_event(e)
                got += len(page.events)
                if not page.next_page_token:
                    return profile_id, merged, False
                if got >= limit:
                    return profile_id, merged, True
                req.page_token = page.next_page_token

    try:
        return asyncio.run(go())
    except grpc.aio.AioRpcError as e:
        raise _error(e, lookup) from None


# --- commands ------------------------------------------------------------------------------------

TOKEN_OPTION = click.option("--token", "token_", help=TOKEN_HELP)
IDENTIFIER_OPTION = click.option("--identifier", "identifier", metavar="TYPE:VALUE",
                                 help="Find the profile by one of its identifiers, TYPE:VALUE "
                                      "(e.g. email:ada@example.com, crm_id:42).")


@click.group("profile")
def profile_group() -> None:
    """Customer profiles and their timelines."""


@profile_group.command("get")
@click.option("--user-id", help="Look up by user_id.")
@click.option("--email", help="Look up by email.")
@click.option("--anonymous-id", help="Look up by anonymous_id.")
@click.option("--profile-id", help="Look up by profile id.")
@IDENTIFIER_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--token", "token_", help="Bearer token (default: env CDP_TOKEN, else .cdp/token).")
def profile_get(user_id, email, anonymous_id, profile_id, identifier, as_json: bool, token_: str | None) -> None:
    """Show one profile, found by exactly one identifier or its id."""
    given = {k: v for k, v in
             {"user_id": user_id, "email": email, "anonymous_id": anonymous_id, "profile_id": profile_id}.items()
             if v is not None}
    if len(given) + (identifier is not None) != 1:
        raise click.UsageError("give exactly one of --user-id, --email, --anonymous-id, --profile-id, --identifier")
    if identifier is not None:
        req = profile_pb2.GetProfileRequest(identifier=parse_identifier(identifier, param_hint="--identifier"))
    else:
        (kind, value), = given.items()
        req = lookup_request(kind, value)
    p = asyncio.run(get_profile(req, client.resolve_token(token_)))
    if as_json:
        click.echo(json.dumps(profile_record(p), ensure_ascii=False))
    else:
        render.print_profile(p, as_json=False, console=_out())


@profile_group.command("timeline")
@click.argument("profile_id", required=False)
@IDENTIFIER_OPTION
@click.option("--user-id", help="Find the profile by user_id.")
@click.option("--email", help="Find the profile by email.")
@click.option("--anonymous-id", help="Find the profile by anonymous_id.")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(KINDS),
              help="Only events of this kind (repeatable).")
@click.option("--event", "events", multiple=True, metavar="NAME",
              help="Only events of this name: the track event or the page/screen name (repeatable).")
@click.option("--since", metavar="TIME", help="Events at or after TIME (2026-03-01, 2026-03-01T12:00:00Z, 7d, 24h).")
@click.option("--until", metavar="TIME", help="Events before TIME (same forms as --since).")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True,
              help="At most this many events (the newest).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--jsonl", "as_jsonl", is_flag=True, help="Print one JSON object per event a line, as they arrive.")
@TOKEN_OPTION
def timeline(profile_id, identifier, user_id, email, anonymous_id, kinds, events, since, until, limit: int,
             as_json: bool, as_jsonl: bool, token_: str | None) -> None:
    """Every event of a person across touchpoints, newest first (GetTimeline).

    The profile: PROFILE_ID, or --identifier TYPE:VALUE, --user-id, --email, --anonymous-id
    (exactly one). A merged profile id shows its survivor's timeline."""
    if as_json and as_jsonl:
        raise click.UsageError("give --json or --jsonl, not both")
    lookup = choose_lookup({"user_id": user_id, "email": email, "anonymous_id": anonymous_id}, identifier,
                           ("PROFILE_ID", profile_id))
    since_t = parse_time(since, param_hint="--since") if since is not None else None
    until_t = parse_time(until, param_hint="--until") if until is not None else None
    if since_t is not None and until_t is not None and until_t <= since_t:
        raise click.BadParameter("must be after --since", param_hint="--until")
    for i, name in enumerate(events):
        if not name.strip():
            raise click.BadParameter("must not be empty", param_hint=f"--event (#{i + 1})")
    req = timeline_request(lookup, kinds=kinds, events=events, since=since_t, until=until_t)
    tok = client.resolve_token(token_)
    if as_jsonl:
        def line(e: profile_pb2.TimelineEvent) -> None:
            sys.stdout.write(json.dumps(event_record(e), ensure_ascii=False, separators=(",", ":")) + "\n")
        try:
            fetch_timeline(req, lookup, limit, tok, line)
            sys.stdout.flush()
        except BrokenPipeError:  # `| head`: the reader has enough
            quiet_broken_pipe()
        return
    got: list[profile_pb2.TimelineEvent] = []
    pid, merged, more = fetch_timeline(req, lookup, limit, tok, got.append)
    if as_json:
        click.echo(json.dumps({"profile_id": pid, "merged_profile_id": merged or None,
                               "events": [event_record(e) for e in got], "more": more}, ensure_ascii=False))
        return
    _out().print(timeline_view(pid, merged, got, more, limit))


def _summary(e: profile_pb2.TimelineEvent, width: int = 80) -> str:
    data = _json_or_none(e.properties_json) or _json_or_none(e.traits_json)
    if not data:
        return ""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 1] + "…"


def timeline_view(pid: str, merged: str, events: list[profile_pb2.TimelineEvent], more: bool, limit: int) -> Table:
    title = f"Timeline of profile {pid}"
    if merged:
        title += f" (into which {merged} was merged)"
    t = Table(title=escape(title), title_justify="left")
    t.add_column("occurred at", no_wrap=True, style="dim")
    t.add_column("kind", style="cyan", no_wrap=True, min_width=8)
    t.add_column("event", no_wrap=True, min_width=14)
    t.add_column("channel", no_wrap=True, min_width=7)
    t.add_column("source", no_wrap=True, overflow="ellipsis", min_width=6)
    t.add_column("data", no_wrap=True, overflow="ellipsis", max_width=60)
    for e in events:
        t.add_row(render.iso(e.occurred_at) or "", e.kind, escape(e.event), escape(e.channel),
                  escape(e.source_kind or e.source_id), escape(_summary(e)))
    t.caption = (f"the newest {limit} events; more with --limit" if more
                 else f"{len(events)} event{'s' if len(events) != 1 else ''}")
    return t


# --- cdp profile access ----------------------------------------------------------------------------


def trait_record(t: profile_pb2.Trait) -> dict[str, Any]:
    return {"name": t.name, "value": render.trait_value(t.value_json), "updated_at": render.iso(t.updated_at),
            "event_id": t.event_id or None, "source_id": t.source_id or None, "source_kind": t.source_kind or None}


def person_record(p: profile_pb2.Person) -> dict[str, Any]:
    """The person part of the access answer (everything but the events)."""
    return {
        "profile_id": p.profile_id,
        "merged_profile_ids": list(p.merged_profile_ids),
        "generated_at": render.iso(p.generated_at),
        "identifiers": [{"type": i.type, "value": i.value} for i in p.identifiers],
        "traits": [trait_record(t) for t in p.traits],
        "computed": _json_or_none(p.computed_json) or {},
        "event_count": p.event_count,
        "first_seen": render.iso(p.first_seen),
        "last_seen": render.iso(p.last_seen),
        "accounts": [{"account_id": a.account_id, "first_linked_at": render.iso(a.first_linked_at),
                      "last_linked_at": render.iso(a.last_linked_at)} for a in p.accounts],
    }


def write_person_data(f, lookup: profile_pb2.ProfileLookup, token: str) -> tuple[str, int]:
    """Streams GetPersonData into `f` as one JSON object (the person's fields, then "events":
    one event a line, oldest first), never holding the events in memory. (profile id, events)."""

    async def go() -> tuple[str, int]:
        req = profile_pb2.GetPersonDataRequest()
        if lookup.WhichOneof("lookup") == "identifier":
            req.identifier.CopyFrom(lookup.identifier)
        else:
            req.profile_id = lookup.profile_id
        pid, n = "", 0
        async with stub(SERVICE, profile_pb2_grpc.ProfileServiceStub, token) as s:
            call = s.GetPersonData(req)
            try:
                async for part in call:
                    if part.HasField("person"):
                        pid = part.person.profile_id
                        head = json.dumps(person_record(part.person), ensure_ascii=False)
                        f.write(head[:-1] + ', "events": [')
                    for e in part.events:
                        f.write(("\n" if n == 0 else ",\n") + json.dumps(event_record(e), ensure_ascii=False))
                        n += 1
            finally:
                call.cancel()
        f.write("\n]}\n" if n else "]}\n")
        f.flush()
        return pid, n

    try:
        return asyncio.run(go())
    except grpc.aio.AioRpcError as e:
        raise _error(e, lookup) from None


@profile_group.command("access")
@click.argument("profile_id", required=False)
@IDENTIFIER_OPTION
@click.option("--email", help="Find the person by email.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, allow_dash=True),
              help="Write to this file (written beside it, then renamed when complete). Default: stdout.")
@TOKEN_OPTION
def access(profile_id, identifier, email, out_path: str | None, token_: str | None) -> None:
    """Everything the profile service holds about a person, as one JSON document: the answer
    to a GDPR / CCPA access request (GetPersonData).

    The person: PROFILE_ID, --identifier TYPE:VALUE or --email (exactly one). The document:
    profile_id, merged_profile_ids, generated_at, identifiers, traits (each with its value,
    time, event and source), computed, event_count, first_seen, last_seen, accounts, and
    events (every one, oldest first)."""
    lookup = choose_lookup({"email": email}, identifier, ("PROFILE_ID", profile_id))
    tok = client.resolve_token(token_)
    err = Console(stderr=True, soft_wrap=True)
    pid, n = write_out(out_path, lambda f: write_person_data(f, lookup, tok))
    if out_path is None or out_path == "-":
        err.print(f"the data held about profile {escape(pid)}: {n} event{'s' if n != 1 else ''}")
        return
    err.print(f"wrote the data held about profile {escape(pid)} ({n} event{'s' if n != 1 else ''}) "
              f"to {escape(out_path)}")


# --- cdp profile changes ----------------------------------------------------------------------------

RECONNECT_FOR_S = 60.0  # how long `changes` keeps trying to resume after the service went away
_RESUME = re.compile(r"from_sequence (\d+)")


def change_record(c: profile_pb2.ProfileChange) -> dict[str, Any]:
    return {"sequence": c.sequence, "event_id": c.event_id, "recorded_at": render.iso(c.recorded_at),
            "profile_id": c.change.profile_id, "event_count": c.change.event_count,
            "changed_traits": list(c.change.changed_traits),
            "linked_account_ids": list(c.change.linked_account_ids), "cause_event_id": c.change.event_id or None,
            "event_ids": list(c.change.event_ids)}


def change_line(c: profile_pb2.ProfileChange) -> str:
    parts = [f"#{c.sequence}", render.iso(c.recorded_at) or "-", c.change.profile_id,
             f"events={c.change.event_count}"]
    if len(c.change.event_ids) > 1:
        parts.append(f"applied={len(c.change.event_ids)}")
    if c.change.changed_traits:
        parts.append("traits=" + ",".join(c.change.changed_traits))
    if c.change.linked_account_ids:
        parts.append("accounts+=" + ",".join(c.change.linked_account_ids))
    return "  ".join(parts)


def follow_changes(profile_ids: list[str], from_sequence: int | None, limit: int | None, token: str,
                   on_change: Callable[[profile_pb2.ProfileChange], None],
                   on_note: Callable[[str], None]) -> int:
    """Follows StreamProfileChanges, handing each change to `on_change`, until `limit` changes,
    or forever. When the service ends the stream (shutdown, restart) it resumes from the
    sequence after the last one, for up to RECONNECT_FOR_S. Returns the changes seen."""

    async def go() -> int:
        n, resume = 0, from_sequence
        lost_at: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            req = profile_pb2.StreamProfileChangesRequest(profile_ids=profile_ids)
            if resume is not None:
                req.from_sequence = resume
            else:
                req.from_now = True
            async with stub(SERVICE, profile_pb2_grpc.ProfileServiceStub, token) as s:
                call = s.StreamProfileChanges(req)
                try:
                    async for c in call:
                        lost_at = None
                        resume = c.sequence + 1
                        on_change(c)
                        n += 1
                        if limit is not None and n >= limit:
                            return n
                    return n  # the server ended the stream
                except grpc.aio.AioRpcError as e:
                    if e.code() != grpc.StatusCode.UNAVAILABLE or (n == 0 and lost_at is None
                                                                   and "shutting down" not in (e.details() or "")):
                        raise
                    m = _RESUME.search(e.details() or "")
                    if resume is None and m:
                        resume = int(m.group(1))
                    if lost_at is None:
                        lost_at = loop.time()
                        on_note(f"the profile service went away ({e.details()}); resuming"
                                + (f" from sequence {resume}" if resume else ""))
                    elif loop.time() - lost_at > RECONNECT_FOR_S:
                        raise
                finally:
                    call.cancel()
            await asyncio.sleep(1.0)

    try:
        return asyncio.run(go())
    except grpc.aio.AioRpcError as e:
        if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
            raise CliError(_said_changes(e.details() or "refused")) from None
        if e.code() == grpc.StatusCode.UNIMPLEMENTED:
            raise CliError(f"the profile service at {client.service_addr(SERVICE)} does not serve this call "
                           "(an older version?)") from None
        raise rpc_error(SERVICE, e) from None


def _said_changes(details: str) -> str:
    field, sep, rest = details.partition(": ")
    base = field.split("[")[0]
    words = {"profile_ids": "--profile", "from_sequence": "--from-sequence"}
    return f"{words[base]}: {rest}" if sep and base in words else details


@profile_group.command("changes")
@click.option("--profile", "profile_ids", multiple=True, metavar="PROFILE_ID",
              help="Only changes of this profile (repeatable). Default: every profile.")
@click.option("--from-sequence", type=click.IntRange(min=1),
              help="Start at this CDP_PROFILE stream sequence (1: all history kept). Default: from now.")
@click.option("--limit", type=click.IntRange(min=1), help="Stop after this many changes. Default: follow until Ctrl-C.")
@click.option("--jsonl", "as_jsonl", is_flag=True, help="One JSON object per change a line.")
@TOKEN_OPTION
def changes(profile_ids, from_sequence: int | None, limit: int | None, as_jsonl: bool, token_: str | None) -> None:
    """Follow profile changes as they happen (StreamProfileChanges), until Ctrl-C.

    Each change: its stream sequence, when it was recorded, the profile, its event count, the
    traits the event changed and the accounts it linked the profile to. If the service
    restarts, following resumes after the last change shown."""
    for i, pid in enumerate(profile_ids):
        if not pid.strip():
            raise click.BadParameter("must not be empty", param_hint=f"--profile (#{i + 1})")
    tok = client.resolve_token(token_)
    err = Console(stderr=True, soft_wrap=True)

    def show(c: profile_pb2.ProfileChange) -> None:
        if as_jsonl:
            sys.stdout.write(json.dumps(change_record(c), ensure_ascii=False, separators=(",", ":")) + "\n")
        else:
            sys.stdout.write(change_line(c) + "\n")
        sys.stdout.flush()

    try:
        follow_changes(list(profile_ids), from_sequence, limit, tok, show, lambda note: err.print(escape(note)))
    except KeyboardInterrupt:
        return
    except BrokenPipeError:
        quiet_broken_pipe()
