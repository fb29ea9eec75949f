"""Training, calibration, scoring and explanation of the prediction models. Pure: takes a
`History`, returns a `Model` (which serializes to bytes for the registry) and scores.

The split is by time. For a cutoff T and horizon H:
  * training examples: snapshots at T - H, T - 2H, ... (features before the snapshot, labels
    in the H days after it, all before T);
  * validation: the snapshot at T (features before T, labels in [T, T + H)), split by a hash
    of the profile id into half A (early stopping and calibration) and half B (every metric
    reported, for the models and for the baselines alike).
So nothing the model was fitted on comes from after T, and the reported figures come from
profiles and a time window it never saw.

Models (XGBoost, hist): `purchase` (buys within H; calibrated), `churn` (a customer with an
order before T who does not order within the churn window; calibrated), `purchases` (orders
within H; Poisson), `ltv` (revenue within H; Tweedie), `discount` (a buyer within H uses a
discount; calibrated). BG/NBD's expected purchases and P(alive) are features.
"""

from __future__ import annotations

import base64
import functools
import json
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import xgboost as xgb
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from . import metrics
from .btyd import BetaGeoFitter, FitError, GammaGammaFitter, ParetoNBDFitter
from .features import ATTRIBUTES, Features, History, attribute_affinities, features_at, labels_at

BINARY = ("purchase", "churn", "discount")
COUNTS = ("purchases", "ltv")
TARGETS = BINARY + COUNTS
BTYD_FEATURES = ("bgnbd_expected", "bgnbd_p_alive")
MIN_HISTORY_DAYS = 7
MAX_EARLY_STOP_ROWS = 50_000  # early stopping evaluates every round on at most this many rows of half A

Progress = Callable[[str, int, int], None]  # (stage, done, total)


class InsufficientData(ValueError):
    """Training refused; `reasons` says why, one line each."""

    def __init__(self, reasons: list[str]):
        self.reasons = reasons
        super().__init__("; ".join(reasons))


@dataclass
class TrainConfig:
    horizon_days: int = 28
    churn_days: int | None = None  # default: the horizon
    snapshots: int = 3  # training snapshots before the cutoff, one horizon apart
    min_profiles: int = 200
    min_positives: int = 25  # per class of each classifier, and non-zero rows of each regressor
    max_rounds: int = 300
    early_stopping_rounds: int = 25
    learning_rate: float = 0.1
    max_depth: int = 4
    max_bin: int = 128
    # XGBoost threads. 1 by default: on a loaded 2-core machine a second thread made each
    # boosting round 2-10x slower (measured), and the service shares its cores.
    nthread: int = 1
    seed: int = 0
    # Large populations: the boosters learn from at most `max_train_rows` training rows and the
    # calibration and the held-out metrics use at most `max_eval_rows` rows of their half (seeded
    # uniform samples). Below these sizes every row is used.
    max_train_rows: int = 400_000
    max_eval_rows: int = 200_000

    def validate(self) -> list[str]:
        bad = []
        if self.horizon_days < 1:
            bad.append(f"horizon_days must be at least 1 (got {self.horizon_days})")
        if self.churn_days is not None and self.churn_days < 1:
            bad.append(f"churn_days must be at least 1 (got {self.churn_days})")
        if self.snapshots < 1:
            bad.append(f"snapshots must be at least 1 (got {self.snapshots})")
        return bad


@dataclass
class Snapshot:
    T: float
    feats: Features
    X: np.ndarray  # features + BTYD features
    labels: dict[str, np.ndarray]  # target -> labels (NaN where the target does not apply)
    bg: BetaGeoFitter | None = None  # BG/NBD fitted on the data before T


@dataclass
class Model:
    cutoff: float
    horizon_days: int
    churn_days: int
    feature_names: list[str]
    boosters: dict[str, xgb.Booster]
    calibrators: dict[str, dict]  # target -> _calibrate()
    bgnbd: tuple[float, float, float, float]
    ltv_quantiles: list[float]
    rfm: dict = field(default_factory=dict)  # RFMBaseline.to_dict(): the baseline, kept beside the model
    metrics: dict = field(default_factory=dict)
    importance: dict[str, dict[str, float]] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    # --- serialization ---------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        doc = {
            "cutoff": self.cutoff, "horizon_days": self.horizon_days, "churn_days": self.churn_days,
            "feature_names": self.feature_names, "calibrators": self.calibrators, "bgnbd": list(self.bgnbd),
            "ltv_quantiles": self.ltv_quantiles, "rfm": self.rfm, "metrics": self.metrics, "importance": self.importance,
            "info": self.info,
            "boosters": {k: base64.b64encode(bytes(b.save_raw("ubj"))).decode() for k, b in self.boosters.items()},
        }
        return zlib.compress(json.dumps(doc).encode(), 6)

    @classmethod
    def from_bytes(cls, data: bytes) -> Model:
        doc = json.loads(zlib.decompress(data))
        boosters = {}
        for k, raw in doc.pop("boosters").items():
            b = xgb.Booster()
            b.load_model(bytearray(base64.b64decode(raw)))
            boosters[k] = b
        doc["bgnbd"] = tuple(doc["bgnbd"])
        return cls(boosters=boosters, **doc)


# --- datasets ------------------------------------------------------------------------------

def _btyd_columns(b: dict[str, np.ndarray], bg: BetaGeoFitter, horizon: float) -> list[np.ndarray]:
    """The BTYD_FEATURES columns for the BTYD summary b."""
    with np.errstate(all="ignore"):
        e = bg.expected_purchases(horizon, b["x"], b["t_x"], b["T"])
        pa = bg.p_alive(b["x"], b["t_x"], b["T"])
    return [np.nan_to_num(e, nan=0.0), np.nan_to_num(pa, nan=1.0)]


def _fit_bgnbd(b: dict[str, np.ndarray], seed: int, start: tuple | None = None) -> BetaGeoFitter:
    return BetaGeoFitter.fit(b["x"], b["t_x"], b["T"], seed=seed, start=start)


def snapshot(h: History, T: float, horizon: float, churn_days: float, bg: BetaGeoFitter | None = None,
             seed: int = 0, with_labels: bool = True, start: tuple | None = None) -> tuple[Snapshot, BetaGeoFitter]:
    """Features (with BG/NBD's, fitted on this snapshot's data unless `bg` is given; `start`
    warm-starts that fit) and labels as of T."""
    fitted: list[BetaGeoFitter] = []

    def btyd_columns(b: dict[str, np.ndarray]) -> list[np.ndarray]:
        fitted.append(bg or _fit_bgnbd(b, seed, start))
        return _btyd_columns(b, fitted[0], horizon)

    f = features_at(h, T, extra=btyd_columns)
    bg, X = fitted[0], f.X
    labels: dict[str, np.ndarray] = {}
    if with_labels:
        lab = labels_at(h, T, horizon, f.rows, churn_days)
        customer = f.btyd["orders"] > 0
        labels = {
            "purchase": lab.purchased.astype(np.float64),
            "churn": np.where(customer, lab.churned.astype(np.float64), np.nan),
            "purchases": lab.orders,
            "ltv": lab.revenue,
            "discount": np.where(lab.purchased, lab.discount_used.astype(np.float64), np.nan),
        }
    return Snapshot(T, f, X, labels, bg), bg


def _hash_half(ids: list[str], rows: np.ndarray) -> np.ndarray:
    """True for half A: a stable hash of the profile id (zlib.crc32), so a profile stays on its side."""
    return np.array([zlib.crc32(ids[r].encode()) % 2 == 0 for r in rows], dtype=bool)


# --- training --------------------------------------------------------------------------------

def _params(target: str, cfg: TrainConfig) -> dict:
    p = {"tree_method": "hist", "max_depth": cfg.max_depth, "eta": cfg.learning_rate, "max_bin": cfg.max_bin,
         "subsample": 0.8, "colsample_bytree": 0.8, "min_child_weight": 5, "lambda": 1.0,
         "nthread": cfg.nthread, "seed": cfg.seed, "verbosity": 0}
    if target in BINARY:
        p.update(objective="binary:logistic", eval_metric="logloss")
    elif target == "purchases":
        p.update(objective="count:poisson", eval_metric="poisson-nloglik")
    else:
        p.update(objective="reg:tweedie", tweedie_variance_power=1.5, eval_metric="tweedie-nloglik@1.5")
    return p


ISOTONIC_MIN_ROWS = 2000  # below this, isotonic regression is not tried (it overfits small sets)


def _fit_calibrator(kind: str, raw: np.ndarray, y: np.ndarray) -> dict:
    if kind == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
        return {"kind": "isotonic", "x": [float(v) for v in iso.X_thresholds_],
                "y": [float(v) for v in iso.y_thresholds_]}
    if kind == "platt":
        lr = LogisticRegression(C=1e6).fit(_logit(raw).reshape(-1, 1), y.astype(int))
        return {"kind": "platt", "a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}
    return {"kind": "none"}


def _calibrate(raw: np.ndarray, y: np.ndarray, seed: int = 0) -> dict:
    """The calibration map from the booster's probability to an observed rate, fitted on
    validation half A. The map is chosen by 2-fold cross-fitting on A: none (the booster's own
    probability), Platt scaling (a logistic regression on the logit), or isotonic regression
    (from ISOTONIC_MIN_ROWS rows); the one with the lowest out-of-fold log loss is refitted on
    all of A. So a calibration that would not help (a well-calibrated booster, few rows) is not
    applied."""
    kinds = ["none", "platt"] + (["isotonic"] if len(raw) >= ISOTONIC_MIN_ROWS else [])
    fold = np.random.default_rng(seed).random(len(raw)) < 0.5
    if min(fold.sum(), (~fold).sum()) < 20 or len(np.unique(y)) < 2:
        return {"kind": "none"}
    losses = {}
    for kind in kinds:
        total = 0.0
        for part in (fold, ~fold):
            if len(np.unique(y[~part])) < 2:
                total = np.inf
                break
            p = apply_calibration(_fit_calibrator(kind, raw[~part], y[~part]), raw[part])
            total += metrics.classification(y[part], p)["log_loss"] * part.sum()
        losses[kind] = total
    return _fit_calibrator(min(kinds, key=lambda k: losses[k]), raw, y)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def apply_calibration(cal: dict, raw: np.ndarray) -> np.ndarray:
    if cal["kind"] == "none":
        return raw
    if cal["kind"] == "isotonic":
        return np.interp(raw, cal["x"], cal["y"])
    return 1.0 / (1.0 + np.exp(-(cal["a"] * _logit(raw) + cal["b"])))


def _sufficiency(train: list[Snapshot], val: Snapshot, cfg: TrainConfig) -> list[str]:
    reasons = []
    n_train = sum(len(s.feats.rows) for s in train)
    if n_train < cfg.min_profiles:
        reasons.append(f"{n_train} training rows (profiles x snapshots); at least {cfg.min_profiles} are needed")
    if len(val.feats.rows) < cfg.min_profiles // 2:
        reasons.append(f"{len(val.feats.rows)} profiles at the cutoff; at least {cfg.min_profiles // 2} are needed")
    for t in TARGETS:
        y = np.concatenate([s.labels[t] for s in train])
        y = y[~np.isnan(y)]
        yv = val.labels[t][~np.isnan(val.labels[t])]
        pos, neg, vpos = int((y > 0).sum()), int((y == 0).sum()), int((yv > 0).sum())
        what = "positive" if t in BINARY else "non-zero"
        if pos < cfg.min_positives:
            reasons.append(f"{t}: {pos} {what} training labels; at least {cfg.min_positives} are needed")
        if t in BINARY and neg < cfg.min_positives:
            reasons.append(f"{t}: {neg} negative training labels; at least {cfg.min_positives} are needed")
        need = min(10, cfg.min_positives)
        if vpos < need:
            reasons.append(f"{t}: {vpos} {what} labels in the validation window; at least {need} are needed")
    return reasons


def train(h: History, cutoff: float, cfg: TrainConfig, progress: Progress | None = None) -> Model:
    """Trains every model for `cutoff` (labels in [cutoff, cutoff + horizon) are the
    validation window). Raises InsufficientData, with every reason, when it cannot."""
    say = progress or (lambda stage, done, total: None)
    bad = cfg.validate()
    if bad:
        raise InsufficientData(bad)
    H = float(cfg.horizon_days)
    churn = float(cfg.churn_days or cfg.horizon_days)
    if not len(h):
        raise InsufficientData(["no events at all"])
    start, end = h.span()
    need_end = cutoff + max(H, churn) - 1
    if cutoff <= start + MIN_HISTORY_DAYS:
        raise InsufficientData([f"the cutoff leaves less than {MIN_HISTORY_DAYS} days of history before it"])
    if end < need_end:
        raise InsufficientData([
            f"no data after the cutoff for labels: the last event is {end - cutoff:.1f} days after the cutoff, "
            f"a {max(H, churn):.0f}-day label window needs events at least {max(H, churn) - 1:.0f} days after it"])
    total_steps = cfg.snapshots + 1 + len(TARGETS) + 1
    step = 0
    train_snaps: list[Snapshot] = []
    warm: tuple | None = None  # each BG/NBD fit starts from the previous snapshot's parameters
    for k in range(1, cfg.snapshots + 1):
        T = cutoff - k * H
        if T <= start + MIN_HISTORY_DAYS:
            break
        try:
            s, fitted = snapshot(h, T, H, churn, seed=cfg.seed, start=warm)
            warm = warm or fitted.params
        except FitError as e:
            raise InsufficientData([f"BG/NBD at the snapshot {k} horizons before the cutoff: {e}"]) from e
        train_snaps.append(s)
        step += 1
        say("features", step, total_steps)
    if not train_snaps:
        raise InsufficientData([f"no training snapshot: the history before the cutoff is shorter than "
                                f"one horizon ({H:.0f} days) plus {MIN_HISTORY_DAYS} days"])
    try:
        val, bg = snapshot(h, cutoff, H, churn, seed=cfg.seed, start=warm)
    except FitError as e:
        raise InsufficientData([f"BG/NBD at the cutoff: {e}"]) from e
    step = cfg.snapshots + 1
    say("features", step, total_steps)
    reasons = _sufficiency(train_snaps, val, cfg)
    if reasons:
        raise InsufficientData(reasons)
    names = val.feats.names + list(BTYD_FEATURES)
    rng = np.random.default_rng(cfg.seed)
    n_train = sum(len(s.feats.rows) for s in train_snaps)
    # A large population: the boosters learn from a seeded sample of the training rows.
    sample = np.sort(rng.choice(n_train, cfg.max_train_rows, replace=False)) if n_train > cfg.max_train_rows else None
    offsets = np.cumsum([0] + [len(s.feats.rows) for s in train_snaps])
    if sample is None:
        Xtr = np.vstack([s.X for s in train_snaps])
    else:  # the sampled rows of each snapshot, in order (no copy of every row first)
        Xtr = np.vstack([s.X[sample[(sample >= lo) & (sample < hi)] - lo]
                         for s, lo, hi in zip(train_snaps, offsets[:-1], offsets[1:], strict=True)])
    half_a = _hash_half(h.profiles, val.feats.rows)
    # Early stopping evaluates every round: on at most MAX_EARLY_STOP_ROWS of half A (seeded).
    es = np.flatnonzero(half_a)
    if len(es) > MAX_EARLY_STOP_ROWS:
        es = np.sort(np.random.default_rng(cfg.seed).choice(es, MAX_EARLY_STOP_ROWS, replace=False))
    # Calibration (half A) and the held-out metrics (half B): at most max_eval_rows rows each.
    cal_rows = _at_most(np.flatnonzero(half_a), cfg.max_eval_rows, rng)
    b_rows = _at_most(np.flatnonzero(~half_a), cfg.max_eval_rows, rng)
    # Quantized training matrices: one shared by the targets that apply to every profile
    # (purchase, purchases, ltv), one each for those that apply to a subset (churn: customers,
    # discount: buyers), so their bins fit their rows. The early-stopping rows are a plain
    # DMatrix (evaluating a QuantileDMatrix every round was 3x slower, measured).
    shared: tuple | None = None
    boosters, best = {}, {}
    for target in TARGETS:
        ytr = np.concatenate([s.labels[target] for s in train_snaps])
        if sample is not None:
            ytr = ytr[sample]
        yv = val.labels[target]
        keep, es_keep = ~np.isnan(ytr), es[~np.isnan(yv[es])]
        if keep.all() and shared is not None:
            dtr, dva = shared
        else:
            dtr = xgb.QuantileDMatrix(Xtr[keep], feature_names=names, nthread=cfg.nthread, max_bin=cfg.max_bin)
            dva = xgb.DMatrix(val.X[es_keep], feature_names=names, nthread=cfg.nthread)
            if keep.all():
                shared = (dtr, dva)
        dtr.set_label(ytr[keep])
        dva.set_label(yv[es_keep])
        b = xgb.train(_params(target, cfg), dtr, num_boost_round=cfg.max_rounds, evals=[(dva, "validation")],
                      early_stopping_rounds=cfg.early_stopping_rounds, verbose_eval=False)
        best[target] = int(b.best_iteration) + 1
        boosters[target] = b[: best[target]]  # keep the trees up to the best iteration
        step += 1
        say(f"train {target}", step, total_steps)
    # Every booster's raw prediction on the validation snapshot, once: calibration (half A),
    # the held-out metrics (half B) and the LTV percentiles (every profile) read it.
    raw = _predict_raw(boosters, val.X, names, cfg.nthread)
    calibrators = {}
    for target in BINARY:
        yv = val.labels[target]
        a = cal_rows[~np.isnan(yv[cal_rows])]
        calibrators[target] = _calibrate(raw[target][a].astype(np.float64), yv[a], cfg.seed)
    model = Model(cutoff=cutoff, horizon_days=int(cfg.horizon_days), churn_days=int(churn), feature_names=names,
                  boosters=boosters, calibrators=calibrators, bgnbd=bg.params, ltv_quantiles=[])
    # Held-out half B: the model's figures and the baselines' on the same rows.
    rfm = RFMBaseline.fit(train_snaps)
    model.rfm = rfm.to_dict()
    b_mask = np.zeros(len(val.feats.rows), dtype=bool)
    b_mask[b_rows] = True
    report = evaluate(model, val, b_mask, seed=cfg.seed, raw={t: v[b_mask] for t, v in raw.items()})
    model.ltv_quantiles = [float(v) for v in np.quantile(raw["ltv"], np.linspace(0, 1, 101))]
    model.metrics = report
    model.importance = {t: {k: float(v) for k, v in b.get_score(importance_type="gain").items()}
                        for t, b in boosters.items()}
    model.info = {"train_rows": int(n_train), "boosting_rows": int(len(Xtr)),
                  "train_snapshots": [s.T for s in train_snaps],
                  "validation_rows": int(len(val.feats.rows)), "held_out_rows": int(b_mask.sum()),
                  "best_iterations": best, "data_start": start, "data_end": end}
    say("done", total_steps, total_steps)
    return model


def _at_most(rows: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(rows, k, replace=False)) if len(rows) > k else rows


def _predict_raw(boosters: dict[str, xgb.Booster], X: np.ndarray, names: list[str], nthread: int = 1) -> dict[str, np.ndarray]:
    d = xgb.DMatrix(X, feature_names=names, nthread=nthread)
    return {t: b.predict(d).astype(np.float64) for t, b in boosters.items()}


# --- scoring -------------------------------------------------------------------------------

def predict_matrix(model: Model, X: np.ndarray, nthread: int = 1,
                   raw: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Every target's prediction for the rows of X (`raw`: the boosters' outputs, if already made)."""
    if raw is None:
        with BOOSTERS_LOCK:
            raw = _predict_raw(model.boosters, X, model.feature_names, nthread)
    out: dict[str, np.ndarray] = {}
    for t in model.boosters:
        if t in model.calibrators:
            out[f"{t}_raw"] = raw[t]
            out[t] = apply_calibration(model.calibrators[t], raw[t])
        else:
            out[t] = raw[t]
    return out


@dataclass
class Scores:
    profile_ids: list[str]
    purchase_probability: np.ndarray
    churn_probability: np.ndarray  # NaN for profiles that never ordered (churn applies to customers)
    expected_purchases: np.ndarray
    predicted_ltv: np.ndarray
    ltv_percentile: np.ndarray
    discount_affinity: np.ndarray
    affinity_index: dict[str, tuple[np.ndarray, np.ndarray]]  # attribute -> (index into vocab[attribute] or -1, share)
    vocab: dict[str, list[str]]
    X: np.ndarray

    @functools.cached_property
    def affinities(self) -> dict[str, list[tuple[str | None, float]]]:
        """Attribute -> per profile (value, share); built on first use."""
        return {a: [(self.vocab[a][v] if v >= 0 else None, s) for v, s in zip(idx.tolist(), share.tolist(), strict=True)]
                for a, (idx, share) in self.affinity_index.items()}

    def row(self, i: int) -> dict:
        churn = self.churn_probability[i]
        return {
            "profile_id": self.profile_ids[i],
            "purchase_probability": float(self.purchase_probability[i]),
            "churn_probability": None if np.isnan(churn) else float(churn),
            "expected_purchases": float(self.expected_purchases[i]),
            "predicted_ltv": float(self.predicted_ltv[i]),
            "ltv_percentile": float(self.ltv_percentile[i]),
            "discount_affinity": float(self.discount_affinity[i]),
            "affinities": {a: {"value": v[i][0], "score": v[i][1]} for a, v in self.affinities.items()},
        }


# A model's boosters are shared by the threads that score and explain (the service runs them with
# asyncio.to_thread). Setting a parameter makes a booster configure itself again on its next
# prediction, which must not run beside another prediction on it: uses of the shared boosters
# take turns (each predicts on its own threads).
BOOSTERS_LOCK = threading.Lock()


def score(model: Model, h: History, as_of: float, nthread: int = 1) -> Scores:
    """Scores every profile with an event before `as_of`, from those events only; the boosters
    predict on `nthread` threads (CDP_PREDICTION_THREADS in the service)."""
    bg = BetaGeoFitter(*model.bgnbd)
    f = features_at(h, as_of, extra=lambda b: _btyd_columns(b, bg, model.horizon_days))
    X = f.X
    customer = f.btyd["orders"] > 0
    # numpy straight into the predictor (no DMatrix); churn only where it applies (customers)
    raw = {}
    with BOOSTERS_LOCK:
        for t, b in model.boosters.items():
            b.set_param({"nthread": nthread})
            if t == "churn":
                raw[t] = np.full(len(X), np.nan)
                if customer.any():
                    raw[t][customer] = b.inplace_predict(X[customer])
            else:
                raw[t] = b.inplace_predict(X).astype(np.float64)
    out = predict_matrix(model, X, raw=raw)
    pct = np.searchsorted(np.asarray(model.ltv_quantiles), out["ltv"], side="right") - 1
    aff = attribute_affinities(h, as_of, f.rows)
    return Scores(
        profile_ids=[h.profiles[r] for r in f.rows],
        purchase_probability=out["purchase"],
        churn_probability=np.where(customer, out["churn"], np.nan),
        expected_purchases=out["purchases"],
        predicted_ltv=out["ltv"],
        ltv_percentile=np.clip(pct, 0, 100).astype(np.float64),
        discount_affinity=out["discount"],
        affinity_index={a: aff[a] for a in ATTRIBUTES},
        vocab=h.vocab,
        X=X,
    )


def evaluate(model: Model, snap: Snapshot, rows: np.ndarray, labels: dict[str, np.ndarray] | None = None,
             seed: int = 0, raw: dict[str, np.ndarray] | None = None) -> dict:
    """Every target's metrics for the model and for each baseline, on the same rows (a mask over
    the snapshot's profiles); `labels` default to the snapshot's own; `raw`: the boosters'
    outputs for those rows, if already made."""
    labels = labels or snap.labels
    out = predict_matrix(model, snap.X[rows], raw=raw)
    base = baselines(snap, rows, RFMBaseline.from_dict(model.rfm), float(model.horizon_days), seed=seed)
    report: dict = {}
    for target in TARGETS:
        if target not in labels:
            continue
        y = labels[target][rows]
        ok = ~np.isnan(y)
        fn = metrics.classification if target in BINARY else metrics.regression
        entry = {"model": fn(y[ok], out[target][ok])}
        for bname, bpred in base.get(target, {}).items():
            entry[bname] = fn(y[ok], bpred[ok])
        if target in BINARY:
            entry["uncalibrated"] = metrics.classification(y[ok], out[f"{target}_raw"][ok])
            entry["reliability"] = metrics.reliability(y[ok], out[target][ok])
        report[target] = entry
    return report


def explain(model: Model, X: np.ndarray, target: str, top: int = 5) -> list[list[tuple[str, float, float]]]:
    """Per row, the `top` features by absolute contribution to the target's raw margin (xgboost
    pred_contribs, i.e. SHAP values): (feature, feature value, contribution)."""
    if target not in model.boosters:
        raise ValueError(f"unknown target {target!r}; one of {', '.join(model.boosters)}")
    with BOOSTERS_LOCK:
        contribs = model.boosters[target].predict(xgb.DMatrix(X, feature_names=model.feature_names),
                                                  pred_contribs=True)
    out = []
    for i in range(len(X)):
        c = contribs[i, :-1]  # the last column is the bias
        order = np.argsort(-np.abs(c), kind="stable")[:top]
        out.append([(model.feature_names[j], float(X[i, j]), float(c[j])) for j in order])
    return out


# --- baselines -----------------------------------------------------------------------------

class RFMBaseline:
    """The RFM heuristic: recency, frequency and monetary quintiles (1-5; 0 for never ordered)
    summed into a score 0-15; each score predicts the mean outcome of its cell in the training
    snapshots (smoothed towards the overall mean with 20 pseudo-rows)."""

    def __init__(self, edges: dict[str, np.ndarray], cells: dict[str, np.ndarray]):
        self.edges, self.cells = edges, cells

    @staticmethod
    def _rfm(f: Features) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r = -f.column("days_since_last_order")  # larger is better
        return r, f.column("orders"), f.column("revenue")

    def cell(self, f: Features) -> np.ndarray:
        score = np.zeros(len(f.rows), dtype=np.int64)
        for name, v in zip(("r", "f", "m"), self._rfm(f), strict=True):
            q = np.searchsorted(self.edges[name], v, side="right") + 1
            score += np.where(np.isnan(v) | (f.column("orders") == 0), 0, np.clip(q, 1, 5))
        return score

    @classmethod
    def fit(cls, snaps: list[Snapshot]) -> RFMBaseline:
        buyers = [np.column_stack(cls._rfm(s.feats))[s.feats.column("orders") > 0] for s in snaps]
        B = np.vstack(buyers) if buyers else np.zeros((0, 3))
        edges = {n: (np.quantile(B[:, i], [0.2, 0.4, 0.6, 0.8]) if len(B) else np.zeros(4))
                 for i, n in enumerate(("r", "f", "m"))}
        self = cls(edges, {})
        cellv = np.concatenate([self.cell(s.feats) for s in snaps])
        for t in TARGETS:
            y = np.concatenate([s.labels[t] for s in snaps])
            ok = ~np.isnan(y)
            mean = float(y[ok].mean()) if ok.any() else 0.0
            sums = np.bincount(cellv[ok], weights=y[ok], minlength=16)
            counts = np.bincount(cellv[ok], minlength=16)
            self.cells[t] = (sums + 20 * mean) / (counts + 20)
        return self

    def predict(self, f: Features, target: str) -> np.ndarray:
        return self.cells[target][self.cell(f)]

    def to_dict(self) -> dict:
        return {"edges": {k: [float(x) for x in v] for k, v in self.edges.items()},
                "cells": {k: [float(x) for x in v] for k, v in self.cells.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> RFMBaseline:
        return cls({k: np.asarray(v) for k, v in d["edges"].items()}, {k: np.asarray(v) for k, v in d["cells"].items()})


def baselines(val: Snapshot, rows: np.ndarray, rfm: RFMBaseline, horizon: float, seed: int = 0) -> dict:
    """Every baseline's prediction for the rows (a mask over the validation snapshot), fitted on
    the data before the snapshot only: RFM cells; BG/NBD and Pareto/NBD (P(buy) as
    1 - exp(-E[X]), the Poisson approximation; churn as exp(-E[X])) with Gamma-Gamma values; a
    smoothed historical discount share."""
    f = val.feats
    b = {k: v for k, v in f.btyd.items()}
    br = {k: v[rows] for k, v in b.items()}  # the fits read every profile; predictions are for the rows only
    out: dict[str, dict[str, np.ndarray]] = {t: {"rfm": rfm.predict(f, t)[rows]} for t in TARGETS}
    gg = None
    try:
        gg = GammaGammaFitter.fit(b["x"], np.nan_to_num(b["m"]), seed=seed)
    except FitError:
        pass
    for name, cls in (("bgnbd", BetaGeoFitter), ("pareto_nbd", ParetoNBDFitter)):
        if name == "bgnbd" and val.bg is not None:
            fit = val.bg  # already fitted on this snapshot's data (for the features)
        else:
            try:
                fit = cls.fit(b["x"], b["t_x"], b["T"], seed=seed)
            except FitError:
                continue
        with np.errstate(all="ignore"):
            e = np.nan_to_num(fit.expected_purchases(horizon, br["x"], br["t_x"], br["T"]), nan=0.0)
        out["purchases"][name] = e
        out["purchase"][name] = 1.0 - np.exp(-e)
        out["churn"][name] = np.exp(-e)
        if gg is not None:
            value = gg.expected_value(br["orders"], np.nan_to_num(br["m"]))
            out["ltv"][f"{name}_gamma_gamma"] = e * np.nan_to_num(value, nan=gg.population_mean())
    share = np.nan_to_num(f.column("discount_order_share"), nan=0.0)
    n_orders = f.column("orders")
    prior = float((share * n_orders).sum() / n_orders.sum()) if n_orders.sum() > 0 else 0.0  # past orders only
    out["discount"]["history"] = ((share * n_orders + 2 * prior) / (n_orders + 2))[rows]
    out["discount"].pop("rfm", None)
    return out
