"""Metrics: binary classification (fake = positive) and robustness."""

from dfjax.metrics.classification import (
    accuracy,
    classification_metrics,
    confusion,
    log_loss,
    precision_recall_f1,
    roc_auc,
)
from dfjax.metrics.robustness import attack_success_rate, robust_flags, summary

__all__ = [
    "accuracy", "classification_metrics", "confusion", "log_loss", "precision_recall_f1",
    "roc_auc", "attack_success_rate", "robust_flags", "summary",
]
