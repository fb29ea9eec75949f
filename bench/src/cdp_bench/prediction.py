"""Prediction: accuracy on the simulator's future-window outcomes beside the classic baselines,
and the cost of training and batch scoring beside raw floors measured in the same run.

Accuracy. A world of `people` x `days` (seeded) is read with perfect identity (profiles = the
true people; cdp_prediction.simworld). The models are trained with cutoff = the world's cutoff
- H (training snapshots before it, validation window = the last H observed days), then every
profile seen before the world's cutoff is scored from its events before that cutoff and
compared with what the simulator says it does in the H days after it (truth.jsonl outcomes,
never seen by anything). The baselines are fitted on the same data before the world's cutoff
and scored on the same profiles: RFM cells, BG/NBD and Pareto/NBD (+ Gamma-Gamma for value).
Churn is scored for customers (an order before the cutoff) against "no order in the window";
the latent churn (`churned_in_window`, alive at the cutoff) is reported beside it. Discount
and attribute affinities have no future outcome in the truth, so they are compared with the
people's latent traits (price sensitivity; preferred category, colour, size, brand, band).

Speed. The world's history is tiled (copies with new profile ids, the same per-profile event
distribution) to `scale_profiles`; training (features of every snapshot, BG/NBD fits, five
XGBoost models with early stopping, calibration, held-out metrics; above TrainConfig's
max_train_rows / max_eval_rows on seeded samples) and batch scoring of every profile (from a
cold History: its cached indexes dropped first, as each of the service's scoring chunks is a
new History) are timed; building the per-profile affinity (value, share) tuples, done lazily
when they are first read, is timed apart. Floors in the same run: one numpy pass over every observation row
(np.bincount by profile, the memory-bandwidth floor of any feature) and a bare XGBoost
predict of the same score matrix with the same boosters (the floor of scoring).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from .harness import machine_info, now_iso


def _truth_labels(data, snap) -> dict[str, np.ndarray]:
    ids = [data.history.profiles[r] for r in snap.feats.rows]
    outcomes = [data.truth[i]["outcomes"] for i in ids]
    customer = snap.feats.btyd["orders"] > 0
    purchased = np.array([o["purchased"] for o in outcomes], dtype=np.float64)
    return {
        "purchase": purchased,
        "churn": np.where(customer, 1.0 - purchased, np.nan),
        "purchases": np.array([o["orders"] for o in outcomes], dtype=np.float64),
        "ltv": np.array([o["revenue"] for o in outcomes], dtype=np.float64),
    }


def _latent(data, snap, scores, model) -> dict:
    """Agreement with the latent traits: latent churn, price sensitivity, preferences."""
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    from cdp_prediction.models import predict_matrix

    ids = [data.history.profiles[r] for r in snap.feats.rows]
    tr = [data.truth[i] for i in ids]
    alive = np.array([t["outcomes"]["alive_at_cutoff"] for t in tr])
    churned = np.array([t["outcomes"]["churned_in_window"] for t in tr], dtype=int)
    customer = snap.feats.btyd["orders"] > 0
    out = {}
    m = alive & customer
    p = predict_matrix(model, snap.X)
    if 0 < churned[m].sum() < m.sum():
        out["latent_churn_auc"] = {"model": float(roc_auc_score(churned[m], p["churn"][m])),
                                   "n": int(m.sum()), "rate": float(churned[m].mean())}
    sens = np.array([t["traits"]["price_sensitivity"] for t in tr])
    share = snap.feats.column("discount_order_share")
    out["discount_vs_price_sensitivity_spearman"] = {
        "model": float(spearmanr(p["discount"][customer], sens[customer]).statistic),
        "history_share": float(spearmanr(np.nan_to_num(share[customer]), sens[customer]).statistic),
        "n": int(customer.sum())}
    traits = {"category": "preferred_categories", "colour": "preferred_colours", "size": "preferred_size",
              "brand": "preferred_brands", "price_band": "preferred_price_band"}
    aff = {}
    for attr, key in traits.items():
        pred = [v[0] for v in scores.affinities[attr]]
        want = [t["traits"][key] if isinstance(t["traits"][key], list) else [t["traits"][key]] for t in tr]
        hits = np.array([pv is not None and pv in w for pv, w in zip(pred, want, strict=True)])
        values = [pv for pv in pred if pv is not None]
        popular = max(set(values), key=values.count) if values else None
        base = np.array([popular in w for w in want])
        aff[attr] = {"model_hit_rate": float(hits.mean()), "most_popular_hit_rate": float(base.mean()),
                     "preferred_per_person": len(want[0]) if want else 0}
    out["attribute_top1_in_preferred"] = aff
    return out


def _tile(h, copies: int):
    from cdp_prediction.features import History

    n = h.n
    idx = np.concatenate([h.idx + k * n for k in range(copies)])
    profiles = [f"{p}~{k}" for k in range(copies) for p in h.profiles]
    rep = lambda a: np.tile(a, copies)  # noqa: E731
    return History(profiles, idx, rep(h.t), rep(h.code), rep(h.value), rep(h.discount), rep(h.channel),
                   {a: rep(v) for a, v in h.attrs.items()}, h.vocab)


def _subset(h, rows: np.ndarray):
    """The history of some profiles (indices into h.profiles) as its own History."""
    from cdp_prediction.features import History

    keep = np.isin(h.idx, rows)
    remap = np.full(h.n, -1, dtype=np.int64)
    remap[rows] = np.arange(len(rows))
    return History([h.profiles[r] for r in rows], remap[h.idx[keep]], h.t[keep], h.code[keep], h.value[keep],
                   h.discount[keep], h.channel[keep], {a: v[keep] for a, v in h.attrs.items()}, h.vocab)


def _online(model, h, as_of: float, samples: int, seed: int) -> dict:
    """Online scoring of one profile at a time (features + five models + affinities), the
    compute of the service's debounced path without its database round trips; beside a bare
    XGBoost predict of one row with the same boosters."""
    import xgboost as xgb

    from cdp_prediction.models import score

    rng = np.random.default_rng(seed)
    rows = rng.choice(h.n, min(samples, h.n), replace=False)
    lat, bare = [], []
    for r in rows:
        one = _subset(h, np.array([r]))
        t0 = time.perf_counter()
        s = score(model, one, as_of)
        lat.append(time.perf_counter() - t0)
        if len(s.X):
            d = xgb.DMatrix(s.X, feature_names=model.feature_names)
            t0 = time.perf_counter()
            for b in model.boosters.values():
                b.predict(d)
            bare.append(time.perf_counter() - t0)
    q = lambda a, p: float(np.percentile(np.asarray(a) * 1000, p))  # noqa: E731
    return {"samples": len(lat), "p50_ms": q(lat, 50), "p99_ms": q(lat, 99), "max_ms": q(lat, 100),
            "bare_predict_p50_ms": q(bare, 50), "bare_predict_p99_ms": q(bare, 99)}


def run_prediction_bench(people: int = 10_000, days: int = 120, seed: int = 7, horizon: int = 28,
                         scale_profiles: int = 0, nthread: int = 1, score_threads: int = 2, online_samples: int = 500,
                         service_people: int = 0, service_online: int = 200) -> dict:
    import xgboost as xgb

    from cdp_prediction.models import TrainConfig, evaluate, score, snapshot, train
    from cdp_prediction.simworld import load_world
    from cdp_sim import World

    t0 = time.perf_counter()
    data = load_world(World.generate(people=people, days=days, seed=seed, horizon=horizon))
    load_s = time.perf_counter() - t0
    h = data.history
    cfg = TrainConfig(horizon_days=horizon, nthread=nthread, seed=seed)
    t0 = time.perf_counter()
    model = train(h, data.cutoff - horizon, cfg)
    train_s = time.perf_counter() - t0
    snap, _ = snapshot(h, data.cutoff, horizon, horizon, bg=None, seed=seed, with_labels=False)
    labels = _truth_labels(data, snap)
    everyone = np.ones(len(snap.feats.rows), dtype=bool)
    accuracy = evaluate(model, snap, everyone, labels, seed=seed)
    scores = score(model, h, data.cutoff, nthread=nthread)
    result = {
        "benchmark": "prediction", "started": now_iso(), "machine": machine_info(),
        "params": {"people": people, "days": days, "seed": seed, "horizon_days": horizon, "nthread": nthread,
                   "score_threads": score_threads},
        "world": {"observations": len(h), "profiles_scored": len(snap.feats.rows), "load_seconds": load_s},
        "validation_window": model.metrics,  # held-out half of the last observed window
        "future_window": accuracy,  # the simulator's truth after the cutoff
        "latent": _latent(data, snap, scores, model),
        "best_iterations": model.info["best_iterations"],
        "speed_small": {"profiles": h.n, "train_seconds": train_s},
        "online": _online(model, h, data.cutoff, online_samples, seed),
    }
    if scale_profiles:
        copies = max(1, round(scale_profiles / h.n))
        big = _tile(h, copies)
        t0 = time.perf_counter()
        np.bincount(big.idx[big.t < data.cutoff], weights=big.value[big.t < data.cutoff], minlength=big.n)
        floor_pass = time.perf_counter() - t0
        t0 = time.perf_counter()
        big_model = train(big, data.cutoff - horizon, cfg)
        big_train = time.perf_counter() - t0
        big.forget()  # scoring starts cold, as the service's does (each chunk is a new History)
        t0 = time.perf_counter()
        s = score(big_model, big, data.cutoff, nthread=score_threads)  # the boosters now predict on these
        big_score = time.perf_counter() - t0
        t0 = time.perf_counter()
        _ = s.affinities  # the per-profile (value, share) tuples, built when first read
        tuples = time.perf_counter() - t0
        t0 = time.perf_counter()
        d = xgb.DMatrix(s.X, feature_names=big_model.feature_names, nthread=score_threads)
        for b in big_model.boosters.values():
            b.predict(d)
        bare_predict = time.perf_counter() - t0
        result["speed"] = {
            "profiles": big.n, "observations": len(big), "copies": copies,
            "train_seconds": big_train, "train_rows": big_model.info["train_rows"],
            "boosting_rows": big_model.info["boosting_rows"], "held_out_rows": big_model.info["held_out_rows"],
            "score_seconds": big_score, "scored": len(s.profile_ids), "affinity_tuples_seconds": tuples,
            "floor_one_numpy_pass_seconds": floor_pass, "floor_bare_xgboost_predict_seconds": bare_predict,
            "extrapolated_1m_train_seconds": big_train * 1_000_000 / big.n,
            "extrapolated_1m_score_seconds": big_score * 1_000_000 / big.n,
        }
    if service_people:
        import asyncio

        result["service"] = asyncio.run(run_service_bench(service_people, seed=seed, horizon=horizon,
                                                          online=service_online))
    return result


def render(r: dict) -> str:
    lines = [f"prediction: {r['params']['people']:,} people x {r['params']['days']} days, seed {r['params']['seed']}, "
             f"horizon {r['params']['horizon_days']} d; {r['world']['profiles_scored']:,} profiles scored"]
    for title, block in (("future window (simulator truth)", r["future_window"]),
                         ("validation window (held-out half)", r["validation_window"])):
        lines.append(f"-- {title}")
        for target, entry in block.items():
            for name, m in entry.items():
                if name == "reliability" or not isinstance(m, dict):
                    continue
                keys = ("auc", "pr_auc", "log_loss", "ece") if "auc" in m else ("mae", "rmse", "spearman", "decile_lift")
                lines.append(f"  {target:9s} {name:24s} " + "  ".join(f"{k} {m[k]:.4f}" for k in keys) + f"  n {m['n']}")
    lines.append(f"-- latent: {r['latent']}")
    o = r["online"]
    lines.append(f"-- online scoring of one profile: p50 {o['p50_ms']:.1f} ms, p99 {o['p99_ms']:.1f} ms "
                 f"(bare xgboost predict of one row, five models: p50 {o['bare_predict_p50_ms']:.1f} ms, "
                 f"p99 {o['bare_predict_p99_ms']:.1f} ms; {o['samples']} profiles)")
    if "speed" in r:
        s = r["speed"]
        lines.append(f"-- speed on {s['profiles']:,} profiles ({s['observations']:,} observations): train "
                     f"{s['train_seconds']:.1f} s ({s['train_rows']:,} training rows, {s['boosting_rows']:,} boosted, "
                     f"{s['held_out_rows']:,} held out), score {s['score_seconds']:.1f} s on "
                     f"{r['params'].get('score_threads', 1)} predict thread(s) "
                     f"(+ {s['affinity_tuples_seconds']:.1f} s for per-profile affinity tuples); floors: one numpy pass "
                     f"{s['floor_one_numpy_pass_seconds']:.2f} s, bare xgboost predict {s['floor_bare_xgboost_predict_seconds']:.2f} s; "
                     f"1M extrapolated: train {s['extrapolated_1m_train_seconds']:.0f} s, score {s['extrapolated_1m_score_seconds']:.0f} s")
    if "service" in r:
        v = r["service"]
        o, b = v["online"], v["baseline_publish_deliver"]
        lines.append(f"-- service ({v['people']:,} people x {v['days']} d, {v['resolved_events']:,} resolved events): "
                     f"projected {v['project_events_per_s']:,.0f} events/s; TrainModel {v['train_seconds']:.1f} s "
                     f"(history read {v['load_seconds']:.1f} s), then registered and every profile scored and published: "
                     f"{v['train_and_score_seconds']:.1f} s in all; "
                     f"online event -> scored p50 {o['p50_ms']:.0f} ms, p99 {o['p99_ms']:.0f} ms (debounce "
                     f"{v['debounce_s'] * 1000:.0f} ms; bare publish -> delivery p50 {b['p50_ms']:.1f} ms, p99 {b['p99_ms']:.1f} ms)")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--people", type=int, default=10_000, help="simulated people (default 10,000)")
    p.add_argument("--days", type=int, default=120, help="observed days (default 120)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--horizon", type=int, default=28, help="prediction horizon in days (default 28)")
    p.add_argument("--scale-profiles", type=int, default=0,
                   help="also time training and scoring on the history tiled to this many profiles")
    p.add_argument("--service-people", type=int, default=0,
                   help="also run the service as a process on a world of this many people: projection, "
                        "TrainModel through gRPC, online event -> scored latency")
    p.add_argument("--service-online", type=int, default=200, help="online events timed (default 200)")
    p.add_argument("--score-threads", type=int, default=2,
                   help="threads the boosters predict on when scoring the scaled population (default 2: both cores)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")


# --- the running service ------------------------------------------------------------------------

async def run_service_bench(people: int = 2000, days: int = 100, seed: int = 7, horizon: int = 28,
                            online: int = 200, debounce_s: float = 0.2) -> dict:
    """`python -m cdp_prediction` as its own process on fresh NATS + PostgreSQL: a world's
    resolved events projected, TrainModel (activate: every profile scored) timed through gRPC,
    then `online` single events, one at a time, each timed from its publish to the
    cdp.prediction.scored event of its profile on CDP_PREDICTION (debounce `debounce_s`, scorer
    poll 50 ms). Baseline in the same run: a bare JetStream publish -> ordered-consumer delivery
    of a message of the same size."""
    import asyncio

    from cdp.identity.v1 import events_pb2 as identity_events
    from cdp.ingest.v1 import events_pb2 as ingest_events
    from cdp.prediction.v1 import events_pb2 as prediction_events
    from cdp.prediction.v1 import prediction_pb2, prediction_pb2_grpc
    from cdp_core import envelope
    from cdp_core.auth import issue_token
    from cdp_core.bus import Outgoing
    from cdp_core.grpc_server import channel
    from cdp_sim import World

    from .stack import bench_env, environment, publish_all, service_process

    world = World.generate(people=people, days=days, seed=seed, horizon=horizon)
    start = world.cfg.start_date
    msgs, persons = [], []
    for day in world.run():
        for _ts, _seq, m, person, mid in day.segment:
            ev = ingest_events.EventCollected(
                kind=m["type"], message_id=mid, event=m.get("event") or "", name=m.get("name") or "",
                properties_json=orjson_dumps(m.get("properties") or {}), context_json=orjson_dumps(m.get("context") or {}),
                source_kind="web")
            ev.timestamp.CopyFrom(envelope.ts(_iso(m["timestamp"])))
            pid = f"p{person:07d}"
            r = identity_events.IdentityResolved(event=ev, profile_id=pid, event_id=mid)
            msgs.append(Outgoing.from_envelope(envelope.make("cdp.identity.resolved", r, producer="identity",
                                                             event_id="r-" + mid)))
            persons.append(pid)
    result: dict = {"people": people, "days": days, "resolved_events": len(msgs), "debounce_s": debounce_s}
    with environment({"CDP_PREDICTION_DEBOUNCE_S": str(debounce_s), "CDP_PREDICTION_POLL_S": "0.05"}):
        async with bench_env("prediction", ["identity", "prediction"]) as env:
            bus = env.bus
            async with service_process(env, "prediction", "CDP_IDENTITY") as run:
                t0 = time.perf_counter()
                await publish_all(bus, msgs)
                info = None
                while True:
                    info = await bus.js.consumer_info("CDP_IDENTITY", "prediction")
                    if info.num_pending == 0 and info.num_ack_pending == 0:
                        break
                    await asyncio.sleep(0.2)
                result["project_seconds"] = time.perf_counter() - t0
                result["project_events_per_s"] = len(msgs) / result["project_seconds"]
                token = issue_token(env.secret, "bench", ["admin"])
                port = _grpc_port(run.proc.pid)
                async with channel(f"127.0.0.1:{port}", token) as ch:
                    stub = prediction_pb2_grpc.PredictionServiceStub(ch)
                    req = prediction_pb2.TrainModelRequest(horizon_days=horizon, activate=True)
                    req.cutoff.CopyFrom(envelope.ts(_day(start, days - horizon)))
                    t0 = time.perf_counter()
                    first: dict[str, float] = {}
                    last: dict[str, float] = {}
                    async for p in stub.TrainModel(req, timeout=1800):
                        first.setdefault(p.stage, time.perf_counter() - t0)
                        last[p.stage] = time.perf_counter() - t0
                        if p.HasField("model"):
                            result["model_version"] = p.model.version
                    result["load_seconds"] = last.get("load", 0.0)  # the history read from PostgreSQL
                    result["train_seconds"] = first["done"]  # load + train (models.train's own last step)
                    result["train_and_score_seconds"] = last["done"]  # ... + every profile scored and published
                    # online: one event at a time, publish -> scored on the stream
                    sub = await bus.js.subscribe("cdp.prediction.scored", ordered_consumer=True,
                                                 deliver_policy=_new_policy())
                    rng = np.random.default_rng(seed)
                    targets = [persons[i] for i in rng.choice(len(persons), online, replace=False)]
                    lat = []
                    for i, pid in enumerate(targets):
                        ev = ingest_events.EventCollected(kind="track", event="Product Viewed",
                                                          properties_json='{"category":"Bags","price":40}')
                        ev.timestamp.CopyFrom(envelope.ts(envelope.now()))
                        r = identity_events.IdentityResolved(event=ev, profile_id=pid, event_id=f"online-{i}")
                        out = Outgoing.from_envelope(envelope.make("cdp.identity.resolved", r, producer="identity",
                                                                   event_id=f"r-online-{i}"))
                        t0 = time.perf_counter()
                        await bus.publish_batch([out])
                        while True:
                            m = await sub.next_msg(timeout=30)
                            got = envelope.unpack(envelope.decode(m.data), prediction_events.PredictionScored)
                            if got.profile_id == pid:
                                break
                        lat.append(time.perf_counter() - t0)
                    await sub.unsubscribe()
                    a = np.asarray(lat) * 1000
                    result["online"] = {"events": len(lat), "p50_ms": float(np.percentile(a, 50)),
                                        "p99_ms": float(np.percentile(a, 99)), "max_ms": float(a.max()),
                                        "p99_minus_debounce_ms": float(np.percentile(a, 99)) - debounce_s * 1000}
            # baseline: bare publish -> delivery round trip on the same server
            sub = await bus.js.subscribe("cdp.prediction.bench", ordered_consumer=True, deliver_policy=_new_policy())
            base = []
            payload = msgs[0].data
            for _ in range(online):
                t0 = time.perf_counter()
                await bus.js.publish("cdp.prediction.bench", payload)
                await sub.next_msg(timeout=10)
                base.append(time.perf_counter() - t0)
            await sub.unsubscribe()
            b = np.asarray(base) * 1000
            result["baseline_publish_deliver"] = {"p50_ms": float(np.percentile(b, 50)), "p99_ms": float(np.percentile(b, 99))}
    return result


def orjson_dumps(v) -> str:
    import orjson

    return orjson.dumps(v).decode()


def _iso(text: str):
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _day(start, n: int):
    from datetime import UTC, datetime, timedelta

    return datetime.combine(start, datetime.min.time(), tzinfo=UTC) + timedelta(days=n)


def _new_policy():
    from nats.js.api import DeliverPolicy

    return DeliverPolicy.NEW


def _grpc_port(pid: int) -> int:
    """The gRPC port the service process was started with (its CDP_PREDICTION_GRPC_PORT)."""
    with open(f"/proc/{pid}/environ", "rb") as f:
        env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
    return int(env[b"CDP_PREDICTION_GRPC_PORT"])
