"""The query-budget curve: Square's robust accuracy against its query budget.

Rate limiting (a mitigation the paper lists) caps what a black-box attacker may ask the
detector; for a score-based attack such as Square that cap is a query budget. The
curve reads how much a given limit buys: robust accuracy at budgets q (model calls per
example, `num_queries`), one line per detector (training) and defence, with a 95%
binomial (Wilson) band at the n examples evaluated; `queries.md` holds the same numbers
and the queries an attacker who stops at success actually used (where the cell stored
them, dfjax.attacks.square.query_metrics).

Each budget is its own cell with its own key, and Square's square sizes are scaled to
its budget, so the curve is monotone only within sampling noise: a budget whose robust
accuracy exceeds that of a smaller one by more than a two-proportion z-test allows
(`rises_beyond_noise`) is marked in the table. Rows come from `Store.rows()` (they need
`spec_json`); failed cells show as 'failed' in the table and are left out of the plot.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from dfjax.attacks import ATTACKS
from dfjax.reporting.figures import _png, file_slug

QUERY_ATTACK = "square"
Z_95 = 1.959964  # two-sided 95% normal quantile


def query_budget(row: dict[str, Any]) -> int | None:
    """The row's Square query budget (num_queries, its default filled in), or None when
    the row is no Square cell (or a transfer cell: another threat model)."""
    spec = json.loads(row["spec_json"])
    attack = spec["attack"]
    if attack["name"] != QUERY_ATTACK or spec.get("source"):
        return None
    return int(ATTACKS.get(QUERY_ATTACK).resolve_options(attack["options"])["num_queries"])


def wilson_interval(accuracy: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion `accuracy` observed on n > 0
    examples: (low, high) within [0, 1] (two-sided, z = 1.96 for 95%)."""
    if n <= 0:
        raise ValueError(f"wilson_interval: n must be > 0, got {n}")
    shrink = 1 + z * z / n
    centre = (accuracy + z * z / (2 * n)) / shrink
    half = z / shrink * math.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def rises_beyond_noise(smaller_budget: float, n_smaller: int, larger_budget: float,
                       n_larger: int, z: float = Z_95) -> bool:
    """True when robust accuracy `larger_budget` (n_larger examples) exceeds
    `smaller_budget` (n_smaller) by more than sampling noise: the pooled two-proportion
    z-test, one-sided at z (1.96: 2.5%). Conservative for cells on the same examples."""
    pooled = (smaller_budget * n_smaller + larger_budget * n_larger) / (n_smaller + n_larger)
    noise = z * math.sqrt(pooled * (1 - pooled) * (1 / n_smaller + 1 / n_larger))
    return larger_budget - smaller_budget > noise


def query_curves(rows: list[dict[str, Any]]) -> dict[tuple, dict[str, list[tuple]]]:
    """Square rows grouped for the curve: (dataset, model, delta) -> line label ->
    [(budget, row), ...] by budget. A line is every cell alike but for num_queries; its
    label is training / defence (plus Square's other options where set) and n."""
    lines: dict[tuple, dict[str, Any]] = defaultdict(dict)
    for row in rows:
        budget = query_budget(row)
        if budget is None:
            continue
        spec = json.loads(row["spec_json"])
        options = {k: v for k, v in spec["attack"]["options"].items() if k != "num_queries"}
        spec["attack"]["options"] = options
        line_key = json.dumps(spec, sort_keys=True) + f"|n={row['n_examples']}"
        label = f"{row['training']} / {row['defence']}"
        if options:
            label += " / " + ",".join(f"{k}={v}" for k, v in sorted(options.items()))
        label += f" (n = {row['n_examples']})"
        group = lines[(row["dataset"], row["model"], row["delta"])]
        group.setdefault(line_key, (label, []))[1].append((budget, row))
    curves: dict[tuple, dict[str, list[tuple]]] = {}
    for key, group in sorted(lines.items()):
        named: dict[str, list[tuple]] = {}
        for _, (label, points) in sorted(group.items(), key=lambda kv: kv[1][0]):
            unique = label if label not in named else f"{label} #{len(named) + 1}"
            named[unique] = sorted(points, key=lambda p: (p[0], p[1]["cell_id"]))
        curves[key] = named
    return curves


def _ok_points(points: list[tuple]) -> list[tuple[int, dict]]:
    return [(b, r) for b, r in points if r["status"] == "ok"
            and not math.isnan(r.get("robust_accuracy", math.nan))]


def queries_png(lines: dict[str, list[tuple]], title: str = "") -> bytes | None:
    """Robust accuracy against the query budget (log x axis), a line per label with its
    95% Wilson band and its clean accuracy dotted; None without a line of >= 2 budgets."""
    from matplotlib.figure import Figure

    drawn = {label: _ok_points(points) for label, points in lines.items()}
    drawn = {label: p for label, p in drawn.items() if len({b for b, _ in p}) >= 2}
    if not drawn:
        return None
    fig = Figure(figsize=(6, 3.8))
    ax = fig.subplots()
    for label, points in drawn.items():
        budgets = [b for b, _ in points]
        accuracy = [r["robust_accuracy"] for _, r in points]
        band = [wilson_interval(r["robust_accuracy"], r["n_examples"]) for _, r in points]
        (line,) = ax.plot(budgets, accuracy, marker="o", label=label)
        ax.fill_between(budgets, [lo for lo, _ in band], [hi for _, hi in band],
                        color=line.get_color(), alpha=0.2, linewidth=0)
        clean = points[-1][1].get("clean_accuracy", math.nan)
        if not math.isnan(clean):
            ax.axhline(clean, color=line.get_color(), linestyle=":", linewidth=1)
    ax.set(xscale="log", ylim=(0, 1), ylabel="robust accuracy",
           xlabel="query budget (model calls per example, log)")
    ax.legend(fontsize=7, title="band: 95% Wilson; dotted: clean", title_fontsize=7)
    return _png(fig, title)


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.{digits}f}"


def _accuracy_cell(row: dict[str, Any], lowest: tuple[float, int] | None) -> str:
    if row["status"] != "ok":
        return "failed"
    accuracy = row.get("robust_accuracy", math.nan)
    if math.isnan(accuracy):
        return "–"
    low, high = wilson_interval(accuracy, row["n_examples"])
    text = f"{accuracy:.3f} [{low:.2f}, {high:.2f}]"
    if lowest is not None and rises_beyond_noise(*lowest, accuracy, row["n_examples"]):
        text += " ↑"
    return text


def _queries_cell(row: dict[str, Any]) -> str:
    if row["status"] != "ok" or "queries_mean" not in row:
        return "–"
    medians = [row["queries_median"], row.get("queries_median_to_flip", math.nan)]
    return f"{_fmt(row['queries_mean'], 1)} / " + " / ".join(
        "–" if math.isnan(m) else f"{m:g}" for m in medians)


def queries_markdown(rows: list[dict[str, Any]]) -> str:
    """queries.md: per dataset x model x delta, robust accuracy [95% Wilson interval]
    against the query budget (a column per line of `query_curves`, a 'clean' row first)
    and the queries used; '↑' marks a rise beyond noise over a smaller budget."""
    parts = ["# Robust accuracy against Square's query budget\n",
             "Rate limiting as a query budget: Square (score-based black box, Linf) may ask "
             "the detector `num_queries` times per example. Robust accuracy with its 95% "
             "Wilson interval at the n evaluated; each budget is a cell of its own (own "
             "key), so the curve is monotone only within noise, and **↑** marks a budget "
             "whose robust accuracy exceeds the lowest at a smaller budget by more than a "
             "two-proportion z-test allows (z = 1.96). Generated by `dfjax report` from "
             "the results store.\n"]
    curves = query_curves(rows)
    if not curves:
        parts.append("The store holds no Square cell.\n")
        return "\n".join(parts)
    for (dataset, model, delta), lines in curves.items():
        parts.append(f"## {dataset} x {model}, delta {delta:g}/255\n")
        labels = list(lines)
        budgets = sorted({b for points in lines.values() for b, _ in points})
        header = " | " + " | ".join(labels) + " |\n|---|" + "---|" * len(labels)
        accuracy_lines, query_lines = ["| queries" + header], ["| budget" + header]
        clean = []
        for label in labels:
            ok = _ok_points(lines[label])
            clean.append(_fmt(ok[-1][1].get("clean_accuracy", math.nan)) if ok else "–")
        accuracy_lines.append("| clean | " + " | ".join(clean) + " |")
        lowest: dict[str, tuple[float, int]] = {}
        for budget in budgets:
            accuracy_cells, query_cells = [], []
            for label in labels:
                at = [r for b, r in lines[label] if b == budget]
                if not at:
                    accuracy_cells.append("")
                    query_cells.append("")
                    continue
                row = at[0]
                accuracy_cells.append(_accuracy_cell(row, lowest.get(label)))
                query_cells.append(_queries_cell(row))
                accuracy = row.get("robust_accuracy", math.nan)
                if row["status"] == "ok" and not math.isnan(accuracy):
                    if label not in lowest or accuracy < lowest[label][0]:
                        lowest[label] = (accuracy, row["n_examples"])
            accuracy_lines.append(f"| {budget} | " + " | ".join(accuracy_cells) + " |")
            query_lines.append(f"| {budget} | " + " | ".join(query_cells) + " |")
        parts.append("\n".join(accuracy_lines) + "\n")
        parts.append("Queries used per example (mean / median / median over the points "
                     "fooled), by an attacker who stops at the first query that fools the "
                     "detector; a point never fooled costs the whole budget:\n")
        parts.append("\n".join(query_lines) + "\n")
    return "\n".join(parts)


def write_query_report(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """Write `queries.md` and, per dataset x model with a line of >= 2 budgets,
    `queries_<dataset>_<model>.png` (`_delta<d>` added where that pair has curves at more
    than one delta) into `out`; returns the paths written. rows: `Store.rows()`."""
    curves = query_curves(rows)
    (out / "queries.md").write_text(queries_markdown(rows))
    written = [out / "queries.md"]
    deltas: dict[tuple, int] = defaultdict(int)
    for dataset, model, _ in curves:
        deltas[(dataset, model)] += 1
    for (dataset, model, delta), lines in curves.items():
        name = [dataset, model] + ([f"delta{delta:g}"] if deltas[(dataset, model)] > 1 else [])
        slug = file_slug("_".join(name))
        png = queries_png(lines, f"{dataset} x {model}: Square, delta {delta:g}/255")
        if png is not None:
            path = out / f"queries_{slug}.png"
            path.write_bytes(png)
            written.append(path)
    return written
