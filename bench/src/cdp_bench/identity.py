"""Identity: resolutions/s (deterministic and merge-heavy), memory per million identifiers, and
accuracy end to end against the simulator's ground truth — each beside a baseline measured in
the same run.

`python -m cdp_bench identity [--events 200000] [--merge-share 0.3] [--repetitions 3]
[--people 2000 --days 30 --seed 1] [--skip throughput,merge,accuracy] [--json]`

1. **Resolutions/s, deterministic.** `--events` realistic ingest events (EventCollected
   envelopes written with `cdp_core.envelope.encode`, as ingest writes them, published with
   `Bus.publish_batch` to `CDP_INGEST`): anonymous page/track calls, tracks of logged-in
   users, identify calls with user_id + anonymous_id + traits.email (some link an anonymous
   profile to a known user: a merge). Then ONE identity process (`python -m cdp_identity`,
   fresh database, fresh durable consumer) drains the stream. resolutions/s = events resolved
   ÷ seconds from the first batch committed (the first row in `cdp_tracking`) until
   `cdp_tracking` holds the stream's last sequence (process start-up and migrations are not
   counted). Baselines in the same run, interleaved with it: (a) bare asyncpg
   `copy_records_to_table` of as many identifier rows (type, value, profile_id,
   first_event_id, first_seq; primary key (type, value)) in transactions of 256 rows, the
   consumer's batch size, fsync on; (b) a bare JetStream pull loop (fetch 256, ack each
   message) over the same stream.
2. **Merge-heavy**: the same with `--merge-share` (0.3) of the events each joining two
   profiles that were separate until then (an identify that brings a known user_id and an
   anonymous id that has its own profile); resolutions/s and merges/s.
3. **Memory per million identifiers**: after the deterministic drain, the identity
   database's tables with their indexes and TOAST (`pg_total_relation_size` of identifiers,
   profiles, resolutions, seen_events, merges, cdp_tracking, …) ÷ identifiers × 10^6; beside
   the bare COPY table's size per row. The identity process's peak RSS during the drain.
4. **Accuracy end to end**: a simulated world (`cdp_sim.World`) loaded through the real paths
   by `cdp_cli.demo.run_world` (Segment calls to the HTTP edge, Shopify webhooks, CRM and POS
   CSV imports) into ingest + identity + profile processes; after identity and profile have
   caught up, the graph is exported (IdentityService/ExportGraph) and the identity stream
   (`cdp.identity.resolved` with each event's new identifiers, `cdp.identity.merged` with the
   rule) is read back to attribute every link to what made it. See `pair_definition()`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from cdp.ingest.v1 import events_pb2 as ingest_events
from cdp_core import envelope
from cdp_core.bus import Bus, Outgoing, stream_name
from cdp_core.settings import with_database

from . import harness
from .harness import Comparison, machine_info, median, now_iso, ratio, render_comparison
from .stack import (
    Env,
    bench_env,
    drop_database,
    publish_all,
    service_process,
    table_sizes,
    watch_drain,
)

INGEST = stream_name("ingest")
BATCH = 256  # the consumer's fetch size (cdp_core.consumer.ConsumerRunner)
IDENTITY_TABLES = ("identifiers", "profiles", "resolutions", "seen_events", "merges", "dropped_links",
                   "match_records", "match_blocks", "candidates", "cdp_tracking", "cdp_outbox")
GRAPH_TABLES = ("identifiers", "profiles", "merges")  # grow with identifiers and merges
EVENT_TABLES = ("resolutions", "seen_events", "cdp_tracking")  # grow with every event resolved
_CONTEXT = {"library": {"name": "analytics.js", "version": "4.1.0"}, "ip": "203.0.113.7", "locale": "es-ES",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0"}
_PAGES = ("/", "/mujer/vestidos", "/hombre/camisas", "/carrito", "/producto/sku-{n}")
_TRACKS = ("Product Viewed", "Product Added", "Products Searched", "Cart Viewed", "Checkout Started")


# --- the workload -----------------------------------------------------------------------------


@dataclass
class Workload:
    messages: list[Outgoing]
    kinds: Counter
    intended_merges: int  # events built to join two separate profiles (merge-heavy); 0 otherwise


def _event(i: int, run: str, kind: str, *, user_id: str = "", anonymous_id: str = "", email: str = "",
           first_name: str = "", n: int = 0, rng: random.Random, t0: int) -> Outgoing:
    ev = ingest_events.EventCollected(kind=kind, message_id=f"{run}-{i}", user_id=user_id, anonymous_id=anonymous_id,
                                      source_id="bench-web", source_kind="web")
    page = rng.choice(_PAGES).format(n=n % 3000)
    ev.context_json = json.dumps({**_CONTEXT, "page": {"path": page, "url": "https://moda.example" + page}},
                                 separators=(",", ":"))
    if kind == "track":
        ev.event = rng.choice(_TRACKS)
        ev.properties_json = json.dumps({"product_id": f"sku-{n % 3000}", "price": round(rng.uniform(5, 120), 2),
                                         "currency": "EUR"}, separators=(",", ":"))
    elif kind == "page":
        ev.name = page
    elif kind == "identify":
        ev.traits_json = json.dumps({"email": email, "firstName": first_name}, separators=(",", ":"))
    sec = t0 + i // 50
    ev.timestamp.seconds = sec
    ev.received_at.seconds = sec
    event_id = envelope.derived_id("bench-identity", run, str(i))
    subject = f"cdp.ingest.event.{kind}"
    data = envelope.encode(subject, ev, producer="ingest", event_id=event_id, occurred_at=(sec, 0),
                           recorded_at=(sec, 0))
    return Outgoing(subject, data, event_id)


def make_workload(n: int, *, merge_share: float = 0.0, seed: int = 1) -> Workload:
    """`n` ingest events. With merge_share 0 a realistic web mix (per event: 55 % anonymous
    page/track, 25 % track of a logged-in user, 12 % identify of a known person with an
    anonymous id of theirs — which merges when that anonymous id already has a profile of its
    own —, 8 % identify of a new person). With merge_share s > 0: a share s of the events are
    identify calls that join a known user's profile and a different, earlier anonymous-only
    profile (a guaranteed merge); 40 % anonymous page views on new cookies (which feed them),
    10 % identify of new people, the rest tracks of known users."""
    if not 0 <= merge_share <= 0.45:
        raise ValueError("merge_share must be within 0..0.45 (each merge needs an anonymous event before it)")
    rng = random.Random(seed)
    run = secrets.token_hex(4)
    t0 = 1_767_225_600  # 2026-01-01
    out: list[Outgoing] = []
    kinds: Counter = Counter()
    intended = 0
    people: list[dict] = []  # identified people: user_id, email, their anonymous ids

    def new_person() -> dict:
        k = len(people)
        p = {"user_id": f"u-{run}-{k}", "email": f"Person.{k}.{run}@Example.com ", "name": f"Name{k}",
             "anon": [f"a-{run}-{k}-0"], "pending": []}
        people.append(p)
        return p

    anon_seq = [0]

    def new_anon() -> str:
        anon_seq[0] += 1
        return f"c-{run}-{anon_seq[0]}"

    for i in range(n):
        r = rng.random()
        kind, kw = "page", {}
        if not people or r > 0.999:  # someone to identify, from the first event on
            p = new_person()
            kind, kw = "identify", {"user_id": p["user_id"], "anonymous_id": p["anon"][0], "email": p["email"],
                                    "first_name": p["name"]}
        elif merge_share:
            waiting = [p for p in people[-64:] if p["pending"]]
            if r < merge_share and waiting:
                p = rng.choice(waiting)
                a = p["pending"].pop()
                p["anon"].append(a)
                kind, kw = "identify", {"user_id": p["user_id"], "anonymous_id": a, "email": p["email"],
                                        "first_name": p["name"]}
                intended += 1
            elif r < merge_share + 0.40 or not people:
                if people:
                    p = people[-1 - min(len(people) - 1, int(rng.expovariate(1 / 16)))]
                    a = new_anon()
                    p["pending"].append(a)
                else:
                    a = new_anon()
                kind, kw = "page", {"anonymous_id": a}
            elif r < merge_share + 0.50:
                p = new_person()
                kind, kw = "identify", {"user_id": p["user_id"], "anonymous_id": p["anon"][0], "email": p["email"],
                                        "first_name": p["name"]}
            else:
                p = rng.choice(people)
                kind, kw = "track", {"user_id": p["user_id"], "anonymous_id": rng.choice(p["anon"])}
        else:
            if r < 0.55 or not people:
                if people and rng.random() < 0.7:
                    p = rng.choice(people)
                    if rng.random() < 0.15:  # a new cookie or device of a known person, not yet identified
                        p["pending"].append(new_anon())
                    a = rng.choice(p["pending"] or p["anon"])
                else:
                    a = new_anon()  # a visitor who never identifies
                kind, kw = rng.choice(("page", "track")), {"anonymous_id": a}
            elif r < 0.80:
                p = rng.choice(people)
                kind, kw = "track", {"user_id": p["user_id"], "anonymous_id": rng.choice(p["anon"])}
            elif r < 0.92:
                p = rng.choice(people)
                a = p["pending"].pop() if p["pending"] else rng.choice(p["anon"])
                if a not in p["anon"]:
                    p["anon"].append(a)
                kind, kw = "identify", {"user_id": p["user_id"], "anonymous_id": a, "email": p["email"],
                                        "first_name": p["name"]}
            else:
                p = new_person()
                kind, kw = "identify", {"user_id": p["user_id"], "anonymous_id": p["anon"][0], "email": p["email"],
                                        "first_name": p["name"]}
        kinds[kind] += 1
        out.append(_event(i, run, kind, n=i, rng=rng, t0=t0, **kw))
    return Workload(out, kinds, intended)


# --- one identity process -----------------------------------------------------------------------


async def _last_seq(env: Env) -> int:
    return (await env.bus.js.stream_info(INGEST)).state.last_seq


async def drain_once(env: Env, *, timeout_s: float = 1800, sizes: bool = False, py_spy: str | None = None) -> dict:
    """Starts one identity process on a fresh database and durable consumer, times how fast it
    resolves everything in CDP_INGEST, stops it. Returns the figures (and the store's sizes)."""
    state = (await env.bus.js.stream_info(INGEST)).state
    first, last, n = state.first_seq, state.last_seq, state.messages
    async with service_process(env, "identity", INGEST, py_spy=py_spy) as run:
        proc, t_serving = run.proc, run.t_serving
        conn = await asyncpg.connect(run.db)
        try:
            d = await watch_drain(conn, "identity", last, proc, timeout_s=timeout_s, log=run.log)
            t_first, seq_first, t_done, rss_peak = d.t_first, d.seq_first, d.t_done, d.rss_peak
            while await conn.fetchval("SELECT count(*) FROM cdp_outbox"):  # the relay's lag behind the commits
                await asyncio.sleep(0.1)
            t_relayed = time.perf_counter()
            counted = seq_first - first + 1  # resolved before the first observation: not timed
            secs = t_done - t_first
            timed_from = "first commit"
            if secs <= 0 or counted >= n:  # all in the first observation (a tiny run): from SERVING
                counted, secs, timed_from = 0, t_done - t_serving, "serving"
            out = {
                "events": n,
                "resolutions_per_s": (n - counted) / secs,
                "seconds": secs,
                "timed_from": timed_from,
                "seconds_from_serving": t_done - t_serving,
                "relay_lag_s": t_relayed - t_done,
                "merges": await conn.fetchval("SELECT count(*) FROM merges"),
                "profiles_live": await conn.fetchval("SELECT count(*) FROM profiles WHERE merged_into IS NULL"),
                "identifiers": await conn.fetchval("SELECT count(*) FROM identifiers"),
                "failed": await conn.fetchval("SELECT count(*) FROM cdp_failed_events"),
                "rss_peak_mb": rss_peak / 2**20,
            }
            out["merges_per_s"] = out["merges"] * out["resolutions_per_s"] / n
            if sizes:
                out["sizes"] = await store_sizes(conn)
        finally:
            await conn.close()
    return out


async def store_sizes(conn: asyncpg.Connection) -> dict:
    """Bytes per table (with indexes and TOAST) of the identity store, and per million identifiers."""
    tables = await table_sizes(conn)
    ids = await conn.fetchval("SELECT count(*) FROM identifiers")
    events = await conn.fetchval("SELECT count(*) FROM resolutions")
    total = sum(t["bytes"] for t in tables.values())
    graph = sum(tables[t]["bytes"] for t in GRAPH_TABLES if t in tables)
    per_event = sum(tables[t]["bytes"] for t in EVENT_TABLES if t in tables)
    return {"tables": tables, "identifiers": ids, "events": events, "total_bytes": total,
            "total_mb_per_million_identifiers": total / ids * 1e6 / 2**20 if ids else None,
            "graph_mb_per_million_identifiers": graph / ids * 1e6 / 2**20 if ids else None,
            "event_tables_mb_per_million_events": per_event / events * 1e6 / 2**20 if events else None}


# --- baselines ------------------------------------------------------------------------------------


async def copy_baseline(server_url: str, db_name: str, n: int, *, batch: int = BATCH, sizes: bool = False) -> dict:
    """Bare asyncpg COPY of n identifier-shaped rows, `batch` rows per transaction; rows/s."""
    run = secrets.token_hex(3)
    rows = [("anonymous_id" if i % 3 else "user_id", f"c-{run}-{i}", envelope.derived_id("p", run, str(i // 4)),
             envelope.derived_id("e", run, str(i)), i) for i in range(n)]
    conn = await asyncpg.connect(with_database(server_url, db_name))
    table = f"copy_{run}"
    try:
        await conn.execute(f"CREATE TABLE {table} (type text NOT NULL, value text NOT NULL, profile_id text NOT NULL, "
                           "first_event_id text NOT NULL, first_seq bigint NOT NULL, PRIMARY KEY (type, value))")
        t = time.perf_counter()
        for i in range(0, n, batch):
            async with conn.transaction():
                await conn.copy_records_to_table(table, columns=["type", "value", "profile_id", "first_event_id",
                                                                 "first_seq"], records=rows[i:i + batch])
        secs = time.perf_counter() - t
        out = {"copy_rows_per_s": n / secs, "copy_seconds": secs}
        if sizes:
            await conn.execute(f"VACUUM ANALYZE {table}")
            b = await conn.fetchval(f"SELECT pg_total_relation_size('{table}')")
            out["copy_mb_per_million_rows"] = b / n * 1e6 / 2**20
        await conn.execute(f"DROP TABLE {table}")
        return out
    finally:
        await conn.close()


async def fetch_ack_baseline(bus: Bus) -> dict:
    """The bare fetch+ack loop over INGEST (harness.fetch_ack_baseline)."""
    return await harness.fetch_ack_baseline(bus, INGEST, BATCH)


# --- throughput scenarios ---------------------------------------------------------------------------


async def throughput(env: Env, *, events: int, merge_share: float, repetitions: int, seed: int,
                     sizes: bool = False, py_spy: str | None = None) -> dict:
    """Pre-loads the workload into CDP_INGEST (purged first), then `repetitions` interleaved
    rounds of: identity drains it, bare COPY of as many rows, bare fetch+ack of the stream, and
    a bare fetch -> publish -> ack loop (what identity does on NATS, without the database)."""
    with contextlib.suppress(Exception):
        await env.bus.js.purge_stream(INGEST)
    t = time.perf_counter()
    wl = make_workload(events, merge_share=merge_share, seed=seed)
    gen_s = time.perf_counter() - t
    pub_s = await publish_all(env.bus, wl.messages)
    del wl.messages[:]
    admin = await asyncpg.connect(with_database(env.infra.database_url, "postgres"))
    base_db = f"bench_{secrets.token_hex(4)}_copy"
    try:
        await admin.execute(f'CREATE DATABASE "{base_db}"')
    finally:
        await admin.close()
    figs, copies, fetches, pipes = [], [], [], []
    try:
        for i in range(repetitions):
            steps = [("identity", figs), ("copy", copies), ("fetch", fetches), ("pipeline", pipes)]
            if i % 2:
                steps.reverse()
            for what, acc in steps:
                if what == "identity":
                    acc.append(await drain_once(env, sizes=sizes and i == 0,
                                                py_spy=py_spy if i == repetitions - 1 else None))
                elif what == "copy":
                    acc.append(await copy_baseline(env.infra.database_url, base_db, events, sizes=sizes and i == 0))
                elif what == "fetch":
                    acc.append(await fetch_ack_baseline(env.bus))
                else:
                    acc.append(await harness.pipeline_baseline(env.bus, INGEST, BATCH))
    finally:
        with contextlib.suppress(Exception):
            await drop_database(env.infra.database_url, base_db)

    def comp(name: str, metric: str, base: list[dict], bmetric: str, unit: str) -> Comparison:
        fr, br = [f[metric] for f in figs], [b[bmetric] for b in base]
        return Comparison(name=name, unit=unit, metric=metric, higher_is_better=True, figure=median(fr),
                          baseline=median(br), ratio=ratio(median(fr), median(br)), figure_runs=fr, baseline_runs=br,
                          repetitions=repetitions, warmup=0)

    label = "merge-heavy" if merge_share else "deterministic"
    out = {
        "events": events, "merge_share_intended": merge_share, "kinds": dict(wl.kinds),
        "intended_merges": wl.intended_merges, "generate_s": gen_s, "publish_s": pub_s,
        "vs_copy": comp(f"identity resolutions/s ({label}) vs bare asyncpg COPY rows/s (256 per transaction)",
                        "resolutions_per_s", copies, "copy_rows_per_s", "events/s").to_json(),
        "vs_fetch_ack": comp(f"identity resolutions/s ({label}) vs bare JetStream fetch+ack msgs/s",
                             "resolutions_per_s", fetches, "fetch_ack_msgs_per_s", "events/s").to_json(),
        "vs_pipeline": comp(f"identity resolutions/s ({label}) vs bare fetch -> publish -> ack msgs/s (no database, "
                            "no logic: the ceiling of one process)", "resolutions_per_s", pipes,
                            "pipeline_msgs_per_s", "events/s").to_json(),
        "runs": figs, "copy_runs": copies, "fetch_runs": fetches, "pipeline_runs": pipes,
        "merges_per_s": median([f["merges_per_s"] for f in figs]),
        "merges": median([f["merges"] for f in figs]),
        "merge_share_measured": median([f["merges"] for f in figs]) / events,
        "rss_peak_mb": median([f["rss_peak_mb"] for f in figs]),
        "relay_lag_s": median([f["relay_lag_s"] for f in figs]),
    }
    if sizes and figs and "sizes" in figs[0]:
        out["memory"] = {**figs[0]["sizes"], "copy_mb_per_million_rows": copies[0].get("copy_mb_per_million_rows")}
    return out


# --- accuracy -------------------------------------------------------------------------------------------


def pair_definition() -> str:
    return ("A pair is an unordered pair of two distinct identifiers (as identity keys them: type, normalized value) "
            "that identity saw and the ground truth attributes to exactly one person. Predicted pair: both on one live "
            "profile of the exported graph. True pair: the truth gives both to the same person. Identifiers the truth "
            "marks shared (held by several people: family e-mail, shared tablet cookie or device) or placeholder "
            "(test@test.com, +34600000000, all-zero ids) are left out of the pairs (they cannot be right for both "
            "people), but a wrong merge they cause still counts: the pairs it creates between the two people's own "
            "identifiers are false positives. Each predicted pair is attributed to the link that first put its two "
            "identifiers on one profile: 'event' (they arrived on one event, or one was added to a profile the other "
            "was on), or the rule of the merge that joined their profiles (shared-identifier, probabilistic, ...). "
            "deterministic = event + every non-probabilistic merge rule. Recall of deterministic = its true pairs / all "
            "true pairs. Recall of probabilistic = its true pairs / the true pairs deterministic links left apart "
            "(a replay without the probabilistic merges), over identifiers whose deterministic profile holds an "
            "offline (CRM or POS) record; pairs involving a never-identified cookie cannot be linked by anyone and are "
            "left out of that denominator.")


def truth_keys(person: dict) -> list[tuple[tuple[str, str], bool]]:
    """(platform key, evaluable) for a person's identifiers, keyed as identity keys them
    after the demo's loading (crm_id and loyalty_id as custom types — or, with older demo
    mappings, user_id crm-… and anonymous_id loyalty:… —, Shopify customers/orders/checkouts as
    anonymous_id shopify:…); evaluable is False for a shared or placeholder identifier. The
    CSV import's own surrogate anonymous ids (`<source>:email:<hash>`) are in no truth: they
    are counted as unknown and left out."""
    out: dict[tuple[str, str], bool] = {}
    for i in person["identifiers"]:
        t, v = i["type"], str(i["value"])
        keys = {"user_id": [("user_id", v)], "anonymous_id": [("anonymous_id", v)],
                "email": [("email", v.strip().lower())], "phone": [("phone", v)],
                # the demo's CSV mappings: custom types now, prefixed built-in ones before
                "crm_id": [("crm_id", v), ("user_id", "crm-" + v)],
                "loyalty_id": [("loyalty_id", v), ("anonymous_id", "loyalty:" + v)],
                "shopify_customer_id": [("anonymous_id", "shopify:" + v)]}.get(t, [])
        for key in keys:
            out[key] = out.get(key, True) and not (i.get("shared") or i.get("placeholder"))
    r = person.get("records", {})
    for oid in r.get("shopify_order_ids", ()):
        out.setdefault(("anonymous_id", f"shopify:order:{oid}"), True)
    for tok in r.get("shopify_checkout_tokens", ()):
        out.setdefault(("anonymous_id", f"shopify:checkout:{tok}"), True)
    return list(out.items())


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


class _Replay:
    """Union-find over profile ids, fed the identity stream in order; counts the pairs each
    link creates (by rule), with `skip` rules not applied (a deterministic-only replay)."""

    def __init__(self, person_of: dict, skip: frozenset = frozenset()):
        self.person_of, self.skip = person_of, skip
        self.parent: dict[str, str] = {}
        self.members: dict[str, Counter] = {}  # root -> Counter(person -> evaluable identifiers)
        self.keys_of: dict[str, list] = {}
        self.owner: dict[tuple, str] = {}
        self.offline: set[str] = set()
        self.pred: Counter = Counter()
        self.tp: Counter = Counter()

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def _join(self, a: str, b: str, rule: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        ma, mb = self.members.pop(ra, Counter()), self.members.pop(rb, Counter())
        self.pred[rule] += sum(ma.values()) * sum(mb.values())
        self.tp[rule] += sum(c * mb[p] for p, c in ma.items())
        self.parent[rb] = ra
        ma.update(mb)
        self.members[ra] = ma
        self.keys_of.setdefault(ra, []).extend(self.keys_of.pop(rb, []))
        if rb in self.offline:
            self.offline.add(ra)

    def resolved(self, profile_id: str, new: list[tuple], offline: bool) -> None:
        r = self.find(profile_id)
        for k in new:
            if k in self.owner:
                continue
            self.owner[k] = profile_id
            self.keys_of.setdefault(r, []).append(k)
            p = self.person_of.get(k)
            if p is not None:
                m = self.members.setdefault(r, Counter())
                self.pred["event"] += sum(m.values())
                self.tp["event"] += m[p]
                m[p] += 1
        if offline:
            self.offline.add(r)

    def merged(self, survivor: str, merged: str, rule: str) -> None:
        if rule in self.skip:
            self.find(survivor), self.find(merged)
            return
        self._join(survivor, merged, rule)

    def clusters(self) -> dict[tuple, str]:
        return {k: self.find(p) for k, p in self.owner.items()}


async def read_identity_stream(nats_url: str) -> list[tuple[str, object]]:
    """Every cdp.identity.resolved / merged / split event of CDP_IDENTITY, in log order."""
    import nats

    from cdp.identity.v1 import events_pb2 as identity_events

    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    out = []
    try:
        info = await js.stream_info(stream_name("identity"))
        n = info.state.messages
        sub = await js.subscribe("cdp.identity.>", ordered_consumer=True, stream=stream_name("identity"))
        types = {"cdp.identity.resolved": identity_events.IdentityResolved,
                 "cdp.identity.merged": identity_events.ProfilesMerged,
                 "cdp.identity.split": identity_events.ProfilesSplit}
        for _ in range(n):
            m = await sub.next_msg(timeout=10)
            env = envelope.decode(m.data)
            cls = types.get(env.type)
            if cls is not None:
                out.append((env.type, envelope.unpack(env, cls)))
        await sub.unsubscribe()
    finally:
        await nc.close()
    return out


async def export_graph(channel) -> dict[tuple, str]:
    from cdp.identity.v1 import identity_pb2, identity_pb2_grpc

    stub = identity_pb2_grpc.IdentityServiceStub(channel)
    out = {}
    async for e in stub.ExportGraph(identity_pb2.ExportGraphRequest(), timeout=300):
        for i in e.identifiers:
            out[(i.type, i.value)] = e.profile_id
    return out


def score(graph: dict[tuple, str], stream: list, truth: list[dict]) -> dict:
    """Pairwise precision/recall (see pair_definition) of the exported graph, and per link kind."""
    person_of: dict[tuple, str] = {}
    excluded: dict[tuple, str] = {}
    for person in truth:
        for k, ok in truth_keys(person):
            if not ok or (k in person_of and person_of[k] != person["person_id"]):
                excluded[k] = "shared or placeholder"
                person_of.pop(k, None)
            elif k not in excluded:
                person_of[k] = person["person_id"]
    seen = {k for k in graph}
    evaluable = {k: p for k, p in person_of.items() if k in seen}
    by_profile = Counter(graph[k] for k in evaluable)
    by_person = Counter(evaluable.values())
    both = Counter((graph[k], p) for k, p in evaluable.items())
    predicted = sum(_pairs(c) for c in by_profile.values())
    true = sum(_pairs(c) for c in by_person.values())
    tp = sum(_pairs(c) for c in both.values())
    overall = _pr(tp, predicted, true)
    # wrong merges: live profiles holding the own identifiers of more than one person
    people_per_profile = defaultdict(set)
    for (prof, p) in both:
        people_per_profile[prof].add(p)
    mixed = sum(1 for s in people_per_profile.values() if len(s) > 1)

    full, det = _Replay(evaluable), _Replay(evaluable, skip=frozenset({"probabilistic"}))
    counts = Counter()
    for typ, msg in stream:
        if typ == "cdp.identity.resolved":
            if msg.rebuilt_by:
                counts["rebuilt_resolutions"] += 1
                continue
            new = [(i.type, i.value) for i in msg.new_identifiers]
            offline = msg.event.source_kind in ("crm", "pos")
            for r in (full, det):
                r.resolved(msg.profile_id, new, offline)
            counts["resolved"] += 1
        elif typ == "cdp.identity.merged":
            counts[f"merged:{msg.rule}"] += 1
            for r in (full, det):
                r.merged(msg.survivor_profile_id, msg.merged_profile_id, msg.rule)
        else:
            counts["split"] += 1
    # the replay's grouping of evaluable identifiers vs the export's
    rc = full.clusters()
    agree = _same_partition({k: rc.get(k) for k in evaluable}, {k: graph[k] for k in evaluable})
    det_rules = [r for r in full.pred if r != "probabilistic"]
    det_pred = sum(full.pred[r] for r in det_rules)
    det_tp = sum(full.tp[r] for r in det_rules)
    prob_pred, prob_tp = full.pred["probabilistic"], full.tp["probabilistic"]
    # Recall of probabilistic matching: of the true pairs the deterministic-only replay left on
    # different profiles, those that ended on one profile (the deterministic-only partition
    # refines the full one: a replay only ever joins). Over every evaluable identifier, and over
    # those whose deterministic profile holds a CRM/POS record (what the matcher can reach).
    dc, fc = det.clusters(), full.clusters()

    def rescued(keys: dict) -> tuple[int, int]:
        together = sum(_pairs(c) for c in Counter((p, full.find(fc[k])) for k, p in keys.items()).values())
        both = sum(_pairs(c) for c in Counter((p, full.find(fc[k]), det.find(dc[k])) for k, p in keys.items()).values())
        apart = sum(_pairs(c) for c in Counter(keys.values()).values()) - sum(
            _pairs(c) for c in Counter((p, det.find(dc[k])) for k, p in keys.items()).values())
        return together - both, apart

    in_replay = {k: p for k, p in evaluable.items() if k in dc}
    off = {k: p for k, p in in_replay.items() if det.find(dc[k]) in det.offline}
    got_off, left = rescued(off)
    got_all, left_all = rescued(in_replay)
    unknown = Counter(k[0] for k in seen if k not in person_of and k not in excluded)
    return {
        "pair": pair_definition(),
        "identifiers_in_graph": len(graph), "identifiers_evaluable": len(evaluable),
        "identifiers_excluded_shared_or_placeholder": sum(1 for k in excluded if k in seen),
        "identifiers_unknown_to_truth": sum(1 for k in seen if k not in person_of and k not in excluded),
        "people": len(by_person), "profiles": len(by_profile), "profiles_with_two_or_more_people": mixed,
        "overall": overall,
        "deterministic": {**_pr(det_tp, det_pred, true), "by_rule": {r: {"predicted_pairs": full.pred[r],
                                                                          "true_positive_pairs": full.tp[r]}
                                                                      for r in det_rules}},
        "probabilistic": {**_pr(prob_tp, prob_pred, left), "recall": got_off / left if left else None,
                          "true_pairs": left, "recall_numerator": got_off,
                          "recall_denominator": "true pairs deterministic links left apart, both identifiers on a "
                          "profile holding a CRM/POS record", "true_pairs_left_apart_all": left_all,
                          "recall_over_all_left_apart": got_all / left_all if left_all else None},
        "unknown_identifier_types": dict(unknown),
        "unknown_identifier_examples": {t: sorted(k[1] for k in seen if k[0] == t and k not in person_of
                                                  and k not in excluded)[:3] for t in unknown},
        "stream": dict(counts),
        "replay_matches_export": agree,
    }


def _pr(tp: int, predicted: int, true: int) -> dict:
    p = tp / predicted if predicted else None
    r = tp / true if true else None
    f1 = 2 * p * r / (p + r) if p and r else None
    return {"precision": p, "recall": r, "f1": f1, "predicted_pairs": predicted, "true_pairs": true,
            "true_positive_pairs": tp, "false_positive_pairs": predicted - tp}


def _same_partition(a: dict, b: dict) -> bool:
    pairs = set()
    for k in a:
        pairs.add((a[k], b[k]))
    return len(pairs) == len(set(a.values())) == len(set(b.values()))


async def accuracy(*, people: int, days: int, seed: int, timeout_s: float = 900) -> dict:
    """The world through the real paths (cdp_cli.demo.run_world), then the graph against the truth."""
    from rich.console import Console

    from cdp_cli import demo
    from cdp_sim import World

    from .stack import bench_stack, environment

    async with bench_stack(["ingest", "identity", "profile"]) as stack:
        http_port = _env_of(stack.services["ingest"].proc.pid, "CDP_HTTP_PORT")
        with environment({f"CDP_{name.upper()}_ADDR": stack.address(name) for name in ("ingest", "identity", "profile")}):
            t = time.perf_counter()
            summary = await demo.run_world(stack.token, Console(quiet=True), demo.WorldOptions(
                people=people, days=days, seed=seed, http_url=f"http://127.0.0.1:{http_port}",
                nats_url=stack.infra.nats_url, catch_up_timeout=timeout_s))
            load_s = time.perf_counter() - t
        graph = await export_graph(stack.channel("identity"))
        stream = await read_identity_stream(stack.infra.nats_url)
        conn = await asyncpg.connect(stack.services["identity"].database_url)
        try:
            merges_by_rule = {r[0]: r[1] for r in await conn.fetch(
                "SELECT rule, count(*) FROM merges WHERE undone_by IS NULL GROUP BY rule")}
        finally:
            await conn.close()
    t = time.perf_counter()
    truth = World.generate(people=people, days=days, seed=seed).truth()  # the same world: same seed, same truth
    truth_s = time.perf_counter() - t
    out = score(graph, stream, truth)
    out.update({"world": {"people": people, "days": days, "seed": seed, **summary["world"]},
                "caught_up": summary["caught_up"], "load_and_catch_up_s": load_s, "truth_regenerate_s": truth_s,
                "merges_by_rule": merges_by_rule,
                "paths": {k: {x: v[x] for x in ("sent", "accepted", "rejected")} for k, v in summary["paths"].items()},
                "failed_events_pending": summary.get("failed_events_pending")})
    return out


def _env_of(pid: int, key: str) -> str:
    data = Path(f"/proc/{pid}/environ").read_bytes()
    for kv in data.split(b"\0"):
        if kv.startswith(key.encode() + b"="):
            return kv.split(b"=", 1)[1].decode()
    raise KeyError(key)


# --- the command -------------------------------------------------------------------------------------------


async def run_identity_bench(*, events: int = 200_000, merge_events: int | None = None, merge_share: float = 0.3,
                             repetitions: int = 3, people: int = 2000, days: int = 30, seed: int = 1,
                             skip: tuple[str, ...] = (), py_spy: str | None = None) -> dict:
    result: dict = {"benchmark": "identity", "started": now_iso(), "machine": machine_info(),
                    "load_average": os.getloadavg()}
    if not {"throughput", "merge"} <= set(skip):
        async with bench_env("identity", ["ingest"]) as env:
            if "throughput" not in skip:
                result["deterministic"] = await throughput(env, events=events, merge_share=0.0,
                                                           repetitions=repetitions, seed=seed, sizes=True,
                                                           py_spy=py_spy)
            if "merge" not in skip:
                result["merge_heavy"] = await throughput(env, events=merge_events or events, merge_share=merge_share,
                                                         repetitions=repetitions, seed=seed + 1)
    if "accuracy" not in skip:
        result["accuracy"] = await accuracy(people=people, days=days, seed=seed)
    result["finished"] = now_iso()
    result["load_average_end"] = os.getloadavg()
    return result


def _f(x, nd=3) -> str:
    if x is None:
        return "n/a"
    return f"{x:.{nd}f}"


def render(result: dict) -> str:
    lines = [f"identity benchmark ({result['started']} → {result['finished']}, load {result['load_average']})"]
    for key, title in (("deterministic", "1. deterministic mix"), ("merge_heavy", "2. merge-heavy")):
        r = result.get(key)
        if not r:
            continue
        lines += ["", f"{title}: {r['events']:,} events {r['kinds']}, merges {r['merges']:,.0f} "
                      f"({r['merge_share_measured']:.1%} of events), peak RSS {r['rss_peak_mb']:.0f} MB, "
                      f"relay lag after the last commit {r['relay_lag_s']:.1f} s",
                  render_comparison(Comparison(**r["vs_copy"])), render_comparison(Comparison(**r["vs_fetch_ack"])),
                  *([render_comparison(Comparison(**r["vs_pipeline"]))] if "vs_pipeline" in r else []),
                  f"  merges/s (median) {r['merges_per_s']:,.0f};  goal ≥ 20,000 resolutions/s: "
                  f"{'met' if r['vs_copy']['figure'] >= 20000 else 'NOT met'}"]
        m = r.get("memory")
        if m:
            lines.append(f"3. memory: {m['identifiers']:,} identifiers, {m['events']:,} events; identity store "
                         f"{m['total_mb_per_million_identifiers']:.0f} MB per million identifiers (all tables); "
                         f"graph tables (identifiers, profiles, merges) {m['graph_mb_per_million_identifiers']:.0f} MB "
                         f"per million identifiers; per-event tables (resolutions, seen_events, cdp_tracking) "
                         f"{m['event_tables_mb_per_million_events']:.0f} MB per million events; "
                         f"baseline: bare COPY table {m['copy_mb_per_million_rows']:.0f} MB per million rows")
            for t, s in sorted(m["tables"].items(), key=lambda kv: -kv[1]["bytes"])[:8]:
                lines.append(f"     {t:<14} {s['bytes'] / 2**20:8.1f} MB  ({s['bytes'] / m['identifiers']:.0f} B per identifier)")
    a = result.get("accuracy")
    if a:
        lines += ["", f"4. accuracy: world {a['world']['people']} people × {a['world']['days']} days, seed "
                      f"{a['world']['seed']}; caught up: {a['caught_up']}; {a['identifiers_evaluable']:,} evaluable "
                      f"identifiers of {a['identifiers_in_graph']:,} in the graph "
                      f"({a['identifiers_excluded_shared_or_placeholder']} shared/placeholder left out, "
                      f"{a['identifiers_unknown_to_truth']} unknown to the truth); {a['people']} people on "
                      f"{a['profiles']} profiles; {a['profiles_with_two_or_more_people']} profiles hold two or more people",
                  f"   merges by rule: {a['merges_by_rule']}"]
        for k in ("overall", "deterministic", "probabilistic"):
            x = a[k]
            lines.append(f"   {k:<13} precision {_f(x['precision'], 4)}  recall {_f(x['recall'], 4)}  "
                         f"pairs predicted {x['predicted_pairs']:,}, true {x['true_pairs']:,}, "
                         f"false + {x['false_positive_pairs']:,}")
        lines.append("   goal (issue 5): precision ≥ 0.995 and recall ≥ 0.95")
        lines.append(f"   replay of the identity stream matches the export: {a['replay_matches_export']}")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", type=int, default=200_000, help="events pre-loaded for the throughput runs (200000)")
    p.add_argument("--merge-events", type=int, default=None, help="events of the merge-heavy run (default --events)")
    p.add_argument("--merge-share", type=float, default=0.3, help="share of merge-heavy events that join two profiles")
    p.add_argument("--repetitions", type=int, default=3, help="interleaved repetitions, medians reported (3)")
    p.add_argument("--people", type=int, default=2000, help="accuracy: people in the simulated world (2000)")
    p.add_argument("--days", type=int, default=30, help="accuracy: observed days (30)")
    p.add_argument("--seed", type=int, default=1, help="workload and world seed (1)")
    p.add_argument("--skip", default="", help="comma-separated: throughput, merge, accuracy")
    p.add_argument("--py-spy", default=None, help="record the identity process of the last deterministic run "
                                                  "with py-spy (raw format) into this file")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")


def run(args: argparse.Namespace) -> dict:
    return asyncio.run(run_identity_bench(
        events=args.events, merge_events=args.merge_events, merge_share=args.merge_share,
        repetitions=args.repetitions, people=args.people, days=args.days, seed=args.seed,
        skip=tuple(s.strip() for s in args.skip.split(",") if s.strip()), py_spy=args.py_spy))
