"""The static leaderboard: `index.html` and one page per detector, from the store alone.

After RobustBench: one board per dataset x threat model (norm, eps > 0), one row per
detector (model + training + defence; a detector evaluated on two numbers of examples
gets a row for each, as the tables keep them apart), with clean accuracy and AUC, the
worst-case robust accuracy (the `auto` ensemble where it ran, else the minimum over the
attacks run, labelled so), the best known robust accuracy (the minimum over every attack
run), robust accuracy per attack, certified accuracy where a defence certifies, whether
the evaluation adapted to the defence, the sanity flags ("evaluation possibly
unreliable"), attack time, parameter count and provenance. Boards sort by any column and
filter by text; each row links to `detectors/<slug>.html` (curves, Table I, ROC clean vs
attacked, training curves, an adversarial gallery), all self-contained: inline CSS, JS
and base64 PNGs, no timestamps of generation, stable order, so the same store gives
byte-identical pages.

Example:
    >>> with Store("results/store.sqlite") as store:
    ...     write_leaderboard(store, Path("results/leaderboard"))
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import html
import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from dfjax.reporting import figures
from dfjax.reporting._leaderboard_assets import SORT_AND_FILTER_JS, STYLE_CSS
from dfjax.reporting.tables import SANITY_FLAGS, add_rising_with_eps, fired_flags
from dfjax.store import Store

STANDARD_DELTA = 8.0  # the gallery shows this budget (delta, 1/255 units) where it ran
CERTIFIED_PREFIX = "certified_accuracy_l2_"
DETECTOR_SOURCES = {"trained": "trained in this run", "cache": "loaded from cache",
                    "user": "the user's own (dfjax.benchmark)"}
USER_TRAINING = "user"  # the training label of a user-benchmarked detector's rows


# --- the data: boards of entries ------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Entry:
    """One board row: one detector (model + training + defence) on `n_examples` examples
    at the board's budget. `cells`: its stored cell rows (ok and failed), by attack."""

    dataset: str
    model: str
    training: str
    defence: str
    n_examples: int
    seed: int
    cells: tuple[dict[str, Any], ...]

    @property
    def ok(self) -> list[dict[str, Any]]:
        return [c for c in self.cells if c["status"] == "ok"]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [c for c in self.cells if c["status"] != "ok"]

    @property
    def name(self) -> str:
        return detector_name(self.model, self.training, self.defence)

    @property
    def slug(self) -> str:
        return detector_slug(self.dataset, self.model, self.training, self.defence)

    @property
    def marks(self) -> list[str]:
        """Short marks after the detector's name. A transfer row (a later issue) adds
        'transfer' here, styled by the CSS class mark-transfer."""
        return [f"{len(self.failed)} failed"] if self.failed else []


def detector_name(model: str, training: str, defence: str) -> str:
    return f"{model} · {training} · defence {defence}"


def detector_slug(dataset: str, model: str, training: str, defence: str) -> str:
    """A file name for the detector page: readable names (options dropped) plus a short
    hash of the full labels, so two option sets never share a page."""
    short = "_".join(re.sub(r"[^A-Za-z0-9_.-]+", "-", label.split("[")[0]).strip("-")
                     for label in (dataset, model, training, defence))
    digest = hashlib.sha256("|".join((dataset, model, training, defence)).encode())
    return f"{short}_{digest.hexdigest()[:8]}"


def load_rows(store: Store) -> list[dict[str, Any]]:
    """Every stored cell row with its JSON columns parsed (`env`, `extra`, `spec`) and the
    cross-cell flag sanity_rising_with_eps added (as in tables.flat_rows)."""
    rows = store.rows()
    add_rising_with_eps(rows)
    for row in rows:
        for column, key in (("env_json", "env"), ("extra_json", "extra"), ("spec_json", "spec")):
            try:
                row[key] = json.loads(row.get(column) or "{}")
            except json.JSONDecodeError:
                row[key] = {}
    return rows


def group_boards(rows: list[dict[str, Any]]) -> dict[tuple[str, str, float], list[Entry]]:
    """{(dataset, norm, eps): its entries} for every eps > 0, boards in that order;
    entries by worst-case robust accuracy, highest first (none last), then by name."""
    by_row: dict[tuple, list] = defaultdict(list)
    for row in rows:
        if row["eps"] > 0:
            by_row[(row["dataset"], row["norm"], row["eps"], row["model"], row["training"],
                    row["defence"], row["n_examples"], row["seed"])].append(row)
    boards: dict[tuple[str, str, float], list[Entry]] = defaultdict(list)
    for key, cells in sorted(by_row.items()):
        dataset, norm, eps, model, training, defence, n, seed = key
        cells = sorted(cells, key=lambda c: (c["attack"], c["cell_id"]))
        boards[(dataset, norm, eps)].append(
            Entry(dataset, model, training, defence, n, seed, tuple(cells)))
    for entries in boards.values():
        entries.sort(key=lambda e: (_descending(worst_case(e)[0]), e.name, e.n_examples))
    return dict(sorted(boards.items()))


def _descending(value: float | None) -> float:
    return math.inf if value is None else -value


def _number(value: Any) -> float | None:
    """A float, or None for a missing or NaN value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def _is_auto(row: dict[str, Any]) -> bool:
    return row["attack"].split("[")[0] == "auto"


def worst_case(entry: Entry) -> tuple[float | None, str]:
    """(robust accuracy, label): the `auto` ensemble's where it ran (label 'auto'), else
    the minimum over the attacks run (label 'min of k attacks'); (None, '') with no
    successful cell."""
    scored = [(_number(c.get("robust_accuracy")), c) for c in entry.ok]
    scored = [(v, c) for v, c in scored if v is not None]
    auto = [v for v, c in scored if _is_auto(c)]
    if auto:
        return min(auto), "auto"
    if not scored:
        return None, ""
    return min(v for v, _ in scored), f"min of {len(scored)} attack{'s' * (len(scored) > 1)}"


def best_known(entry: Entry) -> tuple[float | None, str]:
    """(lowest robust accuracy of any attack run, that attack's label)."""
    scored = [(_number(c.get("robust_accuracy")), c["attack"]) for c in entry.ok]
    scored = [(v, a) for v, a in scored if v is not None]
    return min(scored) if scored else (None, "")


def clean_metric(entry: Entry, name: str) -> float | None:
    """A clean metric (`clean_accuracy`, `clean_roc_auc`) of the entry's examples: the
    same on every cell of the entry; taken from the first that has it."""
    for cell in entry.ok:
        value = _number(cell.get(name))
        if value is not None:
            return value
    return None


def certified(entry: Entry, norm: str, eps: float) -> tuple[float | None, str, str]:
    """(certified accuracy, label, every radius as text) of a smoothed detector. On an
    L2 board the value is at the smallest certified radius >= eps (a certificate there
    covers the eps ball); on other norms no L2 radius is matched: (None, 'L2 only', ...)."""
    cell = next((c for c in entry.ok if any(k.startswith(CERTIFIED_PREFIX) for k in c)), None)
    if cell is None:
        return None, "", ""
    radii = sorted((float(k.removeprefix(CERTIFIED_PREFIX)), cell[k]) for k in cell
                   if k.startswith(CERTIFIED_PREFIX))
    listing = ", ".join(f"r={r:g}: {_fmt(_number(v))}" for r, v in radii)
    if norm != "l2":
        return None, "L2 only", listing
    covering = [(r, v) for r, v in radii if r >= eps - 1e-12]
    if not covering:
        return None, f"no radius >= {eps:g}", listing
    radius, value = covering[0]
    return _number(value), f"L2 r={radius:g}", listing


def adaptive_mark(entry: Entry) -> tuple[float | None, str, str]:
    """(sort value, text, explanation): 'n/a' without a defence, 'NO' when any cell's
    attack ignored the defence (adaptive 0.0), else 'yes' with the attack form."""
    if entry.defence.split("[")[0] == "none":
        return None, "n/a", "no inference-time defence"
    flags = [_number(c.get("adaptive")) for c in entry.ok]
    if any(f == 0.0 for f in flags):
        return 0.0, "NO", "the attack ignored the defence: robust accuracy is optimistic"
    forms = []
    for cell in entry.ok:
        defence = cell["extra"].get("defence") or {}
        if defence.get("surrogate"):
            forms.append(f"BPDA ({defence['surrogate']})")
        if (defence.get("eot_samples") or 1) > 1:
            forms.append(f"EOT x{defence['eot_samples']}")
    detail = ", ".join(sorted(set(forms))) or "through the defence"
    return (1.0, "yes", detail) if flags else (None, "–", "no successful cell")


def fired(entry: Entry) -> list[str]:
    """The sanity flags fired on any of the entry's cells, in SANITY_FLAGS order."""
    names = {name for cell in entry.ok for name in fired_flags(cell)}
    return [name for name in SANITY_FLAGS if name in names]


def attack_seconds(entry: Entry) -> float | None:
    """Attack time summed over the entry's cells, compilation excluded: a cell's
    attack_time where stored, else n_examples / images_per_second."""
    total, counted = 0.0, False
    for cell in entry.ok:
        seconds = _number(cell.get("attack_time"))
        rate = _number(cell.get("images_per_second"))
        if seconds is None and rate:
            seconds = cell["n_examples"] / rate
        if seconds is not None:
            total, counted = total + seconds, True
    return total if counted else None


def parameter_count(entry: Entry) -> int | None:
    """The detector's parameter count: a stored `parameters` metric where a cell has one,
    else counted from its ModelSpec at its dataset's image size (shapes only, no
    compute); None for a model dfjax does not know, and for a user's detector without
    the metric (its model name is the user's, whatever dfjax model it may also name)."""
    for cell in entry.cells:
        stored = _number(cell.get("parameters"))
        if stored is not None:
            return int(stored)
    if entry.training == USER_TRAINING:
        return None
    spec = entry.cells[0]["spec"]
    try:
        model, size = spec["model"], int(spec["dataset"]["image_size"])
        return _count_parameters(json.dumps(model, sort_keys=True), size)
    except (KeyError, TypeError, ValueError):
        return None


@functools.cache
def _count_parameters(model_json: str, image_size: int) -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from dfjax.config import ModelSpec
    from dfjax.models import build_model

    spec = json.loads(model_json)
    module = build_model(ModelSpec(name=spec["name"], num_logits=spec.get("num_logits", 2),
                                   options=spec.get("options") or {}))
    x = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    shapes = jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False), x)
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes["params"]))


PROVENANCE_FIELDS = (  # (label, function of a cell row -> text)
    ("examples evaluated", lambda c: str(c["n_examples"])),
    ("git revision", lambda c: c["env"].get("git_revision", "unknown")
     + (" (dirty)" if c["env"].get("git_dirty") == "true" else "")),
    ("dfjax", lambda c: c["env"].get("dfjax", "unknown")),
    ("dataset version", lambda c: c["env"].get("dataset_version")
     or c["spec"].get("dataset", {}).get("data_version", "unknown")),
    ("detector", lambda c: DETECTOR_SOURCES.get(c["env"].get("detector_source", ""),
                                                "unknown source")
     + (f", trained {c['env']['detector_trained_at']}"
        if c["env"].get("detector_trained_at", "unknown") != "unknown" else "")),
    ("machine", lambda c: ", ".join(v for v in (c["env"].get("cpu"), c["env"].get("device"))
                                    if v) or "unknown"),
)


def provenance(cells: list[dict[str, Any]]) -> dict[str, str]:
    """{field: its distinct values over the cells, joined by '; '}."""
    return {label: "; ".join(sorted({value(c) for c in cells}))
            for label, value in PROVENANCE_FIELDS}


def revision_warning(cells: list[dict[str, Any]]) -> str | None:
    """Why the cells may not be comparable (several git revisions, or a modified work
    tree), or None."""
    revisions = sorted({c["env"].get("git_revision", "unknown") for c in cells})
    dirty = any(c["env"].get("git_dirty") == "true" for c in cells)
    problems = []
    if len(revisions) > 1:
        problems.append(f"mixes rows from {len(revisions)} code revisions "
                        f"({', '.join(revisions)})")
    if dirty:
        problems.append("has rows from a modified (dirty) work tree")
    if not problems:
        return None
    return "This board " + " and ".join(problems) + ": its rows may not be comparable."


# --- HTML ---------------------------------------------------------------------------

def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _td(text: str, value: Any = None, *, cls: str = "", title: str = "",
        raw: bool = False) -> str:
    """A table cell; `value` (number or text) is what sorting uses, none = sorts last."""
    attrs = ""
    if value is not None:
        attrs += f' data-v="{_esc(repr(value) if isinstance(value, float) else value)}"'
    if cls:
        attrs += f' class="{cls}"'
    if title:
        attrs += f' title="{_esc(title)}"'
    return f"<td{attrs}>{text if raw else _esc(text)}</td>"


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{_esc(title)}</title>\n<style>{STYLE_CSS}</style>\n"
            f"<script>{SORT_AND_FILTER_JS}</script>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def _board_html(index: int, key: tuple[str, str, float], entries: list[Entry]) -> str:
    dataset, norm, eps = key
    attacks = sorted({c["attack"] for e in entries for c in e.cells})
    budget = f"eps = {eps:.4g}" + (f" (delta = {eps * 255:.4g}/255)" if norm == "linf" else "")
    table_id = f"board-{index}"
    parts = [f'<h2 id="{table_id}-title">{_esc(dataset)} · {_esc(norm)} · {_esc(budget)}</h2>']
    warning = revision_warning([c for e in entries for c in e.cells])
    if warning:
        parts.append(f'<p class="warning revisions">{_esc(warning)}</p>')
    parts.append(f'<p><small>rows shown: <span id="{table_id}-count">{len(entries)} of '
                 f"{len(entries)}</span></small></p>")
    headers = [("detector", "text"), ("training", "text"), ("defence", "text"),
               ("clean acc.", "num"), ("clean AUC", "num"), ("worst-case robust acc.", "num"),
               ("best known", "num"), *((a, "num") for a in attacks),
               ("certified acc.", "num"), ("adaptive", "num"), ("evaluation", "text"),
               ("attack time (s)", "num"), ("parameters", "num"), ("provenance", "text")]
    head = "".join(
        f'<th data-type="{kind}" class="{kind}"'
        + (' aria-sort="descending"' if name == "worst-case robust acc." else "")
        + f">{_esc(name)}</th>" for name, kind in headers)
    body = "\n".join(_entry_row(e, attacks, norm, eps) for e in entries)
    parts.append(f'<table class="board" id="{table_id}">\n<thead><tr>{head}</tr></thead>\n'
                 f"<tbody>\n{body}\n</tbody>\n</table>")
    return "\n".join(parts)


def _entry_row(entry: Entry, attacks: list[str], norm: str, eps: float) -> str:
    marks = "".join(f'<span class="mark mark-{_esc(m.split()[-1])}">{_esc(m)}</span>'
                    for m in entry.marks)
    link = f'<a href="detectors/{_esc(entry.slug)}.html">{_esc(entry.model)}</a>{marks}'
    cells = [_td(link, entry.model, cls="text", raw=True),
             _td(entry.training, entry.training, cls="text"),
             _td(entry.defence, entry.defence, cls="text")]
    for name in ("clean_accuracy", "clean_roc_auc"):
        value = clean_metric(entry, name)
        cells.append(_td(_fmt(value), value))
    value, label = worst_case(entry)
    cells.append(_td(f"{_fmt(value)}<br><small>{_esc(label)}</small>", value, raw=True,
                     title={"auto": "the auto ensemble", "": "no successful cell"}.get(
                         label, "no auto ensemble ran: the minimum over the attacks run")))
    value, attack = best_known(entry)
    cells.append(_td(f"{_fmt(value)}<br><small>{_esc(attack)}</small>", value, raw=True,
                     title="the lowest robust accuracy of any attack run"))
    by_attack = {c["attack"]: c for c in entry.cells}
    for attack in attacks:
        cell = by_attack.get(attack)
        if cell is None:
            cells.append(_td("", None))
        elif cell["status"] != "ok":
            cells.append(_td("failed", None, cls="failed", title=_first_line(cell.get("error"))))
        else:
            value = _number(cell.get("robust_accuracy"))
            cells.append(_td(_fmt(value), value))
    value, label, listing = certified(entry, norm, eps)
    cells.append(_td(f"{_fmt(value)}<br><small>{_esc(label)}</small>" if label else "",
                     value, raw=True, title=listing))
    value, text, why = adaptive_mark(entry)
    cells.append(_td(text, value, cls="nonadaptive" if text == "NO" else "", title=why))
    flags = fired(entry)
    if flags:
        explanation = "; ".join(SANITY_FLAGS[f] for f in flags)
        cells.append(_td(f'<span class="unreliable">evaluation possibly unreliable</span>'
                         f"<br><small>{_esc(explanation)}</small>", "unreliable", cls="text",
                         title=explanation, raw=True))
    else:
        cells.append(_td("no sanity flag" if entry.ok else "not evaluated",
                         "ok" if entry.ok else None, cls="text"))
    seconds = attack_seconds(entry)
    cells.append(_td(_fmt(seconds, 1), seconds,
                     title="attack time, compilation excluded, summed over the row's cells"))
    params = parameter_count(entry)
    cells.append(_td("–" if params is None else f"{params:,}", params))
    facts = provenance(list(entry.cells))
    text = " · ".join(f"{k}: {v}" for k, v in facts.items())
    cells.append(_td(f"<small>{_esc(text)}</small>", text, cls="text", raw=True))
    return f'<tr data-slug="{_esc(entry.slug)}">' + "".join(cells) + "</tr>"


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else "no error recorded"


def index_html(rows: list[dict[str, Any]]) -> str:
    """The leaderboard page of the store's cell rows (as load_rows gives them)."""
    parts = ["<h1>dfjax leaderboard</h1>",
             "<p>Generated by <code>dfjax report</code> from the results store; never edited "
             "by hand. One board per dataset and threat model (norm, eps); one row per "
             "detector (model, training, inference-time defence). <em>worst-case</em> is the "
             "auto ensemble's robust accuracy where it ran, otherwise the minimum over the "
             "attacks run (labelled so); <em>best known</em> is the minimum over every attack "
             "run. Certified accuracy is a certificate (randomized smoothing), not an attack. "
             "Click a column header to sort; type to filter.</p>"]
    if not rows:
        parts.append('<p class="warning empty">The results store is empty: no cell has '
                     "been run yet (<code>dfjax run</code>).</p>")
        return _page("dfjax leaderboard", "\n".join(parts))
    boards = group_boards(rows)
    if not boards:
        parts.append('<p class="warning empty">The results store holds no attacked cell '
                     "(eps &gt; 0): there is nothing to rank.</p>")
        return _page("dfjax leaderboard", "\n".join(parts))
    parts.append('<p><label>Filter rows: <input id="filter" type="search" '
                 'placeholder="model, training, defence, flag..."></label></p>')
    failed = sum(r["status"] != "ok" for r in rows)
    if failed:
        parts.append(f'<p class="warning failures">{failed} of {len(rows)} cells failed; '
                     "their rows mark them, and each detector page lists them with the error."
                     "</p>")
    parts.append("<ul>" + "".join(
        f'<li><a href="#board-{i}-title">{_esc(d)} · {_esc(n)} · eps {e:.4g}</a> '
        f"({len(entries)} rows)</li>" for i, ((d, n, e), entries) in enumerate(boards.items()))
        + "</ul>")
    for i, (key, entries) in enumerate(boards.items()):
        parts.append(_board_html(i, key, entries))
    parts.append("<h2>Sanity flags</h2><ul>" + "".join(
        f"<li><code>{_esc(k)}</code>: {_esc(v)}</li>" for k, v in SANITY_FLAGS.items())
        + "</ul>")
    return _page("dfjax leaderboard", "\n".join(parts))


# --- detector pages -------------------------------------------------------------------

def _img(png: bytes | None, caption: str) -> str:
    if png is None:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{_esc(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>")


def _worst_cell(cells: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The cell behind the worst-case number of `cells` (one eps and n): auto where it
    ran, else the attack with the lowest robust accuracy."""
    ok = [c for c in cells if c["status"] == "ok"
          and _number(c.get("robust_accuracy")) is not None]
    auto = [c for c in ok if _is_auto(c)]
    pool = auto or ok
    return min(pool, key=lambda c: (c["robust_accuracy"], c["attack"])) if pool else None


def detector_html(store: Store, cells: list[dict[str, Any]],
                  histories: dict[str, dict[str, Any]]) -> str:
    """The page of one detector (dataset, model, training, defence): every cell of it in
    `cells`, `histories` {detector_id: Store.detectors() entry}."""
    first = cells[0]
    name = detector_name(first["model"], first["training"], first["defence"])
    title = f"{name} on {first['dataset']}"
    parts = ['<p><a href="../index.html">&larr; leaderboard</a></p>',
             f"<h1>{_esc(title)}</h1>", "<h2>Provenance</h2>",
             "<table>" + "".join(f'<tr><th class="text">{_esc(k)}</th>'
                                 f'<td class="text">{_esc(v)}</td></tr>'
                                 for k, v in provenance(cells).items()) + "</table>"]
    warning = revision_warning(cells)
    if warning:
        parts.append(f'<p class="warning revisions">{_esc(warning.replace("board", "page"))}</p>')
    failed = [c for c in cells if c["status"] != "ok"]
    if failed:
        parts.append(f'<h2 class="failed">Failed cells ({len(failed)})</h2>')
        for c in failed:
            parts.append(f"<h3>{_esc(c['attack'])}, {_esc(c['norm'])}, delta {c['delta']:g}, "
                         f"n = {c['n_examples']}</h3>"
                         f'<pre class="error">{_esc(c.get("error") or "no error recorded")}</pre>')
    parts.append(_cells_table(cells))
    ok = [c for c in cells if c["status"] == "ok"]
    by_n: dict[int, list] = defaultdict(list)
    for c in ok:
        by_n[c["n_examples"]].append(c)
    for n, group in sorted(by_n.items()):
        parts.append(f"<h2>Robustness against delta (n = {n})</h2>")
        parts.append(_img(figures.robustness_png(group), "robust accuracy and true-class "
                          "probability against delta"))
        parts.append(_img(figures.table1_png(group), "Table I: true-class probability "
                          "(mean, median, min) against delta"))
        parts.append(_img(figures.tcp_trace_png(group), "true-class probability against "
                          "attack iteration"))
    parts.append(_roc_section(store, ok))
    parts.append(_certified_section(ok))
    parts.append(_training_section(first["detector_id"], histories))
    parts.append(_gallery_section(store, ok))
    return _page(title, "\n".join(p for p in parts if p))


def _cells_table(cells: list[dict[str, Any]]) -> str:
    header = ("<h2>Cells</h2><table><thead><tr><th class='text'>attack</th><th>norm</th>"
              "<th>delta</th><th>n</th><th class='text'>status</th><th>clean acc.</th>"
              "<th>robust acc.</th><th>attack success</th><th class='text'>sanity flags</th>"
              "</tr></thead><tbody>")
    lines = []
    for c in sorted(cells, key=lambda c: (c["n_examples"], c["eps"], c["attack"])):
        status = ('<span class="failed">failed</span>' if c["status"] != "ok" else "ok")
        lines.append(
            f"<tr><td class='text'>{_esc(c['attack'])}</td><td>{_esc(c['norm'])}</td>"
            f"<td>{c['delta']:g}</td><td>{c['n_examples']}</td><td class='text'>{status}</td>"
            f"<td>{_fmt(_number(c.get('clean_accuracy')))}</td>"
            f"<td>{_fmt(_number(c.get('robust_accuracy')))}</td>"
            f"<td>{_fmt(_number(c.get('attack_success_rate')))}</td>"
            f"<td class='text'>{_esc('; '.join(SANITY_FLAGS[f] for f in fired_flags(c)))}"
            "</td></tr>")
    return header + "".join(lines) + "</tbody></table>"


def _roc_section(store: Store, ok: list[dict[str, Any]]) -> str:
    by_budget: dict[tuple, list] = defaultdict(list)
    for c in ok:
        if c["eps"] > 0:
            by_budget[(c["n_examples"], c["norm"], c["eps"])].append(c)
    images = []
    for (n, norm, eps), group in sorted(by_budget.items()):
        cell = _worst_cell(group)
        if cell is not None:
            images.append(_img(figures.roc_png(store.examples(cell["cell_id"])),
                               f"ROC clean vs attacked: {cell['attack']}, {norm}, delta "
                               f"{cell['delta']:g}, n = {n}"))
    images = [i for i in images if i]
    return "<h2>ROC, clean vs attacked (worst-case attack per budget)</h2>" + "".join(
        images) if images else ""


def _certified_section(ok: list[dict[str, Any]]) -> str:
    cell = next((c for c in ok if any(k.startswith(CERTIFIED_PREFIX) for k in c)), None)
    if cell is None:
        return ""
    radii = sorted((float(k.removeprefix(CERTIFIED_PREFIX)), k) for k in cell
                   if k.startswith(CERTIFIED_PREFIX))
    return ("<h2>CERTIFIED accuracy (randomized smoothing; a certificate, not an attack)</h2>"
            "<table><tr><th class='text'>L2 radius</th>"
            + "".join(f"<th>{r:g}</th>" for r, _ in radii)
            + "</tr><tr><th class='text'>certified accuracy</th>"
            + "".join(f"<td>{_fmt(_number(cell[k]))}</td>" for _, k in radii) + "</tr></table>")


def _training_section(detector_id: str, histories: dict[str, dict[str, Any]]) -> str:
    found = histories.get(detector_id)
    if not found or not found.get("history"):
        return ("<h2>Training curves</h2><p>No training history in the store (a detector "
                "loaded from elsewhere, or a user's detector).</p>")
    seconds = found.get("train_seconds")
    caption = "training curves" + (f" ({seconds:.1f} s)" if seconds else "")
    return "<h2>Training curves</h2>" + _img(figures.training_png(found["history"]), caption)


def _gallery_section(store: Store, ok: list[dict[str, Any]]) -> str:
    """The gallery of the worst-case cell at delta 8 (the usual budget) where it ran, else
    at the largest budget that stored one."""
    attacked = [c for c in ok if c["eps"] > 0]
    budgets = sorted({(c["n_examples"], c["norm"], c["eps"]) for c in attacked},
                     key=lambda b: (abs(b[2] * 255 - STANDARD_DELTA) > 1e-6, -b[2], b))
    for budget in budgets:
        cell = _worst_cell([c for c in attacked
                            if (c["n_examples"], c["norm"], c["eps"]) == budget])
        entries = store.gallery(cell["cell_id"]) if cell else []
        if entries:
            break
    else:
        return ""
    rows = []
    for g in entries:
        label = "fake" if g["label"] == 1 else "real"
        rows.append(
            f"<tr><td>{_img(g['clean_png'], 'clean')}</td>"
            f"<td>{_img(g['perturbation_png'], 'perturbation (amplified)')}</td>"
            f"<td>{_img(g['adv_png'], 'adversarial')}</td>"
            f"<td class='text'>example {g['index']}, label {label}<br>p(fake) clean "
            f"{_fmt(_number(g['p_fake_clean']))} &rarr; adversarial "
            f"{_fmt(_number(g['p_fake_adv']))}</td></tr>")
    return (f"<h2>Adversarial gallery: {_esc(cell['attack'])}, {_esc(cell['norm'])}, delta "
            f"{cell['delta']:g}, n = {cell['n_examples']}</h2>"
            "<p>Perturbation amplified to the full range: 0.5 + (adversarial - clean) / "
            "(2 eps).</p><table class='gallery'>" + "".join(rows) + "</table>")


# --- writing ------------------------------------------------------------------------

def write_leaderboard(store: Store, out: Path) -> list[Path]:
    """Write `out/index.html` and `out/detectors/<slug>.html` (one per dataset x model x
    training x defence in the store); returns their paths, index first. Pages of detectors
    no longer in the store are removed, so `out` mirrors the store."""
    out = Path(out)
    detectors_dir = out / "detectors"
    detectors_dir.mkdir(parents=True, exist_ok=True)
    rows = load_rows(store)
    index = out / "index.html"
    index.write_text(index_html(rows), encoding="utf-8")
    written = [index]
    pages: dict[str, list] = defaultdict(list)
    for row in rows:
        pages[detector_slug(row["dataset"], row["model"], row["training"],
                            row["defence"])].append(row)
    histories = {d["detector_id"]: d for d in store.detectors()}
    for slug, cells in sorted(pages.items()):
        path = detectors_dir / f"{slug}.html"
        path.write_text(detector_html(store, cells, histories), encoding="utf-8")
        written.append(path)
    for stale in sorted(detectors_dir.glob("*.html")):
        if stale not in written:
            stale.unlink()
    return written
