"""Regression testing of detectors: two runs of a matrix compared cell by cell.

Cells are matched by `cell_id` (the same spec, hence the same evaluation examples). For
each matched cell, clean and robust accuracy of both runs, their difference with a 95%
interval and a p-value:

* **Paired** (both runs stored per-example data, `Store.examples`, for the same dataset
  version, the same example indices and labels, and those data reproduce the stored
  accuracies): over the n examples paired by their dataset `index`, let b = #(correct in
  base, wrong in new) (losses) and c = #(wrong in base, correct in new) (gains); then
  d = (c - b) / n. The p-value is the exact McNemar test (McNemar 1947, Psychometrika 12:
  153-157): under "no change", b ~ Binomial(b + c, 1/2), two-sided (p = 1 when b + c = 0).
  The interval is the Wald interval for paired proportions with continuity correction
  (Fleiss, Levin & Paik 2003, Statistical Methods for Rates and Proportions, sec. 13.1):
  d +- (z * sqrt(b + c - (c - b)^2 / n) / n + 1 / n), z = 1.96, clipped to [-1, 1].
* **Unpaired** (a run without per-example data, e.g. a schema-1 store or a results.json
  file, or examples that do not pair): from the counts k = round(accuracy * n) on n1 and
  n2 examples, Fisher's exact test on the 2x2 table, and the Wald interval for two
  independent proportions with continuity correction:
  d +- (z * sqrt(p1 (1 - p1) / n1 + p2 (1 - p2) / n2) + (1 / n1 + 1 / n2) / 2).
  Such cells are labelled "unpaired" with the reason.

Tracked: the robust accuracy of every matched cell, or of the cells a `track` filter
selects. A matrix has ~140 cells, so the family-wise false-alarm rate over the tracked
cells is held at `alpha` by Holm's step-down procedure (Holm 1979, Scand. J. Statist. 6:
65-70) on their p-values; a tracked cell **drops** when its Holm-adjusted p <= alpha and
d < 0. A tracked cell stored 'ok' in base and 'failed' in new is a regression too. The
interval is reported at 95% whatever `alpha`; the flag follows the adjusted test alone.

    comparison = compare_runs(load_run("base.sqlite"), load_run("new.sqlite"))
    print(comparison_markdown(comparison)); exit(1 if comparison.regressed else 0)
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from dfjax.metrics.robustness import robust_flags
from dfjax.store import EXAMPLE_KEYS, Store

CONFIDENCE = 0.95
AXES = ("dataset", "model", "training", "defence", "attack", "delta")
COMPARED = "compared"


class CompareInputError(ValueError):
    """A run that cannot be read or compared; the message names the file or value."""


@dataclasses.dataclass(frozen=True)
class Run:
    """One side of a comparison: `source` (its path), its cell rows by cell_id, and the
    per-example data (`Store.examples`) of the cells that stored some."""

    source: str
    rows: dict[str, dict[str, Any]]
    examples: dict[str, dict[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class Change:
    """A metric in base and new, its difference new - base with a 95% interval [low, high],
    the p-value of `test`, and the examples it rests on (`losses`/`gains`: the discordant
    pairs of a paired test, None when unpaired)."""

    base: float
    new: float
    difference: float
    low: float
    high: float
    p_value: float
    test: str
    n_base: int
    n_new: int
    losses: int | None = None
    gains: int | None = None

    @property
    def paired(self) -> bool:
        return self.losses is not None


@dataclasses.dataclass(frozen=True)
class CellComparison:
    """One cell_id of either run. status: 'compared', 'only in base', 'only in new',
    'failed in base', 'failed in new', 'failed in both', 'no robust accuracy' or 'no
    example counts' (unpaired, and a row without n_examples).
    robust_p_holm: the Holm-adjusted p of a tracked compared cell; flag: 'DROP', 'rise'
    or ''."""

    cell_id: str
    axes: dict[str, Any]
    status: str
    tracked: bool
    clean: Change | None = None
    robust: Change | None = None
    unpaired_reason: str | None = None
    robust_p_holm: float | None = None
    flag: str = ""


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Every cell of two runs, compared, with the false-alarm level `alpha` and the
    tracking filter that chose the tracked cells (empty: all)."""

    base: str
    new: str
    alpha: float
    track: dict[str, list[str]]
    cells: list[CellComparison]

    @property
    def tracked(self) -> list[CellComparison]:
        return [c for c in self.cells if c.tracked and c.status == COMPARED]

    @property
    def drops(self) -> list[CellComparison]:
        return [c for c in self.cells if c.flag == "DROP"]

    @property
    def rises(self) -> list[CellComparison]:
        return [c for c in self.cells if c.flag == "rise"]

    @property
    def newly_failed(self) -> list[CellComparison]:
        """Tracked cells stored 'ok' in base and 'failed' in new."""
        return [c for c in self.cells if c.tracked and c.status == "failed in new"]

    @property
    def regressed(self) -> bool:
        return bool(self.drops or self.newly_failed)


# statistics --------------------------------------------------------------------------
def _z(confidence: float) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2))


def mcnemar_exact_p(losses: int, gains: int) -> float:
    """Two-sided exact McNemar p: `losses` ~ Binomial(losses + gains, 1/2) under no change."""
    discordant = losses + gains
    if discordant == 0:
        return 1.0
    return float(stats.binomtest(losses, discordant, 0.5).pvalue)


def paired_change(base_correct: np.ndarray, new_correct: np.ndarray, *,
                  confidence: float = CONFIDENCE) -> Change:
    """Accuracy change over paired examples. base_correct, new_correct: bool [n], example i
    of both runs the same. Exact McNemar p; Wald interval with continuity correction."""
    base_correct, new_correct = np.asarray(base_correct, bool), np.asarray(new_correct, bool)
    n = len(base_correct)
    if n == 0 or len(new_correct) != n:
        raise ValueError(f"paired_change needs equal non-empty arrays, got {n} and "
                         f"{len(new_correct)} examples")
    losses = int(np.sum(base_correct & ~new_correct))
    gains = int(np.sum(~base_correct & new_correct))
    difference = (gains - losses) / n
    spread = math.sqrt(max(losses + gains - (gains - losses) ** 2 / n, 0.0))
    half = _z(confidence) * spread / n + 1 / n
    return Change(float(base_correct.mean()), float(new_correct.mean()), difference,
                  max(difference - half, -1.0), min(difference + half, 1.0),
                  mcnemar_exact_p(losses, gains), "McNemar exact", n, n, losses, gains)


def unpaired_change(base_accuracy: float, n_base: int, new_accuracy: float, n_new: int, *,
                    confidence: float = CONFIDENCE) -> Change:
    """Accuracy change between independent samples of n_base and n_new examples: Fisher's
    exact p on the counts round(accuracy * n); Wald interval with continuity correction."""
    if n_base <= 0 or n_new <= 0:
        raise ValueError(f"unpaired_change needs examples on both sides, got {n_base} and "
                         f"{n_new}")
    k_base, k_new = round(base_accuracy * n_base), round(new_accuracy * n_new)
    p_base, p_new = k_base / n_base, k_new / n_new
    difference = new_accuracy - base_accuracy
    spread = math.sqrt(p_base * (1 - p_base) / n_base + p_new * (1 - p_new) / n_new)
    half = _z(confidence) * spread + (1 / n_base + 1 / n_new) / 2
    table = [[k_new, n_new - k_new], [k_base, n_base - k_base]]
    p_value = float(stats.fisher_exact(table)[1])
    return Change(float(base_accuracy), float(new_accuracy), difference,
                  max(difference - half, -1.0), min(difference + half, 1.0), p_value,
                  "Fisher exact (unpaired)", n_base, n_new)


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (rejecting those <= alpha holds the family-wise
    error rate at alpha): sorted ascending, p_adj(i) = max_{j <= i} min(1, (m - j + 1) p(j))."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


# loading -----------------------------------------------------------------------------
def load_run(path: str | Path) -> Run:
    """A results store (SQLite, `dfjax run --store`) or a results.json file (`dfjax report`:
    no per-example data, so its cells compare unpaired)."""
    path = Path(path)
    if not path.is_file():
        raise CompareInputError(f"{path}: no such results store or results.json file")
    if path.suffix == ".json":
        return _run_from_json(path)
    try:
        with Store(path) as store:
            rows = store.rows()
            examples = {}
            for row in rows:
                data = store.examples(row["cell_id"]) if row["status"] == "ok" else None
                if data is not None:
                    examples[row["cell_id"]] = {k: np.asarray(v) for k, v in data.items()}
    except (sqlite3.Error, ValueError) as e:
        raise CompareInputError(f"{path}: not a readable dfjax results store ({e})") from e
    return Run(str(path), {r["cell_id"]: r for r in rows}, examples)


def _run_from_json(path: Path) -> Run:
    try:
        rows = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CompareInputError(f"{path}: not a readable results.json ({e})") from e
    if not isinstance(rows, list) or not all(
            isinstance(r, dict) and "cell_id" in r and "status" in r for r in rows):
        raise CompareInputError(f"{path}: expected a results.json list of cell rows, each "
                                "with cell_id and status (as `dfjax report` writes)")
    return Run(str(path), {r["cell_id"]: r for r in rows}, {})


# pairing -----------------------------------------------------------------------------
def _correct(examples: dict[str, np.ndarray], which: str) -> np.ndarray:
    """Correct per example, as the cell's own metrics count it (robust_flags: predicted fake,
    p_fake > 0.5, exactly when the label is fake)."""
    return robust_flags(examples["label"], examples[f"p_fake_{which}"])


def _dataset_version(row: dict[str, Any]) -> str | None:
    try:
        return json.loads(row.get("env_json") or "{}").get("dataset_version")
    except (TypeError, json.JSONDecodeError):
        return None


def _accuracy(row: dict[str, Any], name: str) -> float | None:
    value = row.get(name)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _paired_flags(base: Run, new: Run, cell_id: str):
    """(flags, None) with flags = {clean|robust: (base bool [n], new bool [n])} aligned by
    example index, or (None, why the cell cannot be paired)."""
    sides = {"base": base, "new": new}
    missing = [name for name, run in sides.items() if cell_id not in run.examples]
    if missing:
        return None, f"no per-example data in {' and '.join(missing)}"
    versions = [_dataset_version(run.rows[cell_id]) for run in sides.values()]
    if None not in versions and versions[0] != versions[1]:
        return None, f"dataset versions differ ({versions[0]} vs {versions[1]})"
    aligned = {}
    for name, run in sides.items():
        data = run.examples[cell_id]
        if not set(EXAMPLE_KEYS) <= set(data) or len({len(data[k]) for k in EXAMPLE_KEYS}) != 1:
            return None, f"{name}'s per-example data are incomplete or of unequal lengths"
        order = np.argsort(np.asarray(data["index"]), kind="stable")
        aligned[name] = {k: np.asarray(data[k])[order] for k in EXAMPLE_KEYS}
    if not np.array_equal(aligned["base"]["index"], aligned["new"]["index"]):
        return None, "the evaluated examples differ"
    if not np.array_equal(aligned["base"]["label"], aligned["new"]["label"]):
        return None, "labels differ at the same example index"
    flags = {which: (_correct(aligned["base"], which), _correct(aligned["new"], which))
             for which in ("clean", "adv")}
    for name, run, position in (("base", base, 0), ("new", new, 1)):
        row, n = run.rows[cell_id], len(aligned[name]["index"])
        for which, metric in (("clean", "clean_accuracy"), ("adv", "robust_accuracy")):
            stored = _accuracy(row, metric)
            if stored is not None and abs(flags[which][position].mean() - stored) > 0.5 / n:
                return None, f"{name}'s per-example data do not reproduce its {metric}"
    return {"clean": flags["clean"], "robust": flags["adv"]}, None


# comparing ---------------------------------------------------------------------------
def _axes(row: dict[str, Any]) -> dict[str, Any]:
    return {axis: row.get(axis) for axis in AXES} | {"n_examples": row.get("n_examples")}


def _matches(axes: dict[str, Any], track: Mapping[str, Sequence[str]]) -> bool:
    for axis, values in track.items():
        value = axes[axis]
        if axis == "delta":
            if not any(float(v) == float(value) for v in values):
                return False
        elif value not in values and str(value).split("[")[0] not in values:
            return False
    return True


def parse_track(items: Sequence[str]) -> dict[str, list[str]]:
    """['attack=pgd,fgsm', 'delta=8'] -> {'attack': ['pgd', 'fgsm'], 'delta': ['8']}."""
    track: dict[str, list[str]] = {}
    for item in items:
        axis, _, values = item.partition("=")
        if not axis or not values:
            raise CompareInputError(f"--track expects AXIS=V1,V2, got {item!r}")
        track.setdefault(axis, []).extend(v for v in values.split(",") if v)
    return _check_track(track)


def _check_track(track: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    for axis, values in track.items():
        if axis not in AXES:
            raise CompareInputError(f"--track: unknown axis {axis!r}; known axes: "
                                    f"{', '.join(AXES)}")
        if axis == "delta":
            for value in values:
                try:
                    float(value)
                except ValueError:
                    raise CompareInputError(f"--track delta={value!r}: not a number") from None
    return {axis: list(values) for axis, values in track.items()}


def _status(base_row, new_row) -> str:
    if base_row is None or new_row is None:
        return "only in new" if base_row is None else "only in base"
    failed = [name for name, row in (("base", base_row), ("new", new_row))
              if row["status"] != "ok"]
    if failed:
        return "failed in both" if len(failed) == 2 else f"failed in {failed[0]}"
    if _accuracy(base_row, "robust_accuracy") is None or _accuracy(new_row, "robust_accuracy") \
            is None:
        return "no robust accuracy"
    return COMPARED


def _compare_cell(base: Run, new: Run, cell_id: str, confidence: float):
    flags, reason = _paired_flags(base, new, cell_id)
    if flags is not None:
        return {which: paired_change(*flags[which], confidence=confidence)
                for which in ("clean", "robust")}, None
    changes = {}
    for which, metric in (("clean", "clean_accuracy"), ("robust", "robust_accuracy")):
        b, n = base.rows[cell_id], new.rows[cell_id]
        accuracies = _accuracy(b, metric), _accuracy(n, metric)
        sizes = int(b.get("n_examples") or 0), int(n.get("n_examples") or 0)
        changes[which] = (None if None in accuracies or 0 in sizes else unpaired_change(
            accuracies[0], sizes[0], accuracies[1], sizes[1], confidence=confidence))
    if changes["robust"] is None:
        reason = f"{reason}; no example counts to test on"
    return changes, reason


def compare_runs(base: Run, new: Run, *, alpha: float = 0.05,
                 track: Mapping[str, Sequence[str]] | None = None,
                 confidence: float = CONFIDENCE) -> Comparison:
    """Every cell_id of either run, compared where both stored it 'ok'; tracked cells'
    robust accuracy tested with Holm's correction at `alpha`. track: AXIS -> names (an
    axis value matches its full label or its name before '['; delta by number); None or
    empty: every cell is tracked. Raises CompareInputError for an unknown axis or a
    filter that selects no compared cell."""
    if not 0 < alpha < 1:
        raise CompareInputError(f"alpha must be in (0, 1), got {alpha}")
    track = _check_track(track or {})
    if not set(base.rows) & set(new.rows):
        raise CompareInputError(f"{base.source} and {new.source} share no cell: nothing to "
                                "compare (were they run from the same matrix?)")
    cells = []
    for cell_id in set(base.rows) | set(new.rows):
        base_row, new_row = base.rows.get(cell_id), new.rows.get(cell_id)
        axes = _axes(base_row if base_row is not None else new_row)
        status = _status(base_row, new_row)
        tracked = _matches(axes, track)
        if status != COMPARED:
            cells.append(CellComparison(cell_id, axes, status, tracked))
            continue
        changes, reason = _compare_cell(base, new, cell_id, confidence)
        if changes["robust"] is None:
            status = "no example counts"
        cells.append(CellComparison(cell_id, axes, status, tracked, changes["clean"],
                                    changes["robust"], reason))
    cells.sort(key=lambda c: (*(str(c.axes[a]) for a in AXES[:-1]), c.axes["delta"] or 0.0,
                              c.axes["n_examples"] or 0, c.cell_id))
    tested = [i for i, c in enumerate(cells) if c.tracked and c.status == COMPARED]
    if track and not tested:
        raise CompareInputError(f"--track {track} selects no cell compared in both runs")
    adjusted = holm_adjusted([cells[i].robust.p_value for i in tested])
    for i, p_holm in zip(tested, adjusted):
        difference = cells[i].robust.difference
        flag = "" if p_holm > alpha or difference == 0 else ("DROP" if difference < 0 else "rise")
        cells[i] = dataclasses.replace(cells[i], robust_p_holm=p_holm, flag=flag)
    return Comparison(base.source, new.source, alpha, track, cells)


# output ------------------------------------------------------------------------------
def _signed(value: float) -> str:
    return f"{value:+.3f}"


def _interval(change: Change | None) -> str:
    if change is None:
        return "–"
    return f"{_signed(change.difference)} [{_signed(change.low)}, {_signed(change.high)}]"


def _p(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def _acc(change: Change | None, side: str) -> str:
    return "–" if change is None else f"{getattr(change, side):.3f}"


def summary_line(comparison: Comparison) -> str:
    """One line: REGRESSION or OK, with the counts behind it."""
    c = comparison
    track = (" (" + "; ".join(f"{a}={','.join(v)}" for a, v in c.track.items()) + ")"
             if c.track else "")
    counts = (f"{len(c.tracked)} tracked robust accuracies{track}, Holm at alpha = {c.alpha:g}: "
              f"{len(c.drops)} significant drop(s), {len(c.rises)} significant rise(s)")
    if c.newly_failed:
        counts += f", {len(c.newly_failed)} tracked cell(s) failed in new only"
    return f"{'REGRESSION' if c.regressed else 'OK'}: {counts}"


def comparison_markdown(comparison: Comparison) -> str:
    """The comparison as Markdown: method, one table row per compared cell, the cells not
    compared, and the summary line (first and last)."""
    c = comparison
    lines = [
        "# Detector comparison\n", f"base: `{c.base}`  \nnew: `{c.new}`\n",
        f"**{summary_line(c)}**\n",
        "Differences are new - base with a 95% interval. Paired cells: the same evaluation "
        "examples matched by dataset index; exact McNemar test, Wald interval with "
        "continuity correction. Unpaired cells (no per-example data): Fisher's exact test, "
        "two-proportion Wald interval with continuity correction. p (Holm): Holm-adjusted "
        "over the tracked robust accuracies; DROP/rise where it is <= alpha.\n",
        "| dataset | model | training | defence | attack | delta | n | clean base | clean new "
        "| Δ clean [95% CI] | robust base | robust new | Δ robust [95% CI] | p | p (Holm) | "
        "test | flag |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in c.cells:
        if cell.status != COMPARED:
            continue
        a, robust = cell.axes, cell.robust
        test = robust.test if cell.unpaired_reason is None else \
            f"{robust.test}: {cell.unpaired_reason}"
        n = robust.n_base if robust.n_base == robust.n_new else f"{robust.n_base}/{robust.n_new}"
        lines.append(
            f"| {a['dataset']} | {a['model']} | {a['training']} | {a['defence']} | "
            f"{a['attack']} | {a['delta']:g} | {n} | {_acc(cell.clean, 'base')} | "
            f"{_acc(cell.clean, 'new')} | {_interval(cell.clean)} | {_acc(robust, 'base')} | "
            f"{_acc(robust, 'new')} | {_interval(robust)} | {_p(robust.p_value)} | "
            f"{_p(cell.robust_p_holm) if cell.tracked else 'untracked'} | {test} | "
            f"{cell.flag} |")
    others = [cell for cell in c.cells if cell.status != COMPARED]
    if others:
        lines += ["", "## Not compared\n", "| status | dataset | model | training | defence | "
                  "attack | delta | cell_id |", "|---|---|---|---|---|---|---|---|"]
        for cell in others:
            a = cell.axes
            lines.append(f"| {cell.status} | {a['dataset']} | {a['model']} | {a['training']} | "
                         f"{a['defence']} | {a['attack']} | {a['delta']:g} | {cell.cell_id} |")
    lines += ["", summary_line(c)]
    return "\n".join(lines) + "\n"
