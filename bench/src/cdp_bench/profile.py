"""Profile: events projected/s, event -> profile-visible latency at a steady rate, what a replay
costs today, and disk per million profiles — each beside a baseline measured in the same run.

`python -m cdp_bench profile [--events 100000] [--events-per-profile 20] [--repetitions 3]
[--rate 1000 --seconds 20 --latency-repetitions 3] [--skip throughput,latency] [--py-spy FILE] [--json]`

1. **Events projected/s.** `--events` realistic Segment e-commerce events (pages, Product
   Viewed / Added / Removed, Products Searched, Cart Viewed, Checkout Started, Order Completed
   with products, identify with traits) of a realistic number of people (a lognormal number of
   events per person: mean `--events-per-profile`, a heavy tail), each an EventCollected built
   as ingest builds it, wrapped in the `cdp.identity.resolved` identity would emit for it
   (IdentityResolved: the event, its profile id, its identifiers and the ones new to identity,
   its ingest event id; `envelope.encode`, Nats-Msg-Id = the resolved event's id) and published
   with `Bus.publish_batch` into `CDP_IDENTITY` **before** the profile service starts. Then ONE
   profile process (`python -m cdp_profile`, fresh database, fresh durable consumer, every
   built-in computed trait on; no declared traits) drains it. events/s = events projected ÷
   seconds from the first committed batch (the first `cdp_tracking` row) until `cdp_tracking`
   holds the stream's last sequence. Baselines in the same run, interleaved: (a) a bare
   JetStream pull loop over the same stream (fetch 256, ack each message); (b) bare asyncpg
   `copy_records_to_table` of as many timeline-shaped rows (event_id PK, profile_id,
   occurred_at, kind, event_name, properties jsonb) in transactions of 256 rows (the profile
   consumer's batch size), fsync on.
2. **Latency.** The last repetition's profile process, caught up, is kept running; resolved
   events for the workload's people (chosen by their activity) are published open loop at
   `--rate`/s for `--seconds` (one `js.publish` each, awaiting the ack, scheduled at
   start + i/rate: `harness.paced`). Latency = from the scheduled publish time to the arrival
   of the `cdp.profile.changed` that carries the event's ingest event id (a core NATS
   subscription on that subject), or of a later change of the same profile (which covers it).
   The service publishes it from its outbox after the transaction that wrote the event, its
   traits and its computed traits has committed, so it is an upper bound of
   "profile-visible" (computed traits included); a sample is checked in the profile database
   afterwards. Baseline: bare
   JetStream on the same schedule with a message of the same size: `js.publish` to a throwaway
   file-storage stream, a durable pull consumer (fetch 256, ack each) receiving it.
3. **Replay.** After each drain of (1) but the last (whose process holds the latency run),
   `cdp replay profile` is run on the caught-up process through its ReplayService: the
   projection rebuilt from sequence 1 into a fresh schema (its outbox keeps nothing) and swapped
   in, timed from StartReplay to "done", swap included; events/s set beside the steady ingest
   rate (`--rate`, the rate of the latency goal). With one repetition no replay is timed and
   (1)'s figure stands in.
4. **Disk per million profiles.** After the first drain: `VACUUM ANALYZE`, then
   `pg_total_relation_size` (heap + indexes + TOAST) of every table of the profile database,
   per profile and per event, scaled to a million profiles at the workload's events per
   profile; beside the bare COPY table's size per row.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import secrets
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from cdp.common.v1 import identifier_pb2
from cdp.identity.v1 import events_pb2 as identity_events
from cdp.ingest.v1 import events_pb2 as ingest_events
from cdp.profile.v1 import events_pb2 as profile_events
from cdp_core import envelope
from cdp_core.bus import DUPLICATE_WINDOW_S, Bus, Outgoing, stream_name
from cdp_core.settings import with_database

from . import harness
from .harness import Comparison, machine_info, median, now_iso, paced, percentile, ratio, render_comparison
from .stack import (
    Env,
    bench_env,
    drop_database,
    publish_all,
    replay_service,
    service_process,
    table_sizes,
    watch_drain,
)

IDENTITY = stream_name("identity")
RESOLVED = "cdp.identity.resolved"
CHANGED = "cdp.profile.changed"
BATCH = 256  # the profile consumer's fetch size (Projection.batch_size)
EVENT_TABLES = ("profile_events", "cdp_tracking")  # grow with every event projected
T0 = 1_767_225_600  # 2026-01-01

_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
       "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
       "Version/17.2 Mobile/15E148 Safari/604.1",
       "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0 Safari/537.36",
       "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 "
       "Safari/605.1.15")
_CATEGORIES = ("Vestidos", "Camisas", "Pantalones", "Zapatos", "Bolsos", "Chaquetas", "Accesorios", "Punto")
_BRANDS = ("Moda Norte", "Atelier Sur", "Lino&Co", "Urbana", "Costa")
_COLOURS = ("Negro", "Blanco", "Azul", "Rojo", "Verde", "Beige")
_SIZES = ("XS", "S", "M", "L", "XL")
_CITIES = (("Madrid", "28013"), ("Barcelona", "08001"), ("Valencia", "46002"), ("Sevilla", "41004"),
           ("Bilbao", "48001"), ("Zaragoza", "50001"))
_PAGES = ("/", "/mujer", "/hombre", "/rebajas", "/novedades", "/ayuda/envios", "/carrito")
_TZ = ("Europe/Madrid", "Europe/Madrid", "Europe/Madrid", "Atlantic/Canary", "Europe/Lisbon")


def _catalog(n: int = 3000, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for k in range(n):
        cat = rng.choice(_CATEGORIES)
        out.append({"product_id": f"p-{k}", "sku": f"SKU-{k:05d}", "name": f"{cat} {rng.choice(_COLOURS)} {k}",
                    "category": cat, "brand": rng.choice(_BRANDS),
                    "variant": f"{rng.choice(_COLOURS)} / {rng.choice(_SIZES)}",
                    "price": round(rng.choice((9.95, 19.95, 29.95, 39.95, 59.95, 89.95, 129.0)), 2)})
    return out


CATALOG = _catalog()


def _dumps(x) -> str:
    return json.dumps(x, separators=(",", ":"), ensure_ascii=False)


# --- the workload -----------------------------------------------------------------------------


@dataclass
class Person:
    """One person's state while their events are written, in their time order."""

    k: int
    run: str
    profile_id: str
    anon: list[str]
    events: int  # planned events (the workload's count)
    identify_at: int  # index of the event that identifies them (-1: never identifies)
    ua: str
    tz: str
    city: tuple[str, str]
    n: int = 0
    cart: list[dict] = field(default_factory=list)
    viewed: list[dict] = field(default_factory=list)
    identified: bool = False
    orders: int = 0

    @property
    def user_id(self) -> str:
        return f"u-{self.run}-{self.k}"

    @property
    def email(self) -> str:
        return f"persona.{self.k}.{self.run}@example.com"

    def next_event(self, rng: random.Random, sec: int, i: int) -> tuple[ingest_events.EventCollected, list, str]:
        """(EventCollected, identifiers (type, value), kind label) of this person's next event."""
        j = self.n
        self.n += 1
        anon = self.anon[0] if len(self.anon) == 1 or rng.random() < 0.8 else rng.choice(self.anon)
        identify = j == self.identify_at or (self.identified and rng.random() < 0.02)
        if identify:
            self.identified = True
        ev = ingest_events.EventCollected(message_id=f"{self.run}-{i}", anonymous_id=anon, source_id="bench-web",
                                          source_kind="web")
        if self.identified:
            ev.user_id = self.user_id
        page = rng.choice(_PAGES)
        r = rng.random()
        label = ""
        if identify:
            ev.kind = "identify"
            ev.traits_json = _dumps({
                "email": self.email, "firstName": f"Nombre{self.k}", "lastName": f"Apellido{self.k}",
                "phone": f"+3460{self.k:07d}", "email_opt_in": rng.random() < 0.7,
                "address": {"city": self.city[0], "postalCode": self.city[1], "country": "ES"},
                "createdAt": "2025-11-02T10:00:00Z"})
            label = "identify"
        elif j == 0 or r < 0.28:
            ev.kind, ev.name, label = "page", page, "page"
        else:
            ev.kind = "track"
            if r < 0.60 or not self.viewed:
                p = CATALOG[min(int(rng.paretovariate(1.2)) * 7 + self.k % 50, len(CATALOG) - 1)] \
                    if rng.random() < 0.5 else rng.choice(CATALOG)
                self.viewed = (self.viewed + [p])[-8:]
                ev.event = "Product Viewed"
                props = {**p, "currency": "EUR", "url": f"https://moda.example/producto/{p['sku'].lower()}"}
            elif r < 0.72:
                p = rng.choice(self.viewed)
                self.cart.append(p)
                ev.event = "Product Added"
                props = {**p, "quantity": 1, "currency": "EUR", "cart_id": f"cart-{self.run}-{self.k}"}
            elif r < 0.75 and self.cart:
                p = self.cart.pop(rng.randrange(len(self.cart)))
                ev.event = "Product Removed"
                props = {**p, "quantity": 1, "cart_id": f"cart-{self.run}-{self.k}"}
            elif r < 0.83:
                ev.event = "Products Searched"
                props = {"query": rng.choice(_CATEGORIES).lower() + " " + rng.choice(_COLOURS).lower()}
            elif r < 0.90:
                ev.event = "Cart Viewed"
                props = {"cart_id": f"cart-{self.run}-{self.k}", "products": [
                    {"product_id": p["product_id"], "sku": p["sku"], "price": p["price"], "quantity": 1}
                    for p in self.cart[:5]]}
            elif r < 0.95:
                ev.event = "Checkout Started"
                props = {"order_id": f"o-{self.run}-{self.k}-{self.orders}", "currency": "EUR",
                         "value": round(sum(p["price"] for p in self.cart), 2)}
            else:
                items = self.cart[:4] or [rng.choice(self.viewed)]
                self.cart = self.cart[4:]
                products = [{"product_id": p["product_id"], "sku": p["sku"], "name": p["name"],
                             "category": p["category"], "brand": p["brand"], "variant": p["variant"],
                             "price": p["price"], "quantity": rng.choice((1, 1, 1, 2))} for p in items]
                sub = sum(p["price"] * p["quantity"] for p in products)
                coupon = rng.random() < 0.2
                discount = round(sub * 0.1, 2) if coupon else 0
                ev.event = "Order Completed"
                props = {"order_id": f"o-{self.run}-{self.k}-{self.orders}", "affiliation": "Tienda online",
                         "subtotal": round(sub, 2), "shipping": 3.95, "tax": round(sub * 0.21, 2),
                         "discount": discount, "total": round(sub - discount + 3.95, 2),
                         "revenue": round(sub - discount, 2), "currency": "EUR", "products": products}
                if coupon:
                    props["coupon"] = "BIENVENIDA10"
                self.orders += 1
            ev.properties_json = _dumps(props)
            label = ev.event
        ev.context_json = _dumps({
            "library": {"name": "analytics.js", "version": "4.1.0"}, "ip": f"203.0.113.{self.k % 250}",
            "locale": "es-ES", "timezone": self.tz, "userAgent": self.ua,
            "page": {"path": page, "url": "https://moda.example" + page, "referrer": "https://www.google.com/"}})
        ev.timestamp.seconds = sec
        ev.received_at.seconds = sec
        ids = [("anonymous_id", anon)]
        if self.identified:
            ids.append(("user_id", self.user_id))
        if identify:
            ids.append(("email", self.email))
        return ev, ids, label


@dataclass
class Workload:
    messages: list[Outgoing]
    people: list[Person]
    kinds: Counter
    run: str
    seen: set  # identifiers already resolved (for new_identifiers)

    def profiles(self) -> int:
        return len(self.people)


def resolved_message(p: Person, ev: ingest_events.EventCollected, ids: list, seen: set, sec: int, i: int
                     ) -> Outgoing:
    """The cdp.identity.resolved identity would emit for this ingest event (see
    cdp_identity.graphstore.resolved_event), as an Outgoing with its Nats-Msg-Id."""
    ingest_id = envelope.derived_id("bench-profile", p.run, str(i))
    idents = [identifier_pb2.Identifier(type=t, value=v) for t, v in ids]
    new = [identifier_pb2.Identifier(type=t, value=v) for t, v in ids if (t, v) not in seen]
    seen.update(ids)
    msg = identity_events.IdentityResolved(event=ev, profile_id=p.profile_id, identifiers=idents,
                                           new_identifiers=new, event_id=ingest_id)
    eid = envelope.derived_id("resolved", ingest_id)
    data = envelope.encode(RESOLVED, msg, producer="identity", event_id=eid, occurred_at=(sec, 0),
                           recorded_at=(sec, 0))
    return Outgoing(RESOLVED, data, eid)


def make_workload(n: int, *, events_per_profile: float = 20.0, sigma: float = 1.2, days: int = 30,
                  seed: int = 1) -> Workload:
    """`n` resolved events of about n / events_per_profile people. Events per person are
    lognormal (mean `events_per_profile`, sigma `sigma`: most people have a handful, a few
    hundreds), spread over `days` in sessions, written in global time order."""
    rng = random.Random(seed)
    run = secrets.token_hex(4)
    mu = math.log(events_per_profile) - sigma * sigma / 2
    cap = max(1, n // 10)
    counts: list[int] = []
    total = 0
    while total < n:
        c = min(cap, n - total, max(1, round(rng.lognormvariate(mu, sigma))))
        counts.append(c)
        total += c
    people: list[Person] = []
    slots: list[tuple[int, int]] = []  # (second, person)
    span = days * 86400
    for k, c in enumerate(counts):
        known = rng.random() < (0.8 if c >= 5 else 0.35)
        p = Person(k=k, run=run, profile_id=envelope.derived_id("bench-profile-id", run, str(k)),
                   anon=[f"a-{run}-{k}-{x}" for x in range(1 + (rng.random() < 0.3))], events=c,
                   identify_at=rng.randrange(c) if known else -1, ua=rng.choice(_UA), tz=rng.choice(_TZ),
                   city=rng.choice(_CITIES))
        people.append(p)
        sessions = [rng.randrange(span) for _ in range(max(1, c // rng.randint(3, 8)))]
        for _ in range(c):
            slots.append((rng.choice(sessions) + rng.randrange(1800), k))
    slots.sort()
    seen: set = set()
    out: list[Outgoing] = []
    kinds: Counter = Counter()
    for i, (sec, k) in enumerate(slots):
        p = people[k]
        ev, ids, label = p.next_event(rng, T0 + sec, i)
        kinds[label] += 1
        out.append(resolved_message(p, ev, ids, seen, T0 + sec, i))
    return Workload(out, people, kinds, run, seen)


def workload_shape(wl: Workload) -> dict:
    c = sorted(p.events for p in wl.people)
    return {"profiles": len(c), "events_per_profile_mean": sum(c) / len(c), "events_per_profile_p50": c[len(c) // 2],
            "events_per_profile_p99": c[min(len(c) - 1, int(len(c) * 0.99))], "events_per_profile_max": c[-1],
            "share_of_events_in_top_1pct_profiles": sum(c[-max(1, len(c) // 100):]) / sum(c),
            "identified_profiles": sum(1 for p in wl.people if p.identify_at >= 0),
            "kinds": dict(wl.kinds), "mean_envelope_bytes": sum(len(m.data) for m in wl.messages) / len(wl.messages)}


# --- one profile process --------------------------------------------------------------------------


Hold = Callable[[asyncpg.Connection, subprocess.Popen], Awaitable[dict]]


async def drain_once(env: Env, *, timeout_s: float = 1800, sizes: bool = False, py_spy: str | None = None,
                     hold: Hold | None = None, replay: bool = False, py_spy_held: str | None = None) -> dict:
    """Starts one profile process on a fresh database and durable consumer, times how fast it
    projects everything in CDP_IDENTITY; with `replay`, then times `cdp replay profile` on it
    (stack.replay_service); with `hold`, keeps it running (caught up) for that coroutine (the
    latency run), recorded by py-spy into `py_spy_held` if given; stops it. Returns the figures
    (and the store's sizes)."""
    state = (await env.bus.js.stream_info(IDENTITY)).state
    first, last, n = state.first_seq, state.last_seq, state.messages
    async with service_process(env, "profile", IDENTITY, py_spy=py_spy) as run:
        proc, t_serving = run.proc, run.t_serving
        import psutil

        ps = psutil.Process(proc.pid)
        cpu0 = ps.cpu_times()
        conn = await asyncpg.connect(run.db)
        try:
            d = await watch_drain(conn, "profile", last, proc, timeout_s=timeout_s, log=run.log)
            t_first, seq_first, t_done, rss_peak = d.t_first, d.seq_first, d.t_done, d.rss_peak
            cpu1 = ps.cpu_times()
            while await conn.fetchval("SELECT count(*) FROM cdp_outbox"):  # the relay's lag behind the commits
                await asyncio.sleep(0.1)
            t_relayed = time.perf_counter()
            # computed traits are folded in the batch's transaction (cdp_profile.incremental); a profile
            # left marked for the recomputer (cdp_profile.computing: only an older release marks) would trail
            has_dirty = await conn.fetchval("SELECT to_regclass('profile_dirty') IS NOT NULL")
            while has_dirty and await conn.fetchval("SELECT EXISTS (SELECT 1 FROM profile_dirty)"):
                await asyncio.sleep(0.05)
            t_computed = time.perf_counter()
            run.stop_spy()  # the recording covers the drain, not what follows
            counted = seq_first - first + 1  # projected before the first observation: not timed
            secs = t_done - t_first
            timed_from = "first commit"
            if secs <= 0 or counted >= n:  # all in the first observation (a tiny run): from SERVING
                counted, secs, timed_from = 0, t_done - t_serving, "serving"
            out = {
                "events": n,
                "events_per_s": (n - counted) / secs,
                "seconds": secs,
                "timed_from": timed_from,
                "seconds_from_serving": t_done - t_serving,
                "relay_lag_s": t_relayed - t_done,
                "computed_lag_s": t_computed - t_done,
                "events_per_s_computed": (n - counted) / (t_computed - (t_first if timed_from == "first commit"
                                                                       else t_serving)),
                "cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
                "profiles": await conn.fetchval("SELECT count(*) FROM profiles WHERE merged_into IS NULL"),
                "timeline_rows": await conn.fetchval("SELECT count(*) FROM profile_events"),
                "computed_rows": await conn.fetchval("SELECT count(*) FROM profile_computed"),
                "failed": await conn.fetchval("SELECT count(*) FROM cdp_failed_events"),
                "rss_peak_mb": rss_peak / 2**20,
            }
            out["cpu_share_of_drain"] = out["cpu_s"] / (t_done - t_serving) if t_done > t_serving else None
            if sizes:
                out["sizes"] = await store_sizes(conn)
            if replay:
                out.update(await replay_service(env, run, timeout_s=timeout_s))
            if hold is not None:
                if py_spy_held:  # record the latency run (the live path) rather than the drain
                    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
                    run.spy = subprocess.Popen([exe, "record", "-p", str(proc.pid), "-r", "100", "-f", "raw",
                                                "-o", py_spy_held, "--nonblocking"],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                out["held"] = await hold(conn, proc)
                if py_spy_held:
                    run.stop_spy()
        finally:
            await conn.close()
    return out


async def store_sizes(conn: asyncpg.Connection) -> dict:
    """Bytes per table (heap + indexes + TOAST) of the profile store, per profile and per event."""
    tables = await table_sizes(conn)
    profiles = await conn.fetchval("SELECT count(*) FROM profiles WHERE merged_into IS NULL")
    events = await conn.fetchval("SELECT count(*) FROM profile_events")
    total = sum(t["bytes"] for t in tables.values())
    per_event = sum(tables[t]["bytes"] for t in EVENT_TABLES if t in tables)
    per_profile = total - per_event
    return {"tables": tables, "profiles": profiles, "events": events, "total_bytes": total,
            "bytes_per_profile": total / profiles if profiles else None,
            "bytes_per_event": total / events if events else None,
            "total_mb_per_million_profiles": total / profiles * 1e6 / 2**20 if profiles else None,
            "event_tables_bytes_per_event": per_event / events if events else None,
            "profile_tables_bytes_per_profile": per_profile / profiles if profiles else None}


# --- baselines ------------------------------------------------------------------------------------


async def copy_baseline(server_url: str, db_name: str, n: int, *, batch: int = BATCH, sizes: bool = False) -> dict:
    """Bare asyncpg COPY of n timeline-shaped rows, `batch` rows per transaction; rows/s."""
    run = secrets.token_hex(3)
    props = _dumps({**CATALOG[1], "currency": "EUR", "url": "https://moda.example/producto/sku-00001"})
    rows = [(envelope.derived_id("e", run, str(i)), envelope.derived_id("p", run, str(i // 20)),
             _ts(T0 + i), "track", "Product Viewed", props) for i in range(n)]
    conn = await asyncpg.connect(with_database(server_url, db_name))
    table = f"copy_{run}"
    try:
        await conn.execute(f"CREATE TABLE {table} (event_id text PRIMARY KEY, profile_id text NOT NULL, "
                           "occurred_at timestamptz NOT NULL, kind text NOT NULL, event_name text, properties jsonb)")
        t = time.perf_counter()
        for i in range(0, n, batch):
            async with conn.transaction():
                await conn.copy_records_to_table(table, columns=["event_id", "profile_id", "occurred_at", "kind",
                                                                 "event_name", "properties"], records=rows[i:i + batch])
        secs = time.perf_counter() - t
        out = {"copy_rows_per_s": n / secs, "copy_seconds": secs}
        if sizes:
            await conn.execute(f"VACUUM ANALYZE {table}")
            b = await conn.fetchval(f"SELECT pg_total_relation_size('{table}')")
            out["copy_bytes_per_row"] = b / n
        await conn.execute(f"DROP TABLE {table}")
        return out
    finally:
        await conn.close()


def _ts(sec: int):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(sec, UTC)


async def fetch_ack_baseline(bus: Bus) -> dict:
    """The bare fetch+ack loop over IDENTITY (harness.fetch_ack_baseline)."""
    return await harness.fetch_ack_baseline(bus, IDENTITY, BATCH)


# --- latency ------------------------------------------------------------------------------------------


class _Matcher:
    """Pairs sends (key -> scheduled time) with arrivals (key -> arrival time), in any order."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.sent: dict[str, float] = {}
        self.arrived: dict[str, float] = {}
        self.latencies: list[float] = []
        self.expected = 0
        self.done = asyncio.Event()

    def on_sent(self, key: str, at: float) -> None:
        if key in self.arrived:
            self.latencies.append(self.arrived.pop(key) - at)
        else:
            self.sent[key] = at
        self._check()

    def on_arrival(self, key: str) -> None:
        now = self.loop.time()
        at = self.sent.pop(key, None)
        if at is not None:
            self.latencies.append(now - at)
            self._check()
        elif key not in self.arrived:
            self.arrived[key] = now

    def _check(self) -> None:
        if self.expected and len(self.latencies) >= self.expected:
            self.done.set()

    async def wait(self, expected: int, timeout: float) -> None:
        self.expected = expected
        self._check()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.done.wait(), timeout)


def _summary(latencies_s: list[float], sent: int, errors: int, secs: float) -> dict:
    ms = [x * 1000 for x in latencies_s]
    if not ms:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan"), "count": 0, "sent": sent,
                "missing": sent, "errors": errors, "send_seconds": secs}
    return {"p50_ms": percentile(ms, 50), "p90_ms": percentile(ms, 90), "p99_ms": percentile(ms, 99),
            "max_ms": max(ms), "count": len(ms), "sent": sent, "missing": sent - len(ms), "errors": errors,
            "send_seconds": secs}


class LatencyRun:
    """Open-loop resolved events into CDP_IDENTITY (figure) and a bare publish -> pull round trip
    (baseline) on the same schedule, each timed to its arrival."""

    def __init__(self, bus: Bus, wl: Workload, rate: float, seconds: float, seed: int):
        self.bus, self.wl, self.rate, self.seconds = bus, wl, rate, seconds
        self.rng = random.Random(seed + 99)
        self.weights = list(_cumulative([p.events for p in wl.people]))
        self.i = len(wl.messages) + 10_000_000  # event numbers after the pre-loaded ones
        self.matcher: _Matcher | None = None
        self.sample: list[str] = []
        self.sizes: list[int] = []
        # The service emits one cdp.profile.changed per profile per transaction, naming the last
        # event of the profile it applied; it covers that profile's earlier events too.
        self.sent_by_profile: dict[str, list[str]] = {}  # profile id -> event ids in send order
        self.where: dict[str, tuple[str, int]] = {}  # event id -> (profile id, index in that list)
        self.covered: dict[str, int] = {}  # profile id -> how many of its events a change covered

    def next_message(self, sec: int) -> tuple[Outgoing, str]:
        p = self.rng.choices(self.wl.people, cum_weights=self.weights)[0]
        self.i += 1
        ev, ids, _ = p.next_event(self.rng, sec, self.i)
        msg = resolved_message(p, ev, ids, self.wl.seen, sec, self.i)
        key = envelope.derived_id("bench-profile", p.run, str(self.i))
        keys = self.sent_by_profile.setdefault(p.profile_id, [])
        self.where[key] = (p.profile_id, len(keys))
        keys.append(key)
        return msg, key

    async def figure(self, secs: float | None = None) -> dict:
        loop = asyncio.get_running_loop()
        m = self.matcher = _Matcher(loop)
        errors = 0
        sec0 = T0 + 40 * 86400 + int(time.time()) % 86400
        js = self.bus.js

        async def send(i: int, at: float) -> None:
            nonlocal errors
            msg, key = self.next_message(sec0 + int(i / self.rate))
            self.sizes.append(len(msg.data))
            m.on_sent(key, at)
            if i % 97 == 0:
                self.sample.append(key)
            try:
                await js.publish(msg.subject, msg.data, headers={"Nats-Msg-Id": msg.msg_id})
            except Exception:  # noqa: BLE001 - counted
                errors += 1

        n = max(1, int(self.rate * (secs or self.seconds)))
        t = time.perf_counter()
        await paced(self.rate, n, send)
        sent_s = time.perf_counter() - t
        await m.wait(n - errors, 60)
        self.matcher = None
        return _summary(m.latencies, n, errors, sent_s)

    async def on_changed(self, msg) -> None:
        if self.matcher is None:
            return
        try:
            changed = envelope.unpack(envelope.decode(msg.data), profile_events.ProfileChanged)
        except Exception:  # noqa: BLE001 - not ours
            return
        pos = self.where.get(changed.event_id)
        if pos is None:
            return
        pid, i = pos
        done = self.covered.get(pid, 0)
        for key in self.sent_by_profile[pid][done:i + 1]:  # this change and the ones it covers
            self.matcher.on_arrival(key)
        self.covered[pid] = max(done, i + 1)


def _cumulative(xs: list[int]):
    s = 0
    for x in xs:
        s += x
        yield s


async def latency(env: Env, wl: Workload, conn: asyncpg.Connection, *, rate: float, seconds: float,
                  repetitions: int, seed: int, warmup_seconds: float | None = None) -> dict:
    """With the profile process caught up: figure and baseline, interleaved, medians."""
    import nats
    from nats.js import api

    run = LatencyRun(env.bus, wl, rate, seconds, seed)
    warmup_seconds = min(2.0, seconds) if warmup_seconds is None else warmup_seconds
    nc = env.bus.nc
    sub = await nc.subscribe(CHANGED, cb=run.on_changed)
    await nc.flush()
    js = env.bus.js
    bench_stream = "BENCH_" + secrets.token_hex(4).upper()
    bench_subject = f"bench.{bench_stream.lower()}.resolved"
    await js.add_stream(api.StreamConfig(name=bench_stream, subjects=[bench_subject], storage=api.StorageType.FILE,
                                         retention=api.RetentionPolicy.LIMITS, duplicate_window=DUPLICATE_WINDOW_S))
    psub = await js.pull_subscribe(bench_subject, durable="bench", stream=bench_stream,
                                   config=api.ConsumerConfig(ack_policy=api.AckPolicy.EXPLICIT, max_ack_pending=10_000))
    stop = asyncio.Event()
    base_matcher: list[_Matcher | None] = [None]
    consumer_errors: list[str] = []

    async def consume() -> None:
        while not stop.is_set():
            try:
                msgs = await psub.fetch(BATCH, timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except Exception as e:  # noqa: BLE001 - reported
                consumer_errors.append(repr(e)[:200])
                await asyncio.sleep(0.05)
                continue
            for m in msgs:
                if base_matcher[0] is not None:
                    base_matcher[0].on_arrival(m.headers.get("Nats-Msg-Id", "") if m.headers else "")
                await m.ack()

    task = asyncio.create_task(consume())
    size = len(wl.messages[0].data) if wl.messages else 1200

    async def baseline(secs: float | None = None) -> dict:
        loop = asyncio.get_running_loop()
        m = base_matcher[0] = _Matcher(loop)
        tag = secrets.token_hex(4)
        body = secrets.token_bytes(int(median(run.sizes)) if run.sizes else size)
        errors = 0

        async def send(i: int, at: float) -> None:
            nonlocal errors
            key = f"{tag}-{i}"
            m.on_sent(key, at)
            try:
                await js.publish(bench_subject, body, headers={"Nats-Msg-Id": key})
            except Exception:  # noqa: BLE001 - counted
                errors += 1

        n = max(1, int(rate * (secs or seconds)))
        t = time.perf_counter()
        await paced(rate, n, send)
        sent_s = time.perf_counter() - t
        await m.wait(n - errors, 60)
        base_matcher[0] = None
        return _summary(m.latencies, n, errors, sent_s)

    figs, bases = [], []
    try:
        await run.figure(warmup_seconds)
        await baseline(warmup_seconds)
        for i in range(repetitions):
            order = [(run.figure, figs), (baseline, bases)]
            if i % 2:
                order.reverse()
            for fn, acc in order:
                acc.append(await fn())
        found = await conn.fetchval("SELECT count(*) FROM profile_events WHERE event_id = ANY($1::text[])",
                                    run.sample)
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
        for s in (sub, psub):  # a subscription left open holds the bus's drain for its full timeout
            with contextlib.suppress(Exception):
                await s.unsubscribe()
        with contextlib.suppress(Exception):
            await js.delete_stream(bench_stream)

    def comp(metric: str) -> dict:
        f, b = median([x[metric] for x in figs]), median([x[metric] for x in bases])
        return Comparison(name=f"event -> profile.changed {metric} vs bare JetStream publish -> pull receive",
                          unit="ms", metric=metric, higher_is_better=False, figure=f, baseline=b, ratio=ratio(f, b),
                          figure_runs=[x[metric] for x in figs], baseline_runs=[x[metric] for x in bases],
                          repetitions=repetitions, warmup=1).to_json()

    return {"rate_per_s": rate, "seconds": seconds, "repetitions": repetitions,
            "p50": comp("p50_ms"), "p99": comp("p99_ms"), "runs": figs, "baseline_runs": bases,
            "missing": sum(x["missing"] for x in figs), "errors": sum(x["errors"] for x in figs),
            "baseline_consumer_errors": consumer_errors[:5],
            "sample_in_profile_store": f"{found}/{len(run.sample)}",
            "envelope_bytes_median": median(run.sizes) if run.sizes else None,
            "matched_by": "cdp.profile.changed (core NATS subscription): ProfileChanged.event_id = the ingest event id "
                  "of the profile's last event in the change, which covers its earlier events"}


# --- the scenario --------------------------------------------------------------------------------


def compute_ceiling(wl: Workload, *, limit: int = 20_000) -> dict:
    """The computed traits alone, in this process, with no database and no bus: parsing each
    resolved event as the service does, folding it into its profile's state, and computing the
    profile's values after it (what a batch of one event per profile costs; a batch holding
    several events of a profile computes the values once). The service cannot go faster than
    this on one core, whatever its I/O costs."""
    import orjson

    from cdp_profile.incremental import State, Unfoldable
    from cdp_profile.projection import _event

    msgs = wl.messages[:limit]
    t0 = time.perf_counter()
    parsed = []
    for m in msgs:
        r = envelope.unpack(envelope.decode(m.data), identity_events.IdentityResolved)
        parsed.append((r.profile_id, _event((r.event_id, r.profile_id, envelope.from_ts(r.event.timestamp)), r.event)))
    t1 = time.perf_counter()
    states: dict[str, State] = {}
    fold_s = values_s = 0.0
    for pid, e in parsed:
        st = states.setdefault(pid, State())
        a = time.perf_counter()
        try:
            st.fold(e)
        except Unfoldable:  # an event older than the state's latest (the workload is in time order: rare)
            states[pid] = st = State.from_events([e])
        b = time.perf_counter()
        orjson.dumps(st.result())
        values_s += time.perf_counter() - b
        fold_s += b - a
    n = len(parsed)
    per_event_us = {"parse": (t1 - t0) / n * 1e6, "fold": fold_s / n * 1e6, "values": values_s / n * 1e6}
    total = sum(per_event_us.values())
    return {"events": n, "per_event_us": per_event_us, "total_us": total, "ceiling_events_per_s": 1e6 / total}


async def throughput(env: Env, *, events: int, events_per_profile: float, repetitions: int, seed: int,
                     py_spy: str | None = None, rate: float = 1000, seconds: float = 20,
                     latency_repetitions: int = 3, do_latency: bool = True, py_spy_latency: str | None = None
                     ) -> dict:
    with contextlib.suppress(Exception):
        await env.bus.js.purge_stream(IDENTITY)
    t = time.perf_counter()
    wl = make_workload(events, events_per_profile=events_per_profile, seed=seed)
    gen_s = time.perf_counter() - t
    shape = workload_shape(wl)
    ceiling = compute_ceiling(wl)
    pub_s = await publish_all(env.bus, wl.messages)
    admin = await asyncpg.connect(with_database(env.infra.database_url, "postgres"))
    base_db = f"bench_{secrets.token_hex(4)}_copy"
    try:
        await admin.execute(f'CREATE DATABASE "{base_db}"')
    finally:
        await admin.close()
    figs, copies, fetches = [], [], []

    async def hold(conn, proc) -> dict:
        return await latency(env, wl, conn, rate=rate, seconds=seconds, repetitions=latency_repetitions, seed=seed)

    try:
        for i in range(repetitions):
            last = i == repetitions - 1
            steps = ["profile", "copy", "fetch"]
            if i % 2:
                steps.reverse()
            if last:  # the latency run follows the last drain, on the stream the baselines read
                steps = [s for s in steps if s != "profile"] + ["profile"]
            for what in steps:
                if what == "profile":
                    figs.append(await drain_once(env, sizes=i == 0, py_spy=py_spy if last else None,
                                                 hold=hold if last and do_latency else None, replay=not last,
                                                 py_spy_held=py_spy_latency if last else None))
                elif what == "copy":
                    copies.append(await copy_baseline(env.infra.database_url, base_db, events, sizes=i == 0))
                else:
                    fetches.append(await fetch_ack_baseline(env.bus))
    finally:
        with contextlib.suppress(Exception):
            await drop_database(env.infra.database_url, base_db)

    def comp(name: str, base: list[dict], bmetric: str) -> dict:
        fr, br = [f["events_per_s"] for f in figs], [b[bmetric] for b in base]
        return Comparison(name=name, unit="events/s", metric="events_per_s", higher_is_better=True,
                          figure=median(fr), baseline=median(br), ratio=ratio(median(fr), median(br)),
                          figure_runs=fr, baseline_runs=br, repetitions=repetitions, warmup=0).to_json()

    out = {
        "events": events, "workload": shape, "generate_s": gen_s, "publish_s": pub_s, "compute_ceiling": ceiling,
        "vs_fetch_ack": comp("profile events projected/s vs bare JetStream fetch+ack msgs/s (fetch 256)",
                             fetches, "fetch_ack_msgs_per_s"),
        "vs_copy": comp("profile events projected/s vs bare asyncpg COPY rows/s (256 per transaction)",
                        copies, "copy_rows_per_s"),
        "runs": [{k: v for k, v in f.items() if k not in ("sizes", "held")} for f in figs],
        "copy_runs": copies, "fetch_runs": fetches,
        "rss_peak_mb": median([f["rss_peak_mb"] for f in figs]),
        "relay_lag_s": median([f["relay_lag_s"] for f in figs]),
        "computed_lag_s": median([f.get("computed_lag_s", 0.0) for f in figs]),
        "events_per_s_computed": median([f.get("events_per_s_computed", 0.0) for f in figs]),
    }
    if figs and "sizes" in figs[0]:
        s = figs[0]["sizes"]
        out["disk"] = {**s, "copy_bytes_per_row": copies[0].get("copy_bytes_per_row") if copies else None,
                       "events_per_profile": s["events"] / s["profiles"] if s["profiles"] else None}
    if figs and "held" in figs[-1]:
        out["latency"] = figs[-1]["held"]
    replays = [f["replay_events_per_s"] for f in figs if "replay_events_per_s" in f]
    if replays:
        replay = median(replays)
        how = ("`cdp replay profile` (ReplayService) on the process the drain above left caught up: the projection "
               "rebuilt from sequence 1 into new tables and swapped in, StartReplay to done (median of "
               f"{len(replays)}: {', '.join(f'{x:,.0f}' for x in replays)})")
    else:  # a single repetition: its process holds the latency run instead
        replay = out["vs_fetch_ack"]["figure"]
        how = ("the projection code `cdp replay profile` runs, measured as the drain above: a fresh database and a "
               "new durable consumer reading CDP_IDENTITY from sequence 1 (no replay was timed)")
    out["replay"] = {"built": True, "how": how, "events_per_s": replay, "steady_rate_per_s": rate,
                     "ratio_to_steady": replay / rate}
    return out


def code_state() -> dict:
    root = Path(__file__).resolve().parents[3]

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:  # noqa: BLE001 - informational
            return ""

    dirty = git("status", "--porcelain", "--", "services/profile", "libs/cdp_core")
    return {"head": git("rev-parse", "HEAD"), "uncommitted_in_services_profile_or_cdp_core": dirty.splitlines()}


async def run_profile_bench(*, events: int = 100_000, events_per_profile: float = 20.0, repetitions: int = 3,
                            rate: float = 1000, seconds: float = 20, latency_repetitions: int = 3, seed: int = 1,
                            skip: tuple[str, ...] = (), py_spy: str | None = None,
                            py_spy_latency: str | None = None) -> dict:
    result: dict = {"benchmark": "profile", "started": now_iso(), "machine": machine_info(),
                    "load_average": os.getloadavg(), "code": code_state()}
    async with bench_env("profile", ["identity"]) as env:
        if "throughput" not in skip:
            result["throughput"] = await throughput(
                env, events=events, events_per_profile=events_per_profile, repetitions=repetitions, seed=seed,
                py_spy=py_spy, rate=rate, seconds=seconds, latency_repetitions=latency_repetitions,
                do_latency="latency" not in skip, py_spy_latency=py_spy_latency)
    result["finished"] = now_iso()
    result["load_average_end"] = os.getloadavg()
    return result


def render(result: dict) -> str:
    c = result["code"]
    lines = [f"profile benchmark ({result['started']} → {result['finished']}, load {result['load_average']} → "
             f"{result['load_average_end']}); HEAD {c['head'][:10]}, uncommitted in services/profile or cdp_core: "
             f"{len(c['uncommitted_in_services_profile_or_cdp_core'])} files"]
    r = result.get("throughput")
    if not r:
        return "\n".join(lines)
    w = r["workload"]
    lines += ["", f"workload: {r['events']:,} resolved events of {w['profiles']:,} profiles (mean "
                  f"{w['events_per_profile_mean']:.1f}, median {w['events_per_profile_p50']}, p99 "
                  f"{w['events_per_profile_p99']}, max {w['events_per_profile_max']} events per profile; top 1 % "
                  f"of profiles hold {w['share_of_events_in_top_1pct_profiles']:.0%} of events), envelope "
                  f"{w['mean_envelope_bytes']:.0f} B; kinds {w['kinds']}",
              "1. events projected/s",
              render_comparison(Comparison(**r["vs_fetch_ack"])), render_comparison(Comparison(**r["vs_copy"])),
              f"  goal ≥ 0.6 of fetch+ack: {'met' if r['vs_fetch_ack']['ratio'] >= 0.6 else 'NOT met'}; peak RSS "
              f"{r['rss_peak_mb']:.0f} MB; relay lag after the last commit {r['relay_lag_s']:.1f} s; CPU share of "
              f"the drain {median([x['cpu_share_of_drain'] or 0 for x in r['runs']]):.2f}",
              f"  with every computed trait computed (no profile left marked): {r.get('events_per_s_computed', 0):,.0f} "
              f"events/s, {r.get('events_per_s_computed', 0) / max(r['vs_fetch_ack']['baseline'], 1):.3f} of fetch+ack; "
              f"computed traits settled {r.get('computed_lag_s', 0):.1f} s after the last event"]
    lat = r.get("latency")
    if lat:
        lines += [f"2. latency at {lat['rate_per_s']:g}/s for {lat['seconds']:g} s (open loop, {lat['matched_by']})",
                  render_comparison(Comparison(**lat["p50"])), render_comparison(Comparison(**lat["p99"])),
                  f"  missing {lat['missing']}, errors {lat['errors']}; sample found in the profile store "
                  f"{lat['sample_in_profile_store']}; goal p99 < 100 ms: "
                  f"{'met' if lat['p99']['figure'] < 100 else 'NOT met'}"]
    rp = r["replay"]
    lines.append(f"3. replay ({rp['how']}): {rp['events_per_s']:,.0f} events/s = "
                 f"{rp['ratio_to_steady']:.2f}× the steady {rp['steady_rate_per_s']:g}/s; goal ≥ 3×: "
                 f"{'met' if rp['ratio_to_steady'] >= 3 else 'NOT met'}")
    d = r.get("disk")
    if d:
        lines.append(f"4. disk: {d['profiles']:,} profiles, {d['events']:,} events ({d['events_per_profile']:.1f} "
                     f"per profile): {d['total_bytes'] / 2**20:.1f} MB = {d['bytes_per_profile']:,.0f} B per profile, "
                     f"{d['bytes_per_event']:,.0f} B per event → {d['total_mb_per_million_profiles']:,.0f} MB per "
                     f"million profiles; baseline bare COPY row {d['copy_bytes_per_row'] or 0:.0f} B")
        for t, s in sorted(d["tables"].items(), key=lambda kv: -kv[1]["bytes"])[:8]:
            lines.append(f"     {t:<20} {s['bytes'] / 2**20:8.1f} MB  ({s['bytes'] / d['profiles']:,.0f} B per profile)")
    cc = r.get("compute_ceiling")
    if cc:
        us = cc["per_event_us"]
        need = 0.6 * r["vs_fetch_ack"]["baseline"]
        lines.append(f"5. the computed traits alone (this process, no database, no bus; {cc['events']:,} events, values "
                     f"after each): parse {us['parse']:.0f} µs + fold {us['fold']:.0f} µs + values {us['values']:.0f} µs "
                     f"= {cc['total_us']:.0f} µs per event → at most {cc['ceiling_events_per_s']:,.0f} events/s on one "
                     f"core; 0.6 of fetch+ack is {need:,.0f} events/s")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", type=int, default=100_000, help="resolved events pre-loaded (100000)")
    p.add_argument("--events-per-profile", type=float, default=20.0, help="mean events per profile (20; lognormal)")
    p.add_argument("--repetitions", type=int, default=3, help="interleaved drain repetitions, medians (3)")
    p.add_argument("--rate", type=float, default=1000, help="latency: resolved events per second (1000)")
    p.add_argument("--seconds", type=float, default=20, help="latency: seconds per run (20)")
    p.add_argument("--latency-repetitions", type=int, default=3, help="latency: interleaved runs, medians (3)")
    p.add_argument("--seed", type=int, default=1, help="workload seed (1)")
    p.add_argument("--skip", default="", help="comma-separated: throughput, latency")
    p.add_argument("--py-spy", default=None, help="record the last drain's profile process with py-spy (raw) here")
    p.add_argument("--py-spy-latency", default=None,
                   help="record the profile process during the latency runs with py-spy (raw) here")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")


def run(args: argparse.Namespace) -> dict:
    return asyncio.run(run_profile_bench(
        events=args.events, events_per_profile=args.events_per_profile, repetitions=args.repetitions,
        rate=args.rate, seconds=args.seconds, latency_repetitions=args.latency_repetitions, seed=args.seed,
        skip=tuple(s.strip() for s in args.skip.split(",") if s.strip()), py_spy=args.py_spy,
        py_spy_latency=args.py_spy_latency))
