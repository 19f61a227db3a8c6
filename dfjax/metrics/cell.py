"""Every number of one cell's result row, from the attack's per-example outputs."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from dfjax.attacks.auto import black_box_beats_white_box
from dfjax.attacks.evaluate import AttackOutputs
from dfjax.data.base import Split
from dfjax.losses import fake_probability, true_class_probability
from dfjax.metrics.classification import classification_metrics
from dfjax.metrics.robustness import attack_success_rate, robust_flags, summary
from dfjax.metrics.video import video_level_metrics


def cell_metrics(evaluated: Split, result: AttackOutputs) -> tuple[dict[str, float], dict]:
    """(metrics, extra) of one cell: clean and adversarial classification metrics, robust
    accuracy, attack success rate, true-class probability summaries (the paper's Table I),
    realised norms; for an ensemble robust_accuracy_after_<member> and the sanity flag
    sanity_black_box_beats_white_box; for a minimal-norm attack median_l2_to_flip and
    fraction_flipped_any_l2; for video frames video-level metrics (video_clean_*,
    video_adv_*). extra: nonrobust_indices (into `evaluated`) and, for an attack with a
    trace, tcp_trace (per-step mean/median true-class probability).
    """
    outputs, y = result.outputs, evaluated.labels
    p_clean, p_adv = fake_probability(outputs["clean"]), fake_probability(outputs["adv"])
    clean_correct, robust = robust_flags(y, p_clean), robust_flags(y, p_adv)
    tcp_clean = np.asarray(true_class_probability(jnp.asarray(outputs["clean"]), jnp.asarray(y)))
    tcp_adv = np.asarray(true_class_probability(jnp.asarray(outputs["adv"]), jnp.asarray(y)))
    linf, l2 = outputs["linf"], outputs["l2"]
    metrics = {
        **classification_metrics(y, p_clean, prefix="clean_"),
        **classification_metrics(y, p_adv, prefix="adv_"),
        "robust_accuracy": float(robust.mean()),
        "attack_success_rate": attack_success_rate(clean_correct, robust),
        **summary(tcp_clean, prefix="clean_true_class_probability"),
        **summary(tcp_adv, prefix="adv_true_class_probability"),
        "linf_max": float(linf.max()), "linf_mean": float(linf.mean()),
        "l2_max": float(l2.max()), "l2_mean": float(l2.mean()), "l2_median": float(np.median(l2)),
        "l0_max": float(outputs["l0"].max()),
    }
    if evaluated.frames.any():
        metrics.update(video_level_metrics(evaluated.groups, y, p_clean, prefix="video_clean_"))
        metrics.update(video_level_metrics(evaluated.groups, y, p_adv, prefix="video_adv_"))
    extra: dict[str, Any] = {"nonrobust_indices": np.flatnonzero(~robust).tolist()}
    if result.flipped_by:
        still = clean_correct.copy()
        for name, flipped in result.flipped_by.items():
            still &= ~flipped
            metrics[f"robust_accuracy_after_{name}"] = float(still.mean())
        metrics["sanity_black_box_beats_white_box"] = float(
            black_box_beats_white_box(result.flipped_by))
    if "trace" in outputs:
        trace = outputs["trace"].astype(np.float64)
        extra["tcp_trace"] = {"mean": trace.mean(axis=1).tolist(),
                              "median": np.median(trace, axis=1).tolist()}
    if "distance" in outputs:  # minimal-norm attack: robust at eps <=> not flipped within eps
        distance = outputs["distance"]
        flipped = np.isfinite(distance) & clean_correct
        metrics["median_l2_to_flip"] = (float(np.median(distance[flipped])) if flipped.any()
                                        else float("nan"))
        metrics["fraction_flipped_any_l2"] = float(flipped.mean())
    return metrics, extra


def attack_timings(n_examples: int, result: AttackOutputs) -> dict[str, float]:
    """compile_time, attack_time (seconds, compilation excluded) and images_per_second."""
    seconds = result.attack_seconds
    return {"compile_time": result.compile_seconds, "attack_time": seconds,
            "images_per_second": n_examples / seconds if seconds else float("nan")}
