"""Accuracy measures for probabilities (AUC, PR-AUC, log loss, expected calibration error,
reliability table) and for counts and values (MAE, RMSE, Spearman, top-decile lift). Pure."""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

EPS = 1e-6


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict]:
    """Equal-mass bins of predicted probability: mean predicted beside observed rate."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    if not len(p):
        return []
    order = np.argsort(p, kind="stable")
    out = []
    for chunk in np.array_split(order, min(bins, len(p))):
        if len(chunk):
            out.append({"n": int(len(chunk)), "predicted": float(p[chunk].mean()), "observed": float(y[chunk].mean())})
    return out


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-mass bins: sum of |observed - predicted| weighted
    by the bin's share of rows."""
    table = reliability(y, p, bins)
    total = sum(b["n"] for b in table)
    return float(sum(b["n"] / total * abs(b["observed"] - b["predicted"]) for b in table)) if total else float("nan")


def classification(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    y = np.asarray(y).astype(int)
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    both = 0 < y.sum() < len(y)
    return {
        "auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "ece": ece(y, p),
        "base_rate": float(y.mean()) if len(y) else float("nan"),
        "n": int(len(y)),
    }


def decile_lift(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean actual of the top 10 % by prediction over the overall mean actual."""
    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if not len(y) or y.mean() == 0:
        return float("nan")
    k = max(1, len(y) // 10)
    top = np.argsort(-pred, kind="stable")[:k]
    return float(y[top].mean() / y.mean())


def regression(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    err = pred - y
    rho = spearmanr(y, pred).statistic if len(y) > 2 and y.std() > 0 and pred.std() > 0 else float("nan")
    return {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err * err).mean())),
        "spearman": float(rho),
        "decile_lift": decile_lift(y, pred),
        "mean_actual": float(y.mean()),
        "mean_predicted": float(pred.mean()),
        "n": int(len(y)),
    }
