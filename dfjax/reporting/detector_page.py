"""The page of one detector (dataset x model x training x defence): provenance, failed
cells with their errors, every cell, robustness curves, Table I and traces (log axis),
ROC clean vs attacked, certified accuracy, training curves and an adversarial gallery,
all inline (base64 PNGs), so the page opens from disk. Transfer cells (attacks crafted on
another detector) are listed in a table of their own and drawn in none of the figures."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from dfjax.reporting import figures
from dfjax.reporting._html import esc, fmt, img, page
from dfjax.reporting.cell_rows import (
    detector_name,
    number,
    provenance,
    revision_warning,
    worst_cell,
)
from dfjax.reporting.tables import SANITY_FLAGS, attack_label, fired_flags, transfer_source
from dfjax.store import Store

STANDARD_DELTA = 8.0  # the gallery shows this budget (delta, 1/255 units) where it ran
CERTIFIED_PREFIX = "certified_accuracy_l2_"


def detector_html(store: Store, cells: list[dict[str, Any]],
                  histories: dict[str, dict[str, Any]]) -> str:
    """The page of one detector (dataset, model, training, defence): every cell of it in
    `cells` (transfer cells scored on it too), `histories` {detector_id:
    Store.detectors() entry}."""
    first = cells[0]
    transfer = [c for c in cells if transfer_source(c) is not None]
    white_box = [c for c in cells if transfer_source(c) is None]
    name = detector_name(first["model"], first["training"], first["defence"])
    title = f"{name} on {first['dataset']}"
    parts = ['<p><a href="../index.html">&larr; leaderboard</a></p>',
             f"<h1>{esc(title)}</h1>", "<h2>Provenance</h2>",
             "<table>" + "".join(f'<tr><th class="text">{esc(k)}</th>'
                                 f'<td class="text">{esc(v)}</td></tr>'
                                 for k, v in provenance(cells).items()) + "</table>"]
    warning = revision_warning(cells)
    if warning:
        parts.append(f'<p class="warning revisions">{esc(warning.replace("board", "page"))}</p>')
    failed = [c for c in cells if c["status"] != "ok"]
    if failed:
        parts.append(f'<h2 class="failed">Failed cells ({len(failed)})</h2>')
        for c in failed:
            parts.append(f"<h3>{esc(attack_label(c))}, {esc(c['norm'])}, delta {c['delta']:g}, "
                         f"n = {c['n_examples']}</h3>"
                         f'<pre class="error">{esc(c.get("error") or "no error recorded")}</pre>')
    parts.append(_cells_table(white_box))
    parts.append(_transfer_table(transfer))
    ok = [c for c in white_box if c["status"] == "ok"]
    by_n: dict[int, list] = defaultdict(list)
    for c in ok:
        by_n[c["n_examples"]].append(c)
    for n, group in sorted(by_n.items()):
        parts.append(f"<h2>Robustness against delta (n = {n})</h2>")
        parts.append(img(figures.robustness_png(group), "robust accuracy and true-class "
                          "probability against delta"))
        parts.append(img(figures.table1_png(group), "Table I: true-class probability "
                          "(mean, median, min) against delta"))
        parts.append(img(figures.tcp_trace_png(group), "true-class probability against "
                          "attack iteration"))
    parts.append(_roc_section(store, ok))
    parts.append(_certified_section(ok))
    parts.append(_training_section(first["detector_id"], histories))
    parts.append(_gallery_section(store, ok))
    return page(title, "\n".join(p for p in parts if p))


def _cells_table(cells: list[dict[str, Any]]) -> str:
    header = ("<h2>Cells</h2><table><thead><tr><th class='text'>attack</th><th>norm</th>"
              "<th>delta</th><th>n</th><th class='text'>status</th><th>clean acc.</th>"
              "<th>robust acc.</th><th>attack success</th><th class='text'>sanity flags</th>"
              "</tr></thead><tbody>")
    lines = []
    for c in sorted(cells, key=lambda c: (c["n_examples"], c["eps"], c["attack"])):
        status = ('<span class="failed">failed</span>' if c["status"] != "ok" else "ok")
        lines.append(
            f"<tr><td class='text'>{esc(c['attack'])}</td><td>{esc(c['norm'])}</td>"
            f"<td>{c['delta']:g}</td><td>{c['n_examples']}</td><td class='text'>{status}</td>"
            f"<td>{fmt(number(c.get('clean_accuracy')))}</td>"
            f"<td>{fmt(number(c.get('robust_accuracy')))}</td>"
            f"<td>{fmt(number(c.get('attack_success_rate')))}</td>"
            f"<td class='text'>{esc('; '.join(SANITY_FLAGS[f] for f in fired_flags(c)))}"
            "</td></tr>")
    return header + "".join(lines) + "</tbody></table>"


def _transfer_table(cells: list[dict[str, Any]]) -> str:
    """The transfer cells scored on this detector: source, attack, budget, results."""
    if not cells:
        return ""
    lines = []
    for c in sorted(cells, key=lambda c: (c["n_examples"], c["eps"], c["attack"],
                                          transfer_source(c))):
        status = ('<span class="failed">failed</span>' if c["status"] != "ok" else "ok")
        lines.append(
            f"<tr><td class='text'>{esc(transfer_source(c))}</td>"
            f"<td class='text'>{esc(c['attack'])}</td><td>{esc(c['norm'])}</td>"
            f"<td>{c['delta']:g}</td><td>{c['n_examples']}</td><td class='text'>{status}</td>"
            f"<td>{fmt(number(c.get('robust_accuracy')))}</td>"
            f"<td>{fmt(number(c.get('attack_success_rate')))}</td></tr>")
    return ("<h2>Transfer attacks on this detector</h2><p>Adversarial examples crafted "
            "white-box on the source detector and scored on this one (black-box to it); "
            "the source equal to this detector is its white-box cell again.</p>"
            "<table><thead><tr><th class='text'>source</th><th class='text'>attack</th>"
            "<th>norm</th><th>delta</th><th>n</th><th class='text'>status</th>"
            "<th>robust acc.</th><th>attack success</th></tr></thead><tbody>"
            + "".join(lines) + "</tbody></table>")


def _roc_section(store: Store, ok: list[dict[str, Any]]) -> str:
    by_budget: dict[tuple, list] = defaultdict(list)
    for c in ok:
        if c["eps"] > 0:
            by_budget[(c["n_examples"], c["norm"], c["eps"])].append(c)
    images = []
    for (n, norm, eps), group in sorted(by_budget.items()):
        cell = worst_cell(group)
        if cell is not None:
            images.append(img(figures.roc_png(store.examples(cell["cell_id"])),
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
            + "".join(f"<td>{fmt(number(cell[k]))}</td>" for _, k in radii) + "</tr></table>")


def _training_section(detector_id: str, histories: dict[str, dict[str, Any]]) -> str:
    found = histories.get(detector_id)
    if not found or not found.get("history"):
        return ("<h2>Training curves</h2><p>No training history in the store (a detector "
                "loaded from elsewhere, or a user's detector).</p>")
    seconds = found.get("train_seconds")
    caption = "training curves" + (f" ({seconds:.1f} s)" if seconds else "")
    return "<h2>Training curves</h2>" + img(figures.training_png(found["history"]), caption)


def _gallery_section(store: Store, ok: list[dict[str, Any]]) -> str:
    """The gallery of the worst-case cell at delta 8 (the usual budget) where it ran, else
    at the largest budget that stored one."""
    attacked = [c for c in ok if c["eps"] > 0]
    budgets = sorted({(c["n_examples"], c["norm"], c["eps"]) for c in attacked},
                     key=lambda b: (abs(b[2] * 255 - STANDARD_DELTA) > 1e-6, -b[2], b))
    for budget in budgets:
        cell = worst_cell([c for c in attacked
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
            f"<tr><td>{img(g['clean_png'], 'clean')}</td>"
            f"<td>{img(g['perturbation_png'], 'perturbation (amplified)')}</td>"
            f"<td>{img(g['adv_png'], 'adversarial')}</td>"
            f"<td class='text'>example {g['index']}, label {label}<br>p(fake) clean "
            f"{fmt(number(g['p_fake_clean']))} &rarr; adversarial "
            f"{fmt(number(g['p_fake_adv']))}</td></tr>")
    return (f"<h2>Adversarial gallery: {esc(cell['attack'])}, {esc(cell['norm'])}, delta "
            f"{cell['delta']:g}, n = {cell['n_examples']}</h2>"
            "<p>Perturbation amplified to the full range: 0.5 + (adversarial - clean) / "
            "(2 eps).</p><table class='gallery'>" + "".join(rows) + "</table>")
