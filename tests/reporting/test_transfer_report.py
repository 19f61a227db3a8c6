"""Transfer tables, heatmaps and leaderboard rows (dfjax/reporting/transfer.py and the
reports that must keep transfer rows apart) from small synthetic stores: no training,
cells written with Store.put."""

import csv
import re

import pytest

from dfjax.config import (
    AttackSpec,
    Cell,
    DatasetSpec,
    DefenceSpec,
    ModelSpec,
    SourceSpec,
    TrainSpec,
)
from dfjax.reporting import write_report
from dfjax.reporting.cell_rows import load_rows
from dfjax.reporting.leaderboard import group_boards, index_html, worst_case
from dfjax.reporting.tables import flat_rows
from dfjax.reporting.transfer import write_transfer_report
from dfjax.store import Store

EPS = 8 / 255
DATASET = DatasetSpec(name="synthetic_faces", image_size=32)
DETECTORS = (("cnn7", "standard"), ("cnn6", "standard"), ("cnn7", "pgd_at"))
# white-box robust accuracy per detector at delta 4 and 8 (pgd)
WHITE = {("cnn7", "standard"): (0.3, 0.1), ("cnn6", "standard"): (0.4, 0.2),
         ("cnn7", "pgd_at"): (0.6, 0.5)}


def transfer_robust(source, target) -> float:
    """A made-up robust accuracy for each (source, target): distinct per pair, the
    diagonal the white-box one at delta 8."""
    if source == target:
        return WHITE[target][1]
    return 0.7 + 0.01 * DETECTORS.index(source) + 0.001 * DETECTORS.index(target)


def cell(detector, eps, source=None):
    model, training = detector
    source_spec = None if source is None else SourceSpec(
        dataset=DATASET, model=ModelSpec(name=source[0]), training=TrainSpec(recipe=source[1]))
    return Cell(dataset=DATASET, model=ModelSpec(name=model), training=TrainSpec(recipe=training),
                defence=DefenceSpec(), attack=AttackSpec(name="pgd", eps=eps), n_eval=8, seed=0,
                source=source_spec)


def metrics(robust, **more):
    return {"robust_accuracy": robust, "clean_accuracy": 0.9, "attack_success_rate": 1 - robust,
            "clean_roc_auc": 0.95, **{f"adv_true_class_probability_{s}": robust
                                      for s in ("mean", "median", "min")}, **more}


def build_store(path, *, with_transfer):
    store = Store(path)
    for detector, (at4, at8) in WHITE.items():
        store.put(cell(detector, 0.0), status="ok", metrics=metrics(0.9, adaptive=1.0))
        store.put(cell(detector, EPS / 2), status="ok", metrics=metrics(at4, adaptive=1.0))
        store.put(cell(detector, EPS), status="ok", metrics=metrics(at8, adaptive=1.0))
    if with_transfer:
        for source in DETECTORS:
            for target in DETECTORS:
                store.put(cell(target, EPS, source), status="ok", metrics=metrics(
                    transfer_robust(source, target), transfer=1.0, adaptive=0.0))
    return store


@pytest.fixture
def store(tmp_path):
    with build_store(tmp_path / "store.sqlite", with_transfer=True) as store:
        yield store


def _table(markdown, caption):
    """{(source, target): text} of the first Markdown table after `caption`."""
    lines = markdown.split(caption, 1)[1].splitlines()
    lines = lines[next(i for i, line in enumerate(lines) if line.startswith("|")):]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    table = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        for target, text in zip(header[1:], cells[1:]):
            table[(cells[0], target)] = text
    return table


def test_transfer_table_is_source_by_target_with_the_white_box_diagonal(store, tmp_path):
    """transfer.md: one table per budget, a row per source and a column per target, each
    value the stored robust accuracy (attack success likewise), the diagonal in bold;
    transfer.csv: one line per transfer cell naming source and target."""
    written = write_transfer_report(flat_rows(store), tmp_path)
    assert [p.name for p in written[:2]] == ["transfer.md", "transfer.csv"]
    markdown = written[0].read_text()
    assert markdown.count("\n## ") == 1 and "delta 8 (linf" in markdown
    robust = _table(markdown, "Robust accuracy of the target:")
    success = _table(markdown, "Attack success rate")
    names = [f"{m}/{t}" for m, t in DETECTORS]
    assert len(robust) == 9 and {s for s, _ in robust} == set(names)
    for source, source_name in zip(DETECTORS, names):
        for target, target_name in zip(DETECTORS, names):
            value = transfer_robust(source, target)
            expected = f"{value:.3f}", f"{1 - value:.3f}"
            if source == target:
                expected = tuple(f"**{e}**" for e in expected)
            assert (robust[(source_name, target_name)],
                    success[(source_name, target_name)]) == expected
    with open(written[1]) as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == 9
    for line in lines:
        source, target = (tuple(x.split("/")) for x in (line["source"], line["target"]))
        assert float(line["robust_accuracy"]) == pytest.approx(transfer_robust(source, target))


def test_transfer_heatmap_is_one_deterministic_png_per_budget(store, tmp_path):
    first = write_transfer_report(flat_rows(store), tmp_path / "a")
    second = write_transfer_report(flat_rows(store), tmp_path / "b")
    pngs = [p for p in first if p.suffix == ".png"]
    assert len(pngs) == 1 and pngs[0].name.startswith("transfer_synthetic_faces_pgd")
    assert pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_no_transfer_rows_no_transfer_files(tmp_path):
    with build_store(tmp_path / "s.sqlite", with_transfer=False) as store:
        assert write_transfer_report(flat_rows(store), tmp_path) == []


def test_white_box_tables_are_unchanged_by_transfer_rows(tmp_path):
    """results.csv/json, robust_accuracy.md, table1.md, sanity.md and the curve figures
    of a store with transfer rows are byte-identical to those of the same store without;
    the rising-with-eps check never compares a transfer row with white-box ones."""
    names = ("results.csv", "results.json", "robust_accuracy.md", "table1.md", "sanity.md")
    outputs = {}
    for with_transfer in (False, True):
        with build_store(tmp_path / f"{with_transfer}.sqlite",
                         with_transfer=with_transfer) as store:
            out = tmp_path / f"report_{with_transfer}"
            written = write_report(store, out)
            outputs[with_transfer] = {
                p.name: p.read_bytes() for p in written if p.name in names
                or re.match(r"(curves|table1|trace)_.*\.png", p.name)}
            rows = load_rows(store)
            assert not any(r.get("sanity_rising_with_eps") == 1.0 for r in rows)
    assert set(names) <= set(outputs[False])
    assert outputs[True] == outputs[False]
    assert (tmp_path / "report_True" / "transfer.md").exists()


def test_leaderboard_shows_transfer_rows_apart_from_the_white_box_worst_case(tmp_path):
    """Each (target, source) pair is its own entry, marked 'transfer' and named by its
    source, below the white-box entries; a white-box entry's worst case is its own even
    where a transfer row scored lower (here made so on purpose)."""
    with build_store(tmp_path / "s.sqlite", with_transfer=True) as store:
        weaker = cell(("cnn7", "pgd_at"), EPS, ("cnn7", "standard"))
        store.put(weaker, status="ok", metrics=metrics(0.01, transfer=1.0, adaptive=0.0))
        rows = load_rows(store)
    entries = group_boards(rows)[("synthetic_faces", "linf", EPS)]
    assert len(entries) == 3 + 9
    assert [bool(e.source) for e in entries] == [False] * 3 + [True] * 9
    by_name = {(e.model, e.training, e.source): e for e in entries}
    assert worst_case(by_name[("cnn7", "pgd_at", "")]) == (0.5, "min of 1 attack")
    transfer = by_name[("cnn7", "pgd_at", "cnn7/standard")]
    assert transfer.marks == ["transfer"] and "transfer from cnn7/standard" in transfer.name
    assert worst_case(transfer) == (0.01, "transfer, min of 1 attack")
    page = index_html(rows)
    assert page.count('<span class="mark mark-transfer">transfer</span>') == 9
    assert "<small>from cnn7/standard</small>" in page and "black-box transfer" in page
