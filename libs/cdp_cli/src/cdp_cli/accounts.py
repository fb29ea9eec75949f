"""`cdp account …`: B2B accounts (built by group calls) over cdp.profile.v1.ProfileService."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click
import grpc
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cdp.profile.v1 import profile_pb2, profile_pb2_grpc

from . import client, render
from .client import RPC_TIMEOUT_S, CliError, rpc_error, stub

SERVICE = "profile"
MAX_PAGE = 1000  # the service's largest page


def account_record(a: profile_pb2.Account, users: list[profile_pb2.AccountUser], more: bool) -> dict[str, Any]:
    """The one JSON shape of an account (`cdp account get --json`)."""
    return {
        "account_id": a.account_id,
        "traits": {t.name: render.trait_value(t.value_json) for t in a.traits},
        "computed": {
            "users": a.user_count,
            "revenue_total": a.revenue_total,
            "orders": a.order_count,
            "last_activity_at": render.iso(a.last_activity_at),
        },
        "first_seen": render.iso(a.first_seen),
        "last_seen": render.iso(a.last_seen),
        "users": [{"profile_id": u.profile_id, "first_linked_at": render.iso(u.first_linked_at),
                   "last_linked_at": render.iso(u.last_linked_at)} for u in users],
        "more_users": more,
    }


def fetch_account(account_id: str, limit: int, token: str) -> tuple[profile_pb2.Account, list, bool]:
    """The account and up to `limit` of its users (paging GetAccount); (account, users, more)."""

    async def go():
        users: list[profile_pb2.AccountUser] = []
        req = profile_pb2.GetAccountRequest(account_id=account_id)
        async with stub(SERVICE, profile_pb2_grpc.ProfileServiceStub, token) as s:
            while True:
                req.page_size = min(MAX_PAGE, limit - len(users))
                page = await s.GetAccount(req, timeout=RPC_TIMEOUT_S)
                users.extend(page.users)
                if not page.next_page_token:
                    return page.account, users, False
                if len(users) >= limit:
                    return page.account, users, True
                req.page_token = page.next_page_token

    try:
        return asyncio.run(go())
    except grpc.aio.AioRpcError as e:
        if e.code() == grpc.StatusCode.NOT_FOUND:
            raise CliError(f"no account with id {account_id} (no group call named it)") from None
        if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
            raise CliError(e.details() or "refused") from None
        if e.code() == grpc.StatusCode.UNIMPLEMENTED:
            raise CliError(f"the profile service at {client.service_addr(SERVICE)} does not serve GetAccount "
                           "(an older version?)") from None
        raise rpc_error(SERVICE, e) from None


def account_view(a: profile_pb2.Account, users: list[profile_pb2.AccountUser], more: bool) -> Panel:
    figures = Table.grid(padding=(0, 2))
    figures.add_column(style="bold")
    figures.add_column()
    figures.add_row("users", str(a.user_count))
    figures.add_row("revenue_total", f"{a.revenue_total:.2f}")
    figures.add_row("orders", str(a.order_count))
    figures.add_row("last_activity_at", render.iso(a.last_activity_at) or "-")
    figures.add_row("first_seen", render.iso(a.first_seen) or "-")
    figures.add_row("last_seen", render.iso(a.last_seen) or "-")
    parts: list = [figures]
    if a.traits:
        traits = Table(title="Traits", title_justify="left")
        traits.add_column("name", style="cyan", no_wrap=True)
        traits.add_column("value")
        traits.add_column("updated", style="dim", no_wrap=True)
        for t in a.traits:
            traits.add_row(escape(t.name), Text(json.dumps(render.trait_value(t.value_json), ensure_ascii=False)),
                           render.iso(t.updated_at) or "")
        parts.append(traits)
    members = Table(title="Users", title_justify="left")
    members.add_column("profile_id", no_wrap=True)
    members.add_column("first linked", style="dim", no_wrap=True)
    members.add_column("last linked", style="dim", no_wrap=True)
    for u in users:
        members.add_row(escape(u.profile_id), render.iso(u.first_linked_at) or "", render.iso(u.last_linked_at) or "")
    if more:
        members.caption = f"the first {len(users)} users by profile id; more with --limit"
    parts.append(members)
    return Panel(Group(*parts), title=f"[bold]Account[/bold] {escape(a.account_id)}", title_align="left")


@click.group("account")
def account_group() -> None:
    """B2B accounts, built by group calls."""


@account_group.command("get")
@click.argument("account_id")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True,
              help="At most this many users (by profile id).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--token", "token_", help="Bearer token (profiles:read) (default: env CDP_TOKEN, else .cdp/token).")
def account_get(account_id: str, limit: int, as_json: bool, token_: str | None) -> None:
    """Show an account (GetAccount): its traits, its figures (users, revenue, orders, last
    activity, computed from its users when asked) and its users."""
    if not account_id.strip():
        raise click.BadParameter("must not be empty", param_hint="ACCOUNT_ID")
    a, users, more = fetch_account(account_id, limit, client.resolve_token(token_))
    if as_json:
        click.echo(json.dumps(account_record(a, users, more), ensure_ascii=False))
    else:
        Console(soft_wrap=True).print(account_view(a, users, more))
