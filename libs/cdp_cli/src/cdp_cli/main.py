"""The cdp command-line tool (see docs/cli.md)."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from datetime import UTC, datetime, timedelta

import click
from rich.console import Console

from cdp_core.auth import KNOWN_SCOPES, issue_token

from . import accounts, client, export, failed, identity, importer, profiles, render, sources, stack
from . import demo as demo_mod
from . import predict as predict_mod
from . import segments as segments_mod
from . import traits as traits_mod
from .replay import replay_command

TOKEN_HELP = "Bearer token (default: env CDP_TOKEN, else .cdp/token)."


def _out() -> Console:
    # soft_wrap: long lines (paths, tokens) are not broken, so they can be copied and grepped
    return Console(soft_wrap=True)


def _err() -> Console:
    return Console(stderr=True, soft_wrap=True)


class _Commands(click.Group):
    """The `cdp` group; commands of other packages are imported when they are asked for (the
    simulator's pulls in numpy: every other command starts faster without it)."""

    LAZY = {"simulate": ("cdp_sim.cli", "simulate")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.LAZY and name not in self.commands:
            module, attr = self.LAZY[name]
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """cdp: operate the Customer Data Platform."""


# --- cdp dev -------------------------------------------------------------------------


@cli.group()
def dev() -> None:
    """Run a local stack (NATS, PostgreSQL and every service) under .cdp/."""


@dev.command("up")
@click.option("--foreground", is_flag=True, help="Stay attached; Ctrl-C or SIGTERM stops the stack.")
def dev_up(foreground: bool) -> None:
    """Start the stack and wait until every service is SERVING."""
    sys.exit(stack.up(_out(), foreground=foreground))


@dev.command("down")
def dev_down() -> None:
    """Stop exactly what `cdp dev up` started and remove .cdp/stack.json."""
    sys.exit(stack.down(_out()))


@dev.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def dev_status(as_json: bool) -> None:
    """Each component: pid, running or not, endpoint, and gRPC health of services.

    Exit code 0 when a stack is recorded and everything in it is up, 1 otherwise."""
    s = stack.load_stack()
    record = stack.status_record(s)
    if as_json:
        click.echo(json.dumps(record))
    else:
        stack.print_status(_out(), s, record)
    sys.exit(0 if record["running"] else 1)


# --- cdp token -----------------------------------------------------------------------


@cli.group()
def token() -> None:
    """Bearer tokens for the gRPC APIs."""


@token.command("issue")
@click.option("--scope", "scopes", multiple=True, required=True,
              type=click.Choice(sorted(KNOWN_SCOPES)), help="A scope to grant (repeatable).")
@click.option("--subject", default="cdp-cli", show_default=True, help="Who the token is for.")
def token_issue(scopes: tuple[str, ...], subject: str) -> None:
    """Print a token signed with the stack's secret (env CDP_AUTH_SECRET, else .cdp/secret)."""
    if not subject.strip():
        raise click.BadParameter("must not be empty", param_hint="--subject")
    click.echo(issue_token(client.require_secret(), subject, set(scopes)))


# --- cdp demo ------------------------------------------------------------------------


@cli.command()
@click.option("--sample", is_flag=True, help="Only the short sample journey through gRPC ingest (one profile).")
@click.option("--people", type=click.IntRange(min=1), default=demo_mod.WorldOptions.people, show_default=True,
              help="People in the simulated world.")
@click.option("--days", type=click.IntRange(min=1), default=demo_mod.WorldOptions.days, show_default=True,
              help="Days of their behaviour.")
@click.option("--seed", type=int, default=demo_mod.WorldOptions.seed, show_default=True,
              help="Simulator seed (same seed, same world: a re-run appends nothing new).")
@click.option("--start", type=click.DateTime(formats=["%Y-%m-%d"]),
              help="First simulated day. Default: DAYS days ago, so the world ends yesterday and the "
                   "time-window audiences (purchasers in the last 30 days, ...) hold people.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the summary, or the sample's profile).")
@click.option("--token", "token_", help=TOKEN_HELP)
@click.pass_context
def demo(ctx: click.Context, sample: bool, people: int, days: int, seed: int, start, as_json: bool,
         token_: str | None) -> None:
    """Load a simulated world through the real paths and print what the platform made of it.

    Segment calls go through the HTTP edge, Shopify webhooks to the webhook endpoint, CRM
    contacts and POS receipts through the CSV import; then a sample of people is compared
    with the simulator's ground truth. --sample sends one short journey through gRPC instead.
    Progress goes to stderr, the summary to stdout."""
    if sample:
        given = [f"--{n}" for n in ("people", "days", "seed", "start")
                 if ctx.get_parameter_source(n) is not click.core.ParameterSource.DEFAULT]
        if given:
            raise click.UsageError(f"{', '.join(given)} apply to the world demo, not to --sample")
    tok = client.resolve_token(token_)
    if sample:
        try:
            p = asyncio.run(demo_mod.run_sample(tok, _err()))
        except demo_mod.IncompleteProfile as e:
            render.print_profile(e.profile, as_json=as_json, console=_out())
            raise
        render.print_profile(p, as_json=as_json, console=_out())
        return
    first = start.date() if start else datetime.now(UTC).date() - timedelta(days=days)
    summary = asyncio.run(demo_mod.run_world(tok, _err(), demo_mod.WorldOptions(
        people=people, days=days, seed=seed, start=first.isoformat())))
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False))
    else:
        demo_mod.print_world_summary(summary, _out())
    if not summary["caught_up"]:
        raise client.CliError("identity and profile had not caught up with the load "
                              f"after {demo_mod.CATCH_UP_TIMEOUT_S:.0f} s: the figures above are partial")


# --- cdp source, tracking-plan, import, failed, identity (each in its own module) ------

cli.add_command(sources.source_group)
cli.add_command(sources.plan_group)
cli.add_command(importer.import_group)
cli.add_command(failed.failed_group)
cli.add_command(identity.identity_group)
cli.add_command(profiles.profile_group)
cli.add_command(accounts.account_group)
cli.add_command(export.export_group)
cli.add_command(traits_mod.trait_group)
cli.add_command(segments_mod.segment_group)
cli.add_command(predict_mod.predict_group)
cli.add_command(replay_command)


if __name__ == "__main__":  # pragma: no cover
    cli()


@cli.command("bench", context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                         "help_option_names": []})
@click.pass_context
def bench(ctx: click.Context) -> None:
    """Benchmarks beside raw baselines: cdp bench ingest|latency|simulate [--json] (see --help)."""
    from cdp_bench.cli import main as bench_main

    sys.exit(bench_main(ctx.args, prog="cdp bench"))

