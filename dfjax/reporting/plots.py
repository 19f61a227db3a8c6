"""Plots derived from the store: robust accuracy and true-class probability against delta."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any


def plot_robustness_curves(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """One PNG per dataset x model x training x defence x number of examples that has
    at least two budgets: two panels against delta (the file name carries `_n<n>` where
    the same detector and defence have curves on more than one number of examples).

    Drawn with matplotlib's object-oriented API (a `Figure` saved straight to a file),
    which needs no backend selection and leaves pyplot's global state alone.
    """
    from matplotlib.figure import Figure

    groups: dict[tuple, list] = defaultdict(list)
    for r in rows:
        if r["status"] == "ok":
            groups[(r["dataset"], r["model"], r["training"], r["defence"],
                    r["n_examples"])].append(r)
    groups = {k: g for k, g in groups.items() if len({r["delta"] for r in g}) >= 2}
    sizes: dict[tuple, int] = defaultdict(int)  # a single budget is no curve: left out
    for key in groups:
        sizes[key[:4]] += 1
    written = []
    for key, group in sorted(groups.items()):
        fig = Figure(figsize=(9, 3.5))
        ax_acc, ax_tcp = fig.subplots(1, 2)
        for attack in dict.fromkeys(r["attack"] for r in group):
            pts = sorted((r["delta"], r["robust_accuracy"], r["adv_true_class_probability_mean"])
                         for r in group if r["attack"] == attack)
            ax_acc.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=attack)
            ax_tcp.plot([p[0] for p in pts], [p[2] for p in pts], marker="o", label=attack)
        ax_acc.set(xlabel="delta (1/255)", ylabel="robust accuracy", ylim=(0, 1))
        ax_tcp.set(xlabel="delta (1/255)", ylabel="mean true-class probability", ylim=(0, 1))
        ax_acc.legend()
        name = list(key[:4]) + ([f"n{key[4]}"] if sizes[key[:4]] > 1 else [])
        fig.suptitle(" x ".join(key[:4]) + f" (n = {key[4]})")
        fig.tight_layout()
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", "_".join(name)).strip("-")
        path = out / f"curves_{slug}.png"
        fig.savefig(path, dpi=90)
        written.append(path)
    return written
