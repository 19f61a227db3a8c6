"""Figures derived from the store, as PNG bytes (the leaderboard inlines them; plots.py
writes them to files). Deterministic: the same rows give the same bytes (no software or
date metadata in the PNG).

True-class probability is drawn on a log axis: under attack it falls from ~1 to 1e-9
and below (the paper's Table I), which a linear axis shows as a flat zero. Values
below PROBABILITY_FLOOR (float32 softmax underflows to 0) are drawn at the floor.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from dfjax.metrics.classification import roc_curve

PROBABILITY_FLOOR = 1e-30
TABLE1_STATS = (("mean", "-"), ("median", "--"), ("min", ":"))


def file_slug(text: str) -> str:
    """`text` as a file-name part: every run of characters other than letters, digits,
    `_`, `.` and `-` becomes one `-`, none at either end."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def _png(fig, title: str = "") -> bytes:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, metadata={"Software": None})
    return buffer.getvalue()


def _floor(values: Sequence[float]) -> list[float]:
    return [max(float(v), PROBABILITY_FLOOR) if np.isfinite(v) else np.nan for v in values]


def _by_attack(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """ok rows per attack label (first-seen order), sorted by delta."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["status"] == "ok":
            out.setdefault(r["attack"], []).append(r)
    return {a: sorted(g, key=lambda r: r["delta"]) for a, g in out.items()}


def robustness_png(rows: list[dict[str, Any]], title: str = "") -> bytes | None:
    """Robust accuracy (linear) and mean true-class probability (log) against delta, a
    line per attack, for one detector and defence; None without two budgets."""
    from matplotlib.figure import Figure

    groups = {a: g for a, g in _by_attack(rows).items() if len({r["delta"] for r in g}) >= 2}
    if not groups:
        return None
    fig = Figure(figsize=(9, 3.5))
    ax_acc, ax_tcp = fig.subplots(1, 2)
    for attack, group in groups.items():
        deltas = [r["delta"] for r in group]
        ax_acc.plot(deltas, [r["robust_accuracy"] for r in group], marker="o", label=attack)
        ax_tcp.plot(deltas, _floor([r["adv_true_class_probability_mean"] for r in group]),
                    marker="o", label=attack)
    ax_acc.set(xlabel="delta (1/255)", ylabel="robust accuracy", ylim=(0, 1))
    ax_tcp.set(xlabel="delta (1/255)", ylabel="mean true-class probability (log)",
               yscale="log")
    ax_acc.legend(fontsize=8)
    return _png(fig, title)


def table1_png(rows: list[dict[str, Any]], title: str = "") -> bytes | None:
    """The paper's Table I as a figure: true-class probability (mean, median, min over the
    examples) against delta on a log axis, a panel per attack with two budgets or more
    (at most four); None when there is none."""
    from matplotlib.figure import Figure

    groups = [(a, g) for a, g in _by_attack(rows).items() if len({r["delta"] for r in g}) >= 2]
    if not groups:
        return None
    groups = groups[:4]
    fig = Figure(figsize=(3.4 * len(groups), 3.3))
    axes = np.atleast_1d(fig.subplots(1, len(groups)))
    for ax, (attack, group) in zip(axes, groups):
        deltas = [r["delta"] for r in group]
        for stat, style in TABLE1_STATS:
            ax.plot(deltas, _floor([r[f"adv_true_class_probability_{stat}"] for r in group]),
                    style, marker="o", label=stat)
        ax.set(title=attack, xlabel="delta (1/255)", yscale="log")
    axes[0].set_ylabel("true-class probability (log)")
    axes[0].legend(fontsize=8)
    return _png(fig, title)


def tcp_trace_png(rows: list[dict[str, Any]], title: str = "") -> bytes | None:
    """Mean true-class probability against attack iteration (log axis), a line per
    (attack, delta) whose row stored a trace (extra_json's tcp_trace); None if none."""
    from matplotlib.figure import Figure

    traces = []
    for attack, group in _by_attack(rows).items():
        for r in group:
            trace = json.loads(r.get("extra_json") or "{}").get("tcp_trace")
            if trace and r["delta"] > 0:
                traces.append((f"{attack} delta={r['delta']:g}", trace["mean"]))
    if not traces:
        return None
    fig = Figure(figsize=(5.5, 3.5))
    ax = fig.subplots()
    for label, mean in traces:
        ax.plot(np.arange(len(mean)), _floor(mean), label=label)
    ax.set(xlabel="attack iteration", ylabel="mean true-class probability (log)",
           yscale="log")
    ax.legend(fontsize=7)
    return _png(fig, title)


def roc_png(examples: dict[str, np.ndarray] | None, title: str = "") -> bytes | None:
    """ROC curves on the clean and the attacked inputs of one cell (from the store's
    per-example fake probabilities); None without examples or without both classes."""
    from matplotlib.figure import Figure

    if examples is None:
        return None
    curves = {name: roc_curve(examples["label"], examples[f"p_fake_{name}"])
              for name in ("clean", "adv")}
    if not len(curves["clean"][0]):
        return None
    fig = Figure(figsize=(4, 4))
    ax = fig.subplots()
    for name, (fpr, tpr) in curves.items():
        ax.plot(fpr, tpr, label="clean" if name == "clean" else "attacked")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1),
           ylim=(0, 1), aspect="equal")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return _png(fig)


def training_png(history: list[dict[str, Any]], title: str = "") -> bytes | None:
    """Train and validation loss and accuracy per epoch; None for an empty history."""
    from matplotlib.figure import Figure

    if not history:
        return None
    fig = Figure(figsize=(8, 3.2))
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    for split in ("train", "val"):
        ax_loss.plot(epochs, [h.get(f"{split}_loss", np.nan) for h in history], marker="o",
                     label=split)
        ax_acc.plot(epochs, [h.get(f"{split}_accuracy", np.nan) for h in history],
                    marker="o", label=split)
    ax_loss.set(xlabel="epoch", ylabel="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy")
    ax_loss.legend(fontsize=8)
    return _png(fig, title)
