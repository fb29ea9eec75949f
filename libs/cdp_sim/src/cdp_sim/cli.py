"""`cdp simulate`: write a simulated world into a directory (registered into the `cdp` group)."""

from __future__ import annotations

import json
import sys
import time

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .api import World
from .world import SimConfig


@click.command("simulate")
@click.option("--people", type=click.IntRange(min=1), default=1000, show_default=True, help="People in the world.")
@click.option("--days", type=click.IntRange(min=1), default=90, show_default=True, help="Observed days (events are written for these).")
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same bytes.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Output directory.")
@click.option("--start", default=SimConfig.start, show_default=True, help="First day (YYYY-MM-DD); never the wall clock.")
@click.option("--horizon", type=click.IntRange(min=0), default=SimConfig.horizon, show_default=True,
              help="Days after the cutoff simulated for the ground-truth outcomes only.")
@click.option("--products", type=click.IntRange(min=50), default=SimConfig.products, show_default=True)
@click.option("--stores", type=click.IntRange(min=1), default=SimConfig.stores, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as one JSON object.")
def simulate(people: int, days: int, seed: int, out_dir: str, start: str, horizon: int, products: int, stores: int,
             as_json: bool) -> None:
    """Simulate a retailer's customers: Segment events, Shopify webhooks, CRM and POS CSV,
    and the ground truth (docs/simulator.md)."""
    err = Console(stderr=True, soft_wrap=True)
    try:
        world = World(SimConfig(people=people, days=days, seed=seed, start=start, horizon=horizon,
                                products=products, stores=stores))
    except ValueError as e:
        raise click.BadParameter(str(e)) from e
    t0 = time.perf_counter()
    with Progress(TextColumn("[bold]simulating[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("days"),
                  TextColumn("{task.fields[events]:>10,} events"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=err, transient=as_json, disable=not err.is_terminal and as_json) as bar:
        task = bar.add_task("days", total=days, events=0)

        def progress(done: int, total: int, counts: dict) -> None:
            bar.update(task, completed=done, events=counts["segment"])

        manifest = world.write(out_dir, progress=progress)
    elapsed = time.perf_counter() - t0
    c = manifest["counts"]
    if as_json:
        sys.stdout.write(json.dumps(manifest) + "\n")
        return
    out = Console(soft_wrap=True)
    out.print(f"[bold]{c['records']:,}[/] records for {people:,} people over {days} days (seed {seed}) "
              f"in {elapsed:.1f} s ({c['records'] / max(elapsed, 1e-9):,.0f}/s) -> {out_dir}")
    out.print(f"  Segment messages {c['segment']:,}  " + "  ".join(f"{k} {v:,}" for k, v in c["segment_by_type"].items()))
    out.print("  Shopify webhooks " + "  ".join(f"{k} {v:,}" for k, v in c["shopify"].items()))
    out.print(f"  POS lines {c['pos_lines']:,} ({c['pos_receipts']:,} receipts)  CRM contacts {c['crm_contacts']:,}  "
              f"people seen {c['people_seen']:,}  identifiers {c['identifiers']:,}")
    out.print(f"  cutoff {manifest['cutoff']}  outcomes until {manifest['horizon_end']}  (manifest.json, truth.jsonl)")


def main() -> None:  # python -m cdp_sim.cli
    simulate()


if __name__ == "__main__":
    main()
