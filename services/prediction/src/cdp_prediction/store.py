"""The prediction service's SQL: observations in, histories out, the model registry, scores."""

from __future__ import annotations

import json
from datetime import datetime

import asyncpg
import numpy as np

from .features import ATTRIBUTES, History, from_days
from .models import Model, Scores

HISTORY_COLUMNS = "profile_id, t, code, value, discount, channel, category, brand, colour, size, price_band"
PROFILE_CHUNK = 5000  # profiles per query when a whole history is read


class HistoryBuilder:
    """Builds a History from chunks of HISTORY_COLUMNS rows, turning each chunk into numpy
    columns at once (about 40 bytes an observation instead of a Python record's hundreds)."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.vocab: dict[str, dict[str, int]] = {a: {} for a in ATTRIBUTES}
        self.parts: list[tuple] = []
        self.rows = 0

    def add(self, records: list) -> None:
        n = len(records)
        if not n:
            return
        index, vocab = self.index, self.vocab
        idx = np.fromiter((index.setdefault(r[0], len(index)) for r in records), dtype=np.int64, count=n)
        num = np.array([(r[1], r[2], r[3], r[4], r[5]) for r in records], dtype=np.float64)
        attrs = [np.fromiter((-1 if r[6 + k] is None else vocab[a].setdefault(r[6 + k], len(vocab[a]))
                              for r in records), dtype=np.int32, count=n) for k, a in enumerate(ATTRIBUTES)]
        self.parts.append((idx, num, attrs))
        self.rows += n

    def build(self) -> History:
        if not self.parts:
            return History([], [], [], [], [], [], [], {a: [] for a in ATTRIBUTES}, {a: [] for a in ATTRIBUTES})
        idx = np.concatenate([p[0] for p in self.parts])
        num = np.concatenate([p[1] for p in self.parts])
        attrs = {a: np.concatenate([p[2][k] for p in self.parts]) for k, a in enumerate(ATTRIBUTES)}
        self.parts = []
        return History(list(self.index), idx, num[:, 0], num[:, 1], num[:, 2], num[:, 3] != 0, num[:, 4], attrs,
                       {a: list(v) for a, v in self.vocab.items()})


class TooMuchHistory(ValueError):
    """The history to read exceeds the named limit."""


async def load_history(conn: asyncpg.Connection, profile_ids: list[str] | None = None, progress=None,
                       max_observations: int | None = None) -> History:
    """The observations of these profiles (default: every profile, read in chunks of profiles).
    Raises TooMuchHistory past `max_observations` rows."""
    b = HistoryBuilder()
    if profile_ids is not None:
        b.add(await conn.fetch(f"SELECT {HISTORY_COLUMNS} FROM prediction_observations "
                               "WHERE profile_id = ANY($1::text[])", profile_ids))
        return b.build()
    total = await conn.fetchval("SELECT count(DISTINCT profile_id) FROM prediction_observations")
    after, done = "", 0
    while True:
        ids = [r[0] for r in await conn.fetch(
            "SELECT DISTINCT profile_id FROM prediction_observations WHERE profile_id > $1 "
            "ORDER BY profile_id LIMIT $2", after, PROFILE_CHUNK)]
        if not ids:
            break
        b.add(await conn.fetch(
            f"SELECT {HISTORY_COLUMNS} FROM prediction_observations WHERE profile_id >= $1 AND profile_id <= $2",
            ids[0], ids[-1]))
        if max_observations is not None and b.rows > max_observations:
            raise TooMuchHistory(f"more than {max_observations:,} observations to read "
                                 "(CDP_PREDICTION_MAX_TRAIN_OBSERVATIONS)")
        after, done = ids[-1], done + len(ids)
        if progress:
            progress("load", done, total)
    return b.build()


async def profile_chunks(conn: asyncpg.Connection, size: int):
    """Profile ids with observations, in chunks, ordered."""
    after = ""
    while True:
        ids = [r[0] for r in await conn.fetch(
            "SELECT DISTINCT profile_id FROM prediction_observations WHERE profile_id > $1 "
            "ORDER BY profile_id LIMIT $2", after, size)]
        if not ids:
            return
        yield ids
        after = ids[-1]


# --- registry ------------------------------------------------------------------------------

MODEL_COLUMNS = ("version, cutoff, horizon_days, churn_days, features, metrics, importance, info, trained_at, "
                 "active")


async def register(conn: asyncpg.Connection, model: Model) -> int:
    return await conn.fetchval(
        "INSERT INTO prediction_models (cutoff, horizon_days, churn_days, features, metrics, importance, info, bundle) "
        "VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6::jsonb, $7::jsonb, $8) RETURNING version",
        from_days(model.cutoff), model.horizon_days, model.churn_days, json.dumps(model.feature_names),
        json.dumps(_finite(model.metrics)), json.dumps(model.importance), json.dumps(model.info), model.to_bytes())


def _finite(v):
    """NaN is not JSON: metrics that are undefined (no positives) become null."""
    if isinstance(v, float):
        return v if np.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


async def activate(conn: asyncpg.Connection, version: int) -> bool:
    """Makes `version` the active model; False (nothing changed) if there is no such version."""
    async with conn.transaction():
        if not await conn.fetchval("SELECT 1 FROM prediction_models WHERE version = $1 FOR UPDATE", version):
            return False
        await conn.execute("UPDATE prediction_models SET active = false WHERE active AND version <> $1", version)
        await conn.execute("UPDATE prediction_models SET active = true WHERE version = $1", version)
    return True


async def list_models(conn: asyncpg.Connection) -> list:
    return await conn.fetch(f"SELECT {MODEL_COLUMNS} FROM prediction_models ORDER BY version")


async def get_model_row(conn: asyncpg.Connection, version: int):
    return await conn.fetchrow(f"SELECT {MODEL_COLUMNS} FROM prediction_models WHERE version = $1", version)


async def active_version(conn: asyncpg.Connection) -> int | None:
    return await conn.fetchval("SELECT version FROM prediction_models WHERE active")


async def load_bundle(conn: asyncpg.Connection, version: int) -> Model:
    return Model.from_bytes(await conn.fetchval("SELECT bundle FROM prediction_models WHERE version = $1", version))


# --- scores --------------------------------------------------------------------------------

async def save_scores(conn: asyncpg.Connection, version: int, s: Scores, as_of: datetime, scored_at: datetime) -> None:
    if not s.profile_ids:
        return
    aff = [json.dumps({a: {"value": vals[i][0], "score": vals[i][1]} for a, vals in s.affinities.items()})
           for i in range(len(s.profile_ids))]
    churn = [None if np.isnan(c) else float(c) for c in s.churn_probability]
    await conn.execute(
        "INSERT INTO prediction_scores AS s (profile_id, model_version, as_of, scored_at, purchase_probability, "
        "churn_probability, expected_purchases, predicted_ltv, ltv_percentile, discount_affinity, affinities) "
        "SELECT p, $2, $3, $4, pp, cp, ep, lv, lp, da, af::jsonb FROM unnest($1::text[], $5::float8[], $6::float8[], "
        "$7::float8[], $8::float8[], $9::float8[], $10::float8[], $11::text[]) AS x(p, pp, cp, ep, lv, lp, da, af) "
        "ON CONFLICT (profile_id) DO UPDATE SET model_version = excluded.model_version, as_of = excluded.as_of, "
        "scored_at = excluded.scored_at, purchase_probability = excluded.purchase_probability, "
        "churn_probability = excluded.churn_probability, expected_purchases = excluded.expected_purchases, "
        "predicted_ltv = excluded.predicted_ltv, ltv_percentile = excluded.ltv_percentile, "
        "discount_affinity = excluded.discount_affinity, affinities = excluded.affinities",
        list(s.profile_ids), version, as_of, scored_at, s.purchase_probability.tolist(), churn,
        s.expected_purchases.tolist(), s.predicted_ltv.tolist(), s.ltv_percentile.tolist(),
        s.discount_affinity.tolist(), aff)
