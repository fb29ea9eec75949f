"""Rendering of a Profile message: one JSON shape (--json) and one rich view."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cdp.profile.v1 import profile_pb2


def iso(ts: Timestamp) -> str | None:
    """RFC 3339 in UTC ("2025-01-31T12:00:00.250Z"), or None when unset."""
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.ToJsonString()


def trait_value(value_json: str) -> Any:
    """The trait's value parsed from JSON; the raw text when it is not valid JSON."""
    if value_json == "":
        return None
    try:
        return json.loads(value_json)
    except ValueError:
        return value_json


def profile_to_dict(p: profile_pb2.Profile) -> dict[str, Any]:
    return {
        "profile_id": p.profile_id,
        "identifiers": [{"type": i.type, "value": i.value} for i in p.identifiers],
        "traits": {t.name: trait_value(t.value_json) for t in p.traits},
        "computed": {
            "event_count": p.event_count,
            "first_seen": iso(p.first_seen),
            "last_seen": iso(p.last_seen),
        },
        "merged_profile_ids": list(p.merged_profile_ids),
    }


def profile_json(p: profile_pb2.Profile) -> str:
    return json.dumps(profile_to_dict(p), ensure_ascii=False, sort_keys=False)


def profile_view(p: profile_pb2.Profile) -> Panel:
    identifiers = Table(title="Identifiers", title_justify="left")
    identifiers.add_column("type", style="cyan", no_wrap=True)
    identifiers.add_column("value")
    for i in sorted(p.identifiers, key=lambda i: (i.type, i.value)):
        identifiers.add_row(i.type, i.value)

    traits = Table(title="Traits", title_justify="left")
    traits.add_column("name", style="cyan", no_wrap=True)
    traits.add_column("value")
    traits.add_column("updated", style="dim", no_wrap=True)
    for t in sorted(p.traits, key=lambda t: t.name):
        traits.add_row(t.name, Text(json.dumps(trait_value(t.value_json), ensure_ascii=False)), iso(t.updated_at) or "")

    computed = Table.grid(padding=(0, 2))
    computed.add_column(style="bold")
    computed.add_column()
    computed.add_row("event_count", str(p.event_count))
    computed.add_row("first_seen", iso(p.first_seen) or "-")
    computed.add_row("last_seen", iso(p.last_seen) or "-")
    if p.merged_profile_ids:
        computed.add_row("merged_profile_ids", ", ".join(p.merged_profile_ids))

    parts = [computed, identifiers]
    if p.traits:
        parts.append(traits)
    return Panel(Group(*parts), title=f"[bold]Profile[/bold] {p.profile_id}", title_align="left")


def print_profile(p: profile_pb2.Profile, *, as_json: bool, console: Console | None = None) -> None:
    """The one way a command prints a profile on stdout."""
    if as_json:
        import click

        click.echo(profile_json(p))
    else:
        (console or Console()).print(profile_view(p))
