"""Plot files derived from the store, per detector and defence: robustness curves, the
paper's Table I (true-class probability against delta, log axis) and true-class
probability against attack iteration (dfjax.reporting.figures draws them)."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from dfjax.reporting.figures import robustness_png, table1_png, tcp_trace_png

FIGURES = (("curves", robustness_png), ("table1", table1_png), ("trace", tcp_trace_png))


def plot_robustness_curves(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """Per dataset x model x training x defence x number of examples with at least two
    budgets: `curves_<slug>.png` (robust accuracy and mean true-class probability against
    delta), `table1_<slug>.png` (mean, median and min true-class probability against delta,
    a panel per attack) and, where attacks stored traces, `trace_<slug>.png` (against
    iteration). The slug carries `_n<n>` where the same detector and defence have curves on
    more than one number of examples."""
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
        name = list(key[:4]) + ([f"n{key[4]}"] if sizes[key[:4]] > 1 else [])
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", "_".join(name)).strip("-")
        title = " x ".join(key[:4]) + f" (n = {key[4]})"
        for prefix, draw in FIGURES:
            png = draw(group, title)
            if png is not None:
                path = out / f"{prefix}_{slug}.png"
                path.write_bytes(png)
                written.append(path)
    return written
