from __future__ import annotations

import csv
from pathlib import Path

import orjson
import pytest

from cdp_sim import World


class Out:
    """A written world, loaded back."""

    def __init__(self, d: Path):
        self.dir = d
        self.manifest = orjson.loads((d / "manifest.json").read_bytes())
        self.events = [orjson.loads(line) for line in (d / "events.jsonl").read_bytes().splitlines()]
        with open(d / "truth_events.csv", newline="") as f:
            self.owner = {r["message_id"]: r["person_id"] for r in csv.DictReader(f)}
        self.truth = [orjson.loads(line) for line in (d / "truth.jsonl").read_bytes().splitlines()]
        self.by_pid = {t["person_id"]: t for t in self.truth}
        self.hooks = {}
        for topic, path in self.manifest["files"]["shopify"].items():
            self.hooks[topic] = [orjson.loads(line) for line in (d / path).read_bytes().splitlines()]
        with open(d / "crm_contacts.csv", newline="", encoding="utf-8") as f:
            self.crm = list(csv.DictReader(f))
        with open(d / "pos_transactions.csv", newline="", encoding="utf-8") as f:
            self.pos = list(csv.DictReader(f))


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("world")
    World.generate(people=2000, days=60, seed=11).write(d)
    return d


@pytest.fixture(scope="session")
def out(world_dir) -> Out:
    return Out(world_dir)
