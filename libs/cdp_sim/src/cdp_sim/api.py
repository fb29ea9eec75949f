"""The library API: `World.generate(people=…, days=…, seed=…)`, then iterate or `write(out_dir)`."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator
from datetime import timedelta

import numpy as np

from . import __version__, shopify
from .engine import Engine
from .output import (
    CRM_FILE,
    POS_FILE,
    SEGMENT_FILE,
    TRUTH_EVENTS_FILE,
    TRUTH_FILE,
    Writer,
    crm_rows,
    shopify_file,
    truth_records,
)
from .world import SimConfig, build_catalogue, build_population, build_stores

Progress = Callable[[int, int, dict], None]  # (days done, days total, counts so far)


class World:
    """A seeded retailer and its customers. Building it draws the catalogue, stores and people;
    `run()` (and everything built on it) simulates the days afresh, so it can be repeated and
    gives the same output every time."""

    def __init__(self, cfg: SimConfig):
        if cfg.people < 1 or cfg.days < 1 or cfg.horizon < 0:
            raise ValueError("people and days must be >= 1, horizon >= 0")
        self.cfg = cfg
        root = np.random.SeedSequence(cfg.seed)
        s_cat, s_store, s_pop, self._s_engine = root.spawn(4)
        self.catalogue = build_catalogue(cfg, np.random.default_rng(s_cat))
        self.stores = build_stores(cfg, np.random.default_rng(s_store))
        self.population = build_population(cfg, self.stores, np.random.default_rng(s_pop))
        self.engine: Engine | None = None
        self._crm: list[dict] | None = None
        self._truth: list[dict] | None = None

    @classmethod
    def generate(cls, people: int = 1000, days: int = 90, seed: int = 1, **params) -> World:
        return cls(SimConfig(people=people, days=days, seed=seed, **params))

    # --- iterating -----------------------------------------------------------------------

    def run(self, on_day=None, serialize: bool = False) -> Iterator:
        """Simulate afresh; yield one `DayOutput` per observed day. Afterwards `crm()` and
        `truth()` describe this run. serialize=True hands Segment messages on as JSON lines."""
        self.engine = Engine(self.cfg, self.catalogue, self.stores, self.population,
                             np.random.SeedSequence(self._s_engine.entropy, spawn_key=self._s_engine.spawn_key))
        self.engine.serialize = serialize
        self._crm = self._truth = None
        # Millions of small acyclic dicts: the cyclic GC would rescan them again and again
        # (it costs 40% of the run), so it is paused while simulating and restored after.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            yield from self.engine.run(on_day)
            self._crm = crm_rows(self.engine)
            self._truth = truth_records(self.engine)
        finally:
            if was_enabled:
                gc.enable()

    def records(self) -> Iterator[tuple[str, dict]]:
        """Every output record in file order, as (stream, record): stream is "segment",
        "shopify" (a delivery {"topic", "headers", "body"}), "pos", then "crm" and "truth"."""
        for out in self.run():
            for item in out.segment:
                yield "segment", item[2]
            for item in out.webhooks:
                yield "shopify", item[2]
            for item in out.pos:
                yield "pos", item[2]
        for row in self._crm:
            yield "crm", row
        for t in self._truth:
            yield "truth", t

    def events(self) -> Iterator[dict]:
        """The Segment messages only, in time order."""
        for out in self.run():
            for item in out.segment:
                yield item[2]

    def crm(self) -> list[dict]:
        self._ensure()
        return self._crm

    def truth(self) -> list[dict]:
        self._ensure()
        return self._truth

    def _ensure(self) -> None:
        if self._truth is None:
            for _ in self.run():
                pass

    # --- writing ---------------------------------------------------------------------------

    def manifest_base(self) -> dict:
        cfg = self.cfg
        start = cfg.start_date
        return {
            "generator": "cdp-sim",
            "version": __version__,
            "seed": cfg.seed,
            "parameters": cfg.to_json(),
            "start": start.isoformat(),
            "cutoff": (start + timedelta(days=cfg.days)).isoformat(),
            "horizon_end": (start + timedelta(days=cfg.days + cfg.horizon)).isoformat(),
            "timezone": "Europe/Madrid",
            "currency": cfg.currency,
            "shopify": {"shop_domain": cfg.shop_domain, "webhook_secret": cfg.webhook_secret,
                        "api_version": shopify.API_VERSION, "topics": list(shopify.TOPICS)},
            "files": {
                "segment": SEGMENT_FILE, "shopify": {t: shopify_file(t) for t in shopify.TOPICS},
                "crm": CRM_FILE, "pos": POS_FILE, "truth": TRUTH_FILE, "truth_events": TRUTH_EVENTS_FILE,
            },
        }

    def write(self, out_dir: str | os.PathLike, progress: Progress | None = None) -> dict:
        """Simulate and write every file into out_dir; return the manifest (also in manifest.json)."""
        w = Writer(out_dir)
        counts = {"segment": 0, "shopify": {t: 0 for t in shopify.TOPICS}, "pos_lines": 0, "pos_receipts": 0}
        days = self.cfg.days
        for out in self.run(serialize=True):
            w.day(self.engine, out)
            counts["segment"] += len(out.segment)
            for item in out.webhooks:
                counts["shopify"][item[2]["topic"]] += 1
            counts["pos_lines"] += len(out.pos)
            if progress:
                progress(out.day + 1, days, counts)
        eng = self.engine
        counts["segment_by_type"] = dict(sorted(eng.type_counts.items()))
        counts["pos_receipts"] = eng.n_receipts_observed if hasattr(eng, "n_receipts_observed") else eng.n_receipts
        counts["crm_contacts"] = len(self._crm)
        counts["people"] = self.cfg.people
        counts["people_seen"] = sum(1 for p in eng.people if p.first_seen is not None)
        counts["identifiers"] = sum(len(p.ids) for p in eng.people)
        counts["records"] = counts["segment"] + sum(counts["shopify"].values()) + counts["pos_lines"] + counts["crm_contacts"]
        return w.finish(self._crm, self._truth, self.manifest_base(), counts)


def generate(**kw) -> World:
    return World.generate(**kw)
