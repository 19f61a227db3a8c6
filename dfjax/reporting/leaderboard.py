"""The static leaderboard: `index.html` and one page per detector, from the store alone.

After RobustBench: one board per dataset x threat model (norm, eps > 0), one row per
detector (model + training + defence; a detector evaluated on two numbers of examples
gets a row for each, as the tables keep them apart), with clean accuracy and AUC, the
worst-case robust accuracy (the `auto` ensemble where it ran, else the minimum over the
attacks run, labelled so), the best known robust accuracy (the minimum over every attack
run), robust accuracy per attack, certified accuracy where a defence certifies, whether
the evaluation adapted to the defence, the sanity flags ("evaluation possibly
unreliable"), attack time, parameter count and provenance. A transfer attack's cells
(crafted on another detector, black-box to this one) are rows of their own, marked
"transfer" and named by their source, below the white-box rows, and never part of a
white-box row's worst case. Boards sort by any column and
filter by text; each row links to `detectors/<slug>.html` (curves, Table I, ROC clean vs
attacked, training curves, an adversarial gallery), all self-contained: inline CSS, JS
and base64 PNGs, no timestamps of generation, stable order, so the same store gives
byte-identical pages.

Example:
    >>> with Store("results/store.sqlite") as store:
    ...     write_leaderboard(store, Path("results/leaderboard"))
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from dfjax.reporting._html import esc, first_line, fmt, page, td
from dfjax.reporting.cell_rows import (
    USER_TRAINING,
    detector_name,
    detector_slug,
    is_auto,
    load_rows,
    number,
    provenance,
    revision_warning,
    worst_cell,
)
from dfjax.reporting.detector_page import CERTIFIED_PREFIX, detector_html
from dfjax.reporting.tables import SANITY_FLAGS, fired_flags, transfer_source
from dfjax.store import Store

# --- the data: boards of entries ------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Entry:
    """One board row: one detector (model + training + defence) on `n_examples` examples
    at the board's budget. `cells`: its stored cell rows (ok and failed), by attack.
    `source`: for a transfer row, the detector its cells' attacks were crafted on
    ('model/training'); '' for a white-box row."""

    dataset: str
    model: str
    training: str
    defence: str
    n_examples: int
    seed: int
    cells: tuple[dict[str, Any], ...]
    source: str = ""

    @property
    def ok(self) -> list[dict[str, Any]]:
        return [c for c in self.cells if c["status"] == "ok"]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [c for c in self.cells if c["status"] != "ok"]

    @property
    def name(self) -> str:
        name = detector_name(self.model, self.training, self.defence)
        return name + (f" · transfer from {self.source}" if self.source else "")

    @property
    def slug(self) -> str:
        return detector_slug(self.dataset, self.model, self.training, self.defence)

    @property
    def marks(self) -> list[str]:
        """Short marks after the detector's name (CSS class mark-<last word>): 'transfer'
        on a transfer row, 'N failed' where cells failed."""
        return (["transfer"] if self.source else []) + (
            [f"{len(self.failed)} failed"] if self.failed else [])


def group_boards(rows: list[dict[str, Any]]) -> dict[tuple[str, str, float], list[Entry]]:
    """{(dataset, norm, eps): its entries} for every eps > 0, boards in that order;
    white-box entries first, then transfer entries (one per target and source), each by
    worst-case robust accuracy, highest first (none last), then by name."""
    by_row: dict[tuple, list] = defaultdict(list)
    for row in rows:
        if row["eps"] > 0:
            by_row[(row["dataset"], row["norm"], row["eps"], row["model"], row["training"],
                    row["defence"], row["n_examples"], row["seed"],
                    transfer_source(row) or "")].append(row)
    boards: dict[tuple[str, str, float], list[Entry]] = defaultdict(list)
    for key, cells in sorted(by_row.items()):
        dataset, norm, eps, model, training, defence, n, seed, source = key
        cells = sorted(cells, key=lambda c: (c["attack"], c["cell_id"]))
        boards[(dataset, norm, eps)].append(
            Entry(dataset, model, training, defence, n, seed, tuple(cells), source))
    for entries in boards.values():
        entries.sort(key=lambda e: (bool(e.source), _descending(worst_case(e)[0]), e.name,
                                    e.n_examples))
    return dict(sorted(boards.items()))


def _descending(value: float | None) -> float:
    return math.inf if value is None else -value


def worst_case(entry: Entry) -> tuple[float | None, str]:
    """(robust accuracy, label): the `auto` ensemble's where it ran (label 'auto'), else
    the minimum over the attacks run (label 'min of k attacks'); (None, '') with no
    successful cell. A transfer entry's label says 'transfer'."""
    cell = worst_cell(entry.cells)
    if cell is None:
        return None, ""
    prefix = "transfer, " if entry.source else ""
    if is_auto(cell):
        return cell["robust_accuracy"], prefix + "auto"
    k = sum(number(c.get("robust_accuracy")) is not None for c in entry.ok)
    return cell["robust_accuracy"], prefix + f"min of {k} attack{'s' * (k > 1)}"


def best_known(entry: Entry) -> tuple[float | None, str]:
    """(lowest robust accuracy of any attack run, that attack's label)."""
    scored = [(number(c.get("robust_accuracy")), c["attack"]) for c in entry.ok]
    scored = [(v, a) for v, a in scored if v is not None]
    return min(scored) if scored else (None, "")


def clean_metric(entry: Entry, name: str) -> float | None:
    """A clean metric (`clean_accuracy`, `clean_roc_auc`) of the entry's examples: the
    same on every cell of the entry; taken from the first that has it."""
    for cell in entry.ok:
        value = number(cell.get(name))
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
    listing = ", ".join(f"r={r:g}: {fmt(number(v))}" for r, v in radii)
    if norm != "l2":
        return None, "L2 only", listing
    covering = [(r, v) for r, v in radii if r >= eps - 1e-12]
    if not covering:
        return None, f"no radius >= {eps:g}", listing
    radius, value = covering[0]
    return number(value), f"L2 r={radius:g}", listing


def adaptive_mark(entry: Entry) -> tuple[float | None, str, str]:
    """(sort value, text, explanation): 'black-box' for a transfer entry, 'n/a' without a
    defence, 'NO' when any cell's attack ignored the defence (adaptive 0.0), else 'yes'
    with the attack form."""
    if entry.source:
        return None, "black-box", (f"transfer: crafted on {entry.source}, scored on this "
                                   "detector; never adapted to it")
    if entry.defence.split("[")[0] == "none":
        return None, "n/a", "no inference-time defence"
    flags = [number(c.get("adaptive")) for c in entry.ok]
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
        seconds = number(cell.get("attack_time"))
        rate = number(cell.get("images_per_second"))
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
        stored = number(cell.get("parameters"))
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

    from dfjax.config import ModelSpec
    from dfjax.models import build_model, count_parameters

    spec = json.loads(model_json)
    module = build_model(ModelSpec(name=spec["name"], num_logits=spec.get("num_logits", 2),
                                   options=spec.get("options") or {}))
    x = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    shapes = jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False), x)
    return count_parameters(shapes)


# --- HTML ---------------------------------------------------------------------------

def natural_order(label: str) -> list:
    """A sort key reading numbers in labels as numbers: square[num_queries=30] before
    square[num_queries=100]."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part)
            for part in re.split(r"(\d+)", label)]


def _board_html(index: int, key: tuple[str, str, float], entries: list[Entry]) -> str:
    dataset, norm, eps = key
    attacks = sorted({c["attack"] for e in entries for c in e.cells}, key=natural_order)
    budget = f"eps = {eps:.4g}" + (f" (delta = {eps * 255:.4g}/255)" if norm == "linf" else "")
    table_id = f"board-{index}"
    parts = [f'<h2 id="{table_id}-title">{esc(dataset)} · {esc(norm)} · {esc(budget)}</h2>']
    warning = revision_warning([c for e in entries for c in e.cells])
    if warning:
        parts.append(f'<p class="warning revisions">{esc(warning)}</p>')
    codes = sorted({str(c["env"].get("evaluation_code")) for e in entries for c in e.cells
                    if c["status"] == "ok" and c["env"].get("evaluation_code")})
    if len(codes) > 1:  # e.g. rows of one revision, scored before and after an edit
        parts.append(f'<p class="warning fingerprints">This board mixes rows scored by '
                     f'{len(codes)} versions of the evaluation code (fingerprints '
                     f'{esc(", ".join(codes))}): its rows may not be comparable.</p>')
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
        + f">{esc(name)}</th>" for name, kind in headers)
    body = "\n".join(_entry_row(e, attacks, norm, eps) for e in entries)
    parts.append(f'<table class="board" id="{table_id}">\n<thead><tr>{head}</tr></thead>\n'
                 f"<tbody>\n{body}\n</tbody>\n</table>")
    return "\n".join(parts)


def _entry_row(entry: Entry, attacks: list[str], norm: str, eps: float) -> str:
    marks = "".join(f'<span class="mark mark-{esc(m.split()[-1])}">{esc(m)}</span>'
                    for m in entry.marks)
    link = f'<a href="detectors/{esc(entry.slug)}.html">{esc(entry.model)}</a>{marks}'
    if entry.source:
        link += f"<br><small>from {esc(entry.source)}</small>"
    cells = [td(link, entry.model, cls="text", raw=True),
             td(_short(entry.training), entry.training, cls="text", title=entry.training),
             td(entry.defence, entry.defence, cls="text")]
    for name in ("clean_accuracy", "clean_roc_auc"):
        value = clean_metric(entry, name)
        cells.append(td(fmt(value), value))
    value, label = worst_case(entry)
    cells.append(td(f"{fmt(value)}<br><small>{esc(label)}</small>", value, raw=True,
                     title={"auto": "the auto ensemble", "": "no successful cell"}.get(
                         label, "no auto ensemble ran: the minimum over the attacks run"
                         if not entry.source else "the minimum over the transfer attacks "
                         f"from {entry.source}: black-box, not this detector's worst case")))
    value, attack = best_known(entry)
    cells.append(td(f"{fmt(value)}<br><small>{esc(attack)}</small>", value, raw=True,
                     title="the lowest robust accuracy of any attack run"))
    by_attack = {c["attack"]: c for c in entry.cells}
    for attack in attacks:
        cell = by_attack.get(attack)
        if cell is None:
            cells.append(td("", None))
        elif cell["status"] != "ok":
            cells.append(td("failed", None, cls="failed", title=first_line(cell.get("error"))))
        else:
            value = number(cell.get("robust_accuracy"))
            cells.append(td(fmt(value), value))
    value, label, listing = certified(entry, norm, eps)
    cells.append(td(f"{fmt(value)}<br><small>{esc(label)}</small>" if label else "",
                     value, raw=True, title=listing))
    value, text, why = adaptive_mark(entry)
    cells.append(td(text, value, cls="nonadaptive" if text == "NO" else "", title=why))
    flags = fired(entry)
    if entry.source and entry.ok:
        cells.append(td("black-box transfer", "transfer", cls="text",
                         title="crafted on another detector: the sanity checks, which "
                               "re-attack this detector, do not apply"))
    elif flags:
        explanation = "; ".join(SANITY_FLAGS[f] for f in flags)
        cells.append(td(f'<span class="unreliable">evaluation possibly unreliable</span>'
                         f"<br><small>{esc(explanation)}</small>", "unreliable", cls="text",
                         title=explanation, raw=True))
    else:
        cells.append(td("no sanity flag" if entry.ok else "not evaluated",
                         "ok" if entry.ok else None, cls="text"))
    seconds = attack_seconds(entry)
    cells.append(td(fmt(seconds, 1), seconds,
                     title="attack time, compilation excluded, summed over the row's cells"))
    params = parameter_count(entry)
    cells.append(td("–" if params is None else f"{params:,}", params))
    facts = provenance(list(entry.cells))
    text = " · ".join(f"{k}: {v}" for k, v in facts.items())
    cells.append(td(f"<small>{esc(text)}</small>", text, cls="text", raw=True))
    return f'<tr data-slug="{esc(entry.slug)}">' + "".join(cells) + "</tr>"


def _short(label: str) -> str:
    """A recipe label without its options (`pgd_at[eps=...]` -> `pgd_at[...]`); the full
    label is the cell's tooltip and what filtering and sorting use."""
    name, _, options = label.partition("[")
    return f"{name}[…]" if options else name


def index_html(rows: list[dict[str, Any]]) -> str:
    """The leaderboard page of the store's cell rows (as load_rows gives them)."""
    parts = ["<h1>dfjax leaderboard</h1>",
             "<p>Generated by <code>dfjax report</code> from the results store; never edited "
             "by hand. One board per dataset and threat model (norm, eps); one row per "
             "detector (model, training, inference-time defence). <em>worst-case</em> is the "
             "auto ensemble's robust accuracy where it ran, otherwise the minimum over the "
             "attacks run (labelled so); <em>best known</em> is the minimum over every attack "
             "run. Certified accuracy is a certificate (randomized smoothing), not an attack. "
             "Rows marked <em>transfer</em> score examples crafted on another detector "
             "(named under the model; black-box to this one), below the white-box rows. "
             "Click a column header to sort; type to filter.</p>"]
    if not rows:
        parts.append('<p class="warning empty">The results store is empty: no cell has '
                     "been run yet (<code>dfjax run</code>).</p>")
        return page("dfjax leaderboard", "\n".join(parts))
    boards = group_boards(rows)
    if not boards:
        parts.append('<p class="warning empty">The results store holds no attacked cell '
                     "(eps &gt; 0): there is nothing to rank.</p>")
        return page("dfjax leaderboard", "\n".join(parts))
    parts.append('<p><label>Filter rows: <input id="filter" type="search" '
                 'placeholder="model, training, defence, flag..."></label></p>')
    failed = sum(r["status"] != "ok" for r in rows)
    if failed:
        parts.append(f'<p class="warning failures">{failed} of {len(rows)} cells failed; '
                     "their rows mark them, and each detector page lists them with the error."
                     "</p>")
    parts.append("<ul>" + "".join(
        f'<li><a href="#board-{i}-title">{esc(d)} · {esc(n)} · eps {e:.4g}</a> '
        f"({len(entries)} rows)</li>" for i, ((d, n, e), entries) in enumerate(boards.items()))
        + "</ul>")
    for i, (key, entries) in enumerate(boards.items()):
        parts.append(_board_html(i, key, entries))
    parts.append("<h2>Sanity flags</h2><ul>" + "".join(
        f"<li><code>{esc(k)}</code>: {esc(v)}</li>" for k, v in SANITY_FLAGS.items())
        + "</ul>")
    return page("dfjax leaderboard", "\n".join(parts))


# --- detector pages -------------------------------------------------------------------

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
