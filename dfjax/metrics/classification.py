"""Binary detection metrics (positive class = fake = 1), computed on the host in float64.

The paper reports accuracy (its Eq. 7), precision, recall, ROC and log loss (Eq. 8).
"""

from __future__ import annotations

import numpy as np


def _check(y_true: np.ndarray, other: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    y_true, other = np.asarray(y_true), np.asarray(other)
    if y_true.shape != other.shape or y_true.ndim != 1:
        raise ValueError(f"labels {y_true.shape} and {what} {other.shape} must be equal 1-D shapes")
    return y_true.astype(np.int64), other


def confusion(y_true, y_pred) -> dict[str, int]:
    """Counts tp, fp, tn, fn with fake (1) as the positive class."""
    y_true, y_pred = _check(y_true, y_pred, "predictions")
    return {
        "tp": int(np.sum((y_pred == 1) & (y_true == 1))),
        "fp": int(np.sum((y_pred == 1) & (y_true == 0))),
        "tn": int(np.sum((y_pred == 0) & (y_true == 0))),
        "fn": int(np.sum((y_pred == 0) & (y_true == 1))),
    }


def accuracy(y_true, y_pred) -> float:
    """(TP + TN) / N; nan for no examples."""
    y_true, y_pred = _check(y_true, y_pred, "predictions")
    return float(np.mean(y_true == y_pred)) if len(y_true) else float("nan")


def precision_recall_f1(y_true, y_pred) -> tuple[float, float, float]:
    """Precision TP/(TP+FP), recall TP/(TP+FN), F1; 0 where the denominator is 0
    (the convention scikit-learn uses with zero_division=0)."""
    c = confusion(y_true, y_pred)
    precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 0.0
    recall = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def roc_auc(y_true, fake_score) -> float:
    """Area under the ROC curve = P(score of a random fake > score of a random real),
    ties counted one half (Mann-Whitney U). nan when one class is absent."""
    y_true, score = _check(y_true, fake_score, "scores")
    score = score.astype(np.float64)
    n_pos, n_neg = int(np.sum(y_true == 1)), int(np.sum(y_true == 0))
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score), np.float64)
    sorted_scores = score[order]
    # average ranks over ties
    unique, start_idx, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg_rank = start_idx + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg_rank, counts)
    u = ranks[y_true == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(y_true, fake_score) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate), float64 [k + 1], from (0, 0) to (1, 1):
    one point per distinct score, thresholds from the highest down (ties move together).
    Empty arrays when one class is absent."""
    y_true, score = _check(y_true, fake_score, "scores")
    n_pos, n_neg = int(np.sum(y_true == 1)), int(np.sum(y_true == 0))
    if n_pos == 0 or n_neg == 0:
        return np.zeros(0), np.zeros(0)
    order = np.argsort(-score.astype(np.float64), kind="mergesort")
    sorted_scores, fake = score[order], y_true[order] == 1
    last_of_tie = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(score) - 1]
    tp, fp = np.cumsum(fake)[last_of_tie], np.cumsum(~fake)[last_of_tie]
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]


def log_loss(y_true, fake_probability, *, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy (the paper's Eq. 8) with p clipped to [eps, 1 - eps]."""
    y_true, p = _check(y_true, fake_probability, "probabilities")
    if not len(y_true):
        return float("nan")
    p = np.clip(p.astype(np.float64), eps, 1 - eps)
    return float(-np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)))


def classification_metrics(y_true, fake_probability, *, prefix: str = "") -> dict[str, float]:
    """accuracy, precision, recall, f1, roc_auc, log_loss from p(fake) per example;
    the prediction is fake when p(fake) > 0.5."""
    p = np.asarray(fake_probability, np.float64)
    y_pred = (p > 0.5).astype(np.int64)
    precision, recall, f1 = precision_recall_f1(y_true, y_pred)
    out = {
        "accuracy": accuracy(y_true, y_pred),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": roc_auc(y_true, p),
        "log_loss": log_loss(y_true, p),
    }
    return {prefix + k: v for k, v in out.items()}
