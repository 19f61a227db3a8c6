"""The history page: tracked figures across git revisions, as one static HTML file.

Two sources, both under a results folder (`results/` by default):

* robust accuracies from `results.json` at every git revision that changed it
  (`git log -- results.json`, `git show REV:./results.json`), oldest first, plus the
  working tree's copy where it differs from the newest commit; outside a git checkout,
  the current file alone, said so on the page;
* bench timings from `bench/*.json` (pytest-benchmark files; `dfjax.benchmarks` reads
  them): one suite per file name without its trailing `-<revision>` (`short-00b6d0a.json`
  -> `short`), each file a point at the revision in its `commit_info`.

The page has inline CSS and inline SVG charts, no script, and nothing that changes
between two generations from the same inputs (no clock, no random ids): regenerating it
gives the same bytes.

    write_history(Path("results"))  # -> results/leaderboard/history.html
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import re
import subprocess
from pathlib import Path
from typing import Any

from dfjax.benchmarks import load_figures

HISTORY_FILE = Path("leaderboard") / "history.html"
CELL_AXES = ("dataset", "model", "training", "defence", "attack", "delta", "n_examples")
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
           "#e377c2", "#7f7f7f", "#bcbd22")
_REVISION_SUFFIX = re.compile(r"-[0-9a-f]{7,40}$")


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """results.json as of one revision: its label (short hash or 'working tree'), commit
    date (ISO 8601; '' for the working tree) and robust accuracy per cell (None: failed)."""

    label: str
    date: str
    robust: dict[tuple, float | None]


@dataclasses.dataclass(frozen=True)
class BenchRun:
    """One bench JSON file: its suite, file name, revision, commit time and figures."""

    suite: str
    file: str
    revision: str
    time: str
    figures: dict[str, Any]


# reading -----------------------------------------------------------------------------
def _git(cwd: Path, *args: str) -> str | None:
    """git's stdout in `cwd`, or None where git is missing or fails (not a checkout)."""
    try:
        done = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _robust_by_cell(text: str) -> dict[tuple, float | None] | None:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(rows, list):
        return None
    robust: dict[tuple, float | None] = {}
    for row in rows:
        if not isinstance(row, dict) or any(axis not in row for axis in CELL_AXES):
            continue
        key = tuple(row[axis] for axis in CELL_AXES)
        value = row.get("robust_accuracy") if row.get("status") == "ok" else None
        robust.setdefault(key, None if value is None else float(value))
    return robust


def results_snapshots(results_dir: Path) -> tuple[list[Snapshot], list[str]]:
    """(snapshots oldest first, notes) of results_dir/results.json across git revisions."""
    notes = []
    log = _git(results_dir, "log", "--format=%h %cI", "--", "results.json")
    current = results_dir / "results.json"
    current_text = current.read_text() if current.is_file() else None
    if log is None:
        notes.append(f"{results_dir} is not in a git checkout (or git is missing): the "
                     "current results.json only, no history.")
        log = ""
    snapshots, newest_text = [], None
    for line in reversed(log.split("\n")):
        if not line.strip():
            continue
        revision, date = line.split(" ", 1)
        text = _git(results_dir, "show", f"{revision}:./results.json")
        robust = None if text is None else _robust_by_cell(text)
        if robust is None:
            notes.append(f"results.json at {revision} could not be read; skipped.")
            continue
        snapshots.append(Snapshot(revision, date, robust))
        newest_text = text
    if current_text is not None and current_text != newest_text:
        robust = _robust_by_cell(current_text)
        if robust is None:
            notes.append(f"{current} could not be read; skipped.")
        else:
            snapshots.append(Snapshot("working tree", "", robust))
            if log:
                notes.append("'working tree': results.json differs from its last commit.")
    return snapshots, notes


def bench_runs(bench_dir: Path) -> tuple[list[BenchRun], list[str]]:
    """Every readable bench JSON of bench_dir, by suite and then commit time."""
    runs, notes = [], []
    for path in sorted(bench_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text())
            figures = load_figures(path)
        except (OSError, ValueError, KeyError, TypeError) as e:
            notes.append(f"bench/{path.name} could not be read ({type(e).__name__}); skipped.")
            continue
        commit = data.get("commit_info") or {}
        revision = str(commit.get("id") or "unknown")[:7] + (" (dirty)" if commit.get("dirty")
                                                             else "")
        runs.append(BenchRun(_REVISION_SUFFIX.sub("", path.stem), path.name, revision,
                             str(commit.get("time") or data.get("datetime") or ""), figures))
    runs.sort(key=lambda r: (r.suite, r.time, r.file))
    return runs, notes


# drawing -----------------------------------------------------------------------------
def _number(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def sparkline_svg(values: list[float | None], *, low: float, high: float, width: int = 120,
                  height: int = 26) -> str:
    """A small inline SVG line over evenly spaced points; None breaks the line."""
    span = high - low or 1.0
    step = (width - 8) / max(len(values) - 1, 1)
    points = [None if v is None else (4 + i * step, height - 4 - (v - low) / span * (height - 8))
              for i, v in enumerate(values)]
    parts, run = [], []
    for point in [*points, None]:
        if point is None:
            if len(run) > 1:
                coords = " ".join(f"{_number(x)},{_number(y)}" for x, y in run)
                parts.append(f'<polyline points="{coords}" fill="none" stroke="#1f77b4" '
                             'stroke-width="1.5"/>')
            run = []
        else:
            run.append(point)
    parts += [f'<circle cx="{_number(x)}" cy="{_number(y)}" r="2" fill="#1f77b4"/>'
              for x, y in (p for p in points if p is not None)]
    return (f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img">{"".join(parts)}</svg>')


def line_chart_svg(series: dict[str, list[float | None]], labels: list[str], *,
                   y_label: str, width: int = 720, height: int = 260) -> str:
    """An inline SVG chart: one coloured line per series over the x labels, y from the
    data's range (with a dashed reference line at 1), legend below."""
    values = [v for vs in series.values() for v in vs if v is not None] + [1.0]
    low, high = min(values), max(values)
    pad = (high - low) * 0.1 or 0.1
    low, high = low - pad, high + pad
    left, right, top, bottom = 56, 16, 12, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    x_of = lambda i: left + (i * plot_w / max(len(labels) - 1, 1))  # noqa: E731
    y_of = lambda v: top + (high - v) / (high - low) * plot_h  # noqa: E731
    parts = [f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
             'stroke="#999"/>',
             f'<line x1="{left}" x2="{left + plot_w}" y1="{_number(y_of(1.0))}" '
             f'y2="{_number(y_of(1.0))}" stroke="#999" stroke-dasharray="4 3"/>']
    for value in (low + pad, 1.0, high - pad):
        parts.append(f'<text x="{left - 4}" y="{_number(y_of(value) + 4)}" '
                     f'text-anchor="end">{value:.2f}</text>')
    for i, label in enumerate(labels):
        parts.append(f'<text x="{_number(x_of(i))}" y="{height - bottom + 16}" '
                     f'text-anchor="middle">{html.escape(label)}</text>')
    parts.append(f'<text x="12" y="{top + plot_h / 2:.0f}" transform="rotate(-90 12 '
                 f'{top + plot_h / 2:.0f})" text-anchor="middle">{html.escape(y_label)}</text>')
    legend = []
    for k, (name, vs) in enumerate(series.items()):
        colour = PALETTE[k % len(PALETTE)]
        points = [(x_of(i), y_of(v)) for i, v in enumerate(vs) if v is not None]
        if len(points) > 1:
            coords = " ".join(f"{_number(x)},{_number(y)}" for x, y in points)
            parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" '
                         'stroke-width="2"/>')
        parts += [f'<circle cx="{_number(x)}" cy="{_number(y)}" r="3" fill="{colour}"/>'
                  for x, y in points]
        legend.append(f'<span class="key" style="background:{colour}"></span>'
                      f'{html.escape(name)}')
    svg = (f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           f'role="img" class="chart">{"".join(parts)}</svg>')
    return svg + '<p class="legend">' + " &nbsp; ".join(legend) + "</p>"


# the page ----------------------------------------------------------------------------
CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; }
th { background: #f3f3f3; } td.name, th.name { text-align: left; }
td.down { background: #fde0dc; } td.up { background: #e0f2e0; }
.note { color: #666; } .chart text { font-size: 11px; fill: #444; }
.key { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
.legend { font-size: 12px; max-width: 720px; }
"""


def _cell_class(value: float | None, previous: float | None) -> str:
    if value is None or previous is None or math.isclose(value, previous, abs_tol=1e-12):
        return ""
    return ' class="up"' if value > previous else ' class="down"'


def _results_section(snapshots: list[Snapshot]) -> list[str]:
    parts = ["<h2>Robust accuracy across revisions</h2>",
             '<p class="note">From <code>results.json</code> at each revision that changed '
             "it, oldest first; a figure is red where it fell, green where it rose since the "
             "previous revision; – where the cell was not in that revision's matrix.</p>"]
    if not snapshots:
        return parts + ["<p>No results.json found.</p>"]
    keys = sorted({k for s in snapshots for k in s.robust},
                  key=lambda k: (*(str(x) for x in k[:5]), float(k[5]), int(k[6])))
    head = "".join(f"<th>{html.escape(s.label)}<br><small>{html.escape(s.date[:10])}</small>"
                   "</th>" for s in snapshots)
    detector = None
    for key in keys:
        if key[:3] != detector:
            if detector is not None:
                parts.append("</table>")
            detector = key[:3]
            parts += [f"<h3>{html.escape(' · '.join(str(x) for x in detector))}</h3>",
                      '<table><tr><th class="name">defence</th><th class="name">attack</th>'
                      f"<th>delta</th><th>n</th>{head}<th>trend</th></tr>"]
        values = [s.robust.get(key, float("nan")) for s in snapshots]
        cells, previous = [], None
        for value in values:
            if value is None:
                cells.append("<td>failed</td>")
                continue
            if math.isnan(value):
                cells.append("<td>–</td>")
                continue
            cells.append(f"<td{_cell_class(value, previous)}>{value:.3f}</td>")
            previous = value
        line = sparkline_svg([v if v is not None and not math.isnan(v) else None
                              for v in values], low=0.0, high=1.0)
        parts.append(f'<tr><td class="name">{html.escape(str(key[3]))}</td>'
                     f'<td class="name">{html.escape(str(key[4]))}</td><td>{key[5]:g}</td>'
                     f"<td>{key[6]}</td>{''.join(cells)}<td>{line}</td></tr>")
    return parts + ["</table>"]


def _bench_section(runs: list[BenchRun]) -> list[str]:
    parts = ["<h2>Bench timings across revisions</h2>",
             '<p class="note">Median seconds per benchmark from <code>bench/*.json</code> '
             "(pytest-benchmark), and in brackets the median as a multiple of the same run's "
             "calibration matmul (comparable across machines). The chart shows that "
             "multiple relative to the suite's first run (lower is faster).</p>"]
    if not runs:
        return parts + ["<p>No bench files found.</p>"]
    for suite in dict.fromkeys(r.suite for r in runs):
        group = [r for r in runs if r.suite == suite]
        names = list(dict.fromkeys(n for r in group for n in r.figures))
        labels = [r.revision for r in group]
        head = "".join(f"<th>{html.escape(r.revision)}<br><small>{html.escape(r.file)}</small>"
                       "</th>" for r in group)
        parts += [f"<h3>suite {html.escape(suite)}</h3>",
                  f'<table><tr><th class="name">benchmark</th>{head}</tr>']
        series = {}
        for name in names:
            cells, relative, first = [], [], None
            for run in group:
                figure = run.figures.get(name)
                if figure is None:
                    cells.append("<td>–</td>")
                    relative.append(None)
                    continue
                scaled = "" if figure.normalised is None else f" (×{figure.normalised:.3g})"
                cells.append(f"<td>{figure.median:.4g} s{scaled}</td>")
                value = figure.normalised if figure.normalised is not None else figure.median
                first = value if first is None else first
                relative.append(value / first if first else None)
            series[name] = relative
            parts.append(f'<tr><td class="name">{html.escape(name)}</td>{"".join(cells)}</tr>')
        parts.append("</table>")
        if len(group) > 1:
            parts.append(line_chart_svg(series, labels,
                                        y_label="x the suite's first run"))
        tracked = list(dict.fromkeys((n, k) for r in group for n in r.figures
                                     for k in r.figures[n].tracked))
        if tracked:
            parts += ["<h4>tracked figures</h4>",
                      f'<table><tr><th class="name">benchmark: figure</th>{head}</tr>']
            for name, key in tracked:
                values = [r.figures[name].tracked.get(key) if name in r.figures else None
                          for r in group]
                cells, previous = [], None
                for value in values:
                    if value is None:
                        cells.append("<td>–</td>")
                        continue
                    cells.append(f"<td{_cell_class(value, previous)}>{value:.4g}</td>")
                    previous = value
                parts.append(f'<tr><td class="name">{html.escape(f"{name}: {key}")}</td>'
                             f'{"".join(cells)}</tr>')
            parts.append("</table>")
    return parts


def history_html(results_dir: Path) -> str:
    """The history page of results_dir (its results.json's git history and bench/*.json)."""
    results_dir = Path(results_dir)
    snapshots, notes = results_snapshots(results_dir)
    runs, bench_notes = bench_runs(results_dir / "bench")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>dfjax: tracked figures across revisions</title>",
             f"<style>{CSS}</style></head><body>",
             "<h1>Tracked figures across revisions</h1>",
             '<p class="note">Generated by <code>dfjax report --history</code> from the '
             "committed outputs; deterministic (no clock), so regenerating it changes nothing "
             "unless they changed. Revisions are short git hashes.</p>"]
    parts += [f'<p class="note">Note: {html.escape(n)}</p>' for n in notes + bench_notes]
    parts += _results_section(snapshots) + _bench_section(runs) + ["</body></html>"]
    return "\n".join(parts) + "\n"


def write_history(results_dir: Path, out: Path | None = None) -> Path:
    """Write the history page (default results_dir/leaderboard/history.html); its path."""
    out = Path(out) if out is not None else Path(results_dir) / HISTORY_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(history_html(Path(results_dir)))
    return out
