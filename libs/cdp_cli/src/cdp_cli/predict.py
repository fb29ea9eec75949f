"""`cdp predict train|list|show|score|explain|export`: the prediction service's models and
scores (cdp.prediction.v1.PredictionService)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import IO, Any

import click
import grpc
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cdp.prediction.v1 import prediction_pb2, prediction_pb2_grpc
from cdp_core import envelope

from . import client
from .output import write_lines, write_stream
from .render import iso

SERVICE = "prediction"
TOKEN_OPTION = click.option("--token", "token_", help=(
    "Bearer token (predictions:read; predictions:write to train, activate or score) "
    "(default: env CDP_TOKEN, else .cdp/token)."))
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
AS_OF_OPTION = click.option("--as-of", "as_of", help="Score as of this date or time (ISO 8601, UTC); default: now.")
TARGETS = ("purchase", "churn", "discount", "purchases", "ltv")


def _out() -> Console:
    return Console(soft_wrap=True)


def _when(text: str | None, what: str):
    """An ISO date or time (UTC unless it says otherwise) as a protobuf Timestamp."""
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 date or time: {text!r}", param_hint=what) from None
    return envelope.ts(dt if dt.tzinfo else dt.replace(tzinfo=UTC))


def _run(coro_fn, token: str | None):
    tok = client.resolve_token(token)

    async def go():
        async with client.stub(SERVICE, prediction_pb2_grpc.PredictionServiceStub, tok) as s:
            return await coro_fn(s)

    try:
        return asyncio.run(go())
    except grpc.aio.AioRpcError as e:
        if e.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
            raise client.CliError(e.details() or e.code().name) from None
        raise client.rpc_error(SERVICE, e) from None


def model_record(m: prediction_pb2.ModelInfo) -> dict[str, Any]:
    return {"version": m.version, "active": m.active, "cutoff": iso(m.cutoff), "horizon_days": m.horizon_days,
            "churn_days": m.churn_days, "trained_at": iso(m.trained_at), "features": list(m.features),
            "metrics": json.loads(m.metrics_json or "{}"), "importance": json.loads(m.importance_json or "{}"),
            "info": json.loads(m.info_json or "{}")}


def prediction_record(p) -> dict[str, Any]:
    return {"profile_id": p.profile_id, "purchase_probability": p.purchase_probability,
            "churn_probability": p.churn_probability if p.HasField("churn_probability") else None,
            "expected_purchases": p.expected_purchases, "predicted_ltv": p.predicted_ltv,
            "ltv_percentile": p.ltv_percentile, "discount_affinity": p.discount_affinity,
            "affinities": {a.attribute: {"value": a.value or None, "score": a.score} for a in p.affinities},
            "model_version": p.model_version, "horizon_days": p.horizon_days, "as_of": iso(p.as_of),
            "scored_at": iso(p.scored_at)}


def _bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=False)


@click.group("predict")
def predict_group() -> None:
    """Prediction models (purchase, churn, expected purchases, LTV, discount) and scores."""


@predict_group.command("train")
@click.option("--cutoff", required=True, help="Labels come from [cutoff, cutoff + horizon); features from before.")
@click.option("--horizon-days", type=int, required=True, help="The prediction horizon in days.")
@click.option("--churn-days", type=int, default=0, help="Churn window for customers (default: the horizon).")
@click.option("--activate/--no-activate", default=True, show_default=True,
              help="Make the new version the active one and score every profile with it.")
@TOKEN_OPTION
@JSON_OPTION
def train(cutoff: str, horizon_days: int, churn_days: int, activate: bool, token_: str | None, as_json: bool) -> None:
    """Train every model; prints its metrics beside the baselines'. Refused (with every reason)
    when the data cannot support it; the active model is then unchanged."""
    req = prediction_pb2.TrainModelRequest(horizon_days=horizon_days, churn_days=churn_days, activate=activate)
    req.cutoff.CopyFrom(_when(cutoff, "--cutoff"))

    async def go(s):
        last = None
        with _bar() as bar:
            tasks: dict[str, Any] = {}
            async for m in s.TrainModel(req, timeout=3600):
                key = "score" if m.stage == "score" else "load" if m.stage == "load" else "train"
                if key not in tasks:
                    tasks[key] = bar.add_task(key, total=max(m.total, 1))
                bar.update(tasks[key], completed=m.done, total=max(m.total, 1), description=f"{key}: {m.stage}")
                if m.HasField("model"):
                    last = m.model
        return last

    m = _run(go, token_)
    if as_json:
        click.echo(json.dumps(model_record(m)))
        return
    _show(model_record(m))


@predict_group.command("list")
@TOKEN_OPTION
@JSON_OPTION
def list_models(token_: str | None, as_json: bool) -> None:
    """Every model version, newest last."""
    got = _run(lambda s: s.ListModels(prediction_pb2.ListModelsRequest(), timeout=client.RPC_TIMEOUT_S), token_)
    records = [model_record(m) for m in got.models]
    if as_json:
        click.echo(json.dumps({"models": [{k: v for k, v in r.items() if k not in ("importance", "features")}
                                          for r in records]}))
        return
    t = Table("version", "active", "cutoff", "horizon", "trained at", "purchase AUC", "churn AUC", "LTV MAE")
    for r in records:
        m = r["metrics"]
        t.add_row(str(r["version"]), "yes" if r["active"] else "", r["cutoff"], f"{r['horizon_days']} d",
                  r["trained_at"], _fmt(m.get("purchase", {}).get("model", {}).get("auc")),
                  _fmt(m.get("churn", {}).get("model", {}).get("auc")),
                  _fmt(m.get("ltv", {}).get("model", {}).get("mae")))
    _out().print(t if records else "no models yet: `cdp predict train --cutoff … --horizon-days …`")


def _fmt(v) -> str:
    return "" if v is None else f"{v:.4f}"


def _show(r: dict) -> None:
    out = _out()
    out.print(f"model {r['version']}{' (active)' if r['active'] else ''}: cutoff {r['cutoff']}, horizon "
              f"{r['horizon_days']} d, churn window {r['churn_days']} d, trained {r['trained_at']}")
    for target, entry in r["metrics"].items():
        t = Table(title=f"{target} (held-out profiles, the window after the cutoff)")
        cls = "auc" in entry.get("model", {})
        keys = ("auc", "pr_auc", "log_loss", "ece") if cls else ("mae", "rmse", "spearman", "decile_lift")
        t.add_column("")
        for k in keys:
            t.add_column(k)
        t.add_column("n")
        for name, m in entry.items():
            if name != "reliability" and isinstance(m, dict):
                t.add_row(escape(name), *(_fmt(m.get(k)) for k in keys), str(m.get("n", "")))
        out.print(t)
    top = sorted(r["importance"].get("purchase", {}).items(), key=lambda kv: -kv[1])[:10]
    if top:
        out.print("purchase model, top features by gain: " + ", ".join(f"{k} {v:.1f}" for k, v in top))


@predict_group.command("show")
@click.argument("version", type=int)
@TOKEN_OPTION
@JSON_OPTION
def show(version: int, token_: str | None, as_json: bool) -> None:
    """One model version: metrics beside the baselines, reliability, importance."""
    m = _run(lambda s: s.GetModel(prediction_pb2.GetModelRequest(version=version), timeout=client.RPC_TIMEOUT_S),
             token_)
    if as_json:
        click.echo(json.dumps(model_record(m)))
    else:
        _show(model_record(m))


@predict_group.command("activate")
@click.argument("version", type=int)
@TOKEN_OPTION
def activate(version: int, token_: str | None) -> None:
    """Make a version the active one (every profile is then scored with it)."""
    m = _run(lambda s: s.ActivateModel(prediction_pb2.ActivateModelRequest(version=version),
                                       timeout=client.RPC_TIMEOUT_S), token_)
    _out().print(f"model {m.version} is active; scoring every profile in the background")


@predict_group.command("score")
@AS_OF_OPTION
@TOKEN_OPTION
@JSON_OPTION
def score(as_of: str | None, token_: str | None, as_json: bool) -> None:
    """Score every profile now with the active model (stored and published)."""
    req = prediction_pb2.ScoreProfilesRequest()
    if as_of:
        req.as_of.CopyFrom(_when(as_of, "--as-of"))

    async def go(s):
        done = version = 0
        with _bar() as bar:
            task = bar.add_task("score", total=None)
            async for p in s.ScoreProfiles(req, timeout=3600):
                bar.update(task, completed=p.done, total=p.total)
                done, version = p.done, p.model_version
        return done, version

    done, version = _run(go, token_)
    if as_json:
        click.echo(json.dumps({"scored": done, "model_version": version}))
    else:
        _out().print(f"scored {done} profiles with model {version}")


@predict_group.command("explain")
@click.option("--profile", "profile_id", required=True, help="The profile id.")
@click.option("--top", type=click.IntRange(1, 50), default=5, show_default=True, help="Contributions per target.")
@AS_OF_OPTION
@TOKEN_OPTION
@JSON_OPTION
def explain(profile_id: str, top: int, as_of: str | None, token_: str | None, as_json: bool) -> None:
    """A profile's predictions and, per target, the features that moved it most (pred_contribs)."""
    req = prediction_pb2.PredictRequest(profile_id=profile_id, explain_top=top)
    if as_of:
        req.as_of.CopyFrom(_when(as_of, "--as-of"))
    got = _run(lambda s: s.Predict(req, timeout=client.RPC_TIMEOUT_S * 3), token_)
    record = prediction_record(got.prediction)
    record["explanations"] = {x.target: [{"feature": c.feature, "value": c.value, "contribution": c.contribution}
                                         for c in x.contributions] for x in got.explanations}
    if as_json:
        click.echo(json.dumps(record))
        return
    out = _out()
    out.print({k: v for k, v in record.items() if k not in ("explanations", "affinities")})
    out.print("affinities: " + ", ".join(f"{a} {v['value']} ({v['score']:.2f})" for a, v in record["affinities"].items()))
    for target, cs in record["explanations"].items():
        out.print(f"{target}: " + ", ".join(f"{c['feature']}={c['value']:.3g} ({c['contribution']:+.3f})" for c in cs))


@predict_group.command("export")
@click.option("--jsonl", is_flag=True, help="JSON lines: one object per profile (the only format; required).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, allow_dash=True),
              help="Write to this file (written beside it, then renamed when complete). Default: stdout.")
@TOKEN_OPTION
def export(jsonl: bool, out_path: str | None, token_: str | None) -> None:
    """Every profile's stored score, one line each: profile_id, purchase_probability,
    churn_probability, expected_purchases, predicted_ltv, ltv_percentile, discount_affinity,
    affinities, model_version, as_of, scored_at; ordered by profile id."""
    if not jsonl:
        raise click.UsageError("choose the format: --jsonl (one JSON object per profile a line)")
    tok = client.resolve_token(token_)

    def write(f: IO[str]) -> int:
        async def go() -> int:
            async with client.stub(SERVICE, prediction_pb2_grpc.PredictionServiceStub, tok) as s:
                return await write_stream(f, s.ExportPredictions(prediction_pb2.ExportPredictionsRequest()),
                                          prediction_record)
        try:
            return asyncio.run(go())
        except grpc.aio.AioRpcError as e:
            raise client.rpc_error(SERVICE, e) from None

    write_lines(out_path, write, "predictions")
