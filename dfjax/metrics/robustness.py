"""Per-example robustness flags and the numbers derived from them."""

from __future__ import annotations

import numpy as np


def robust_flags(y_true, adv_fake_probability) -> np.ndarray:
    """bool [n]: the detector is still correct on the attacked input."""
    predicted = np.asarray(adv_fake_probability) > 0.5
    return predicted == (np.asarray(y_true) == 1)


def attack_success_rate(clean_correct, robust) -> float:
    """Of the examples classified correctly before the attack, the fraction it flipped."""
    clean_correct, robust = np.asarray(clean_correct, bool), np.asarray(robust, bool)
    n = int(clean_correct.sum())
    return float(np.sum(clean_correct & ~robust) / n) if n else float("nan")


def summary(values, *, prefix: str) -> dict[str, float]:
    """mean, median, min of a per-example quantity (e.g. the true-class probability)."""
    v = np.asarray(values, np.float64)
    if not len(v):
        return {f"{prefix}_{s}": float("nan") for s in ("mean", "median", "min")}
    return {f"{prefix}_mean": float(v.mean()), f"{prefix}_median": float(np.median(v)),
            f"{prefix}_min": float(v.min())}
