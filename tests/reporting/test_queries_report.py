"""The query-budget curve and table (dfjax.reporting.queries), from a real store."""

import pytest

from dfjax.config import AttackSpec, Cell, DatasetSpec, DefenceSpec, ModelSpec, TrainSpec
from dfjax.reporting.queries import (
    queries_markdown,
    query_budget,
    rises_beyond_noise,
    wilson_interval,
    write_query_report,
)
from dfjax.store import Store

DATASET = DatasetSpec(name="synthetic_faces", image_size=16, num_examples=100)
TRAININGS = {"standard": TrainSpec(epochs=1), "pgd_at": TrainSpec(recipe="pgd_at", epochs=1)}
# robust accuracy per training at 10, 100, 1000 queries; pgd_at's rises from 0.5 to 0.8
# at 1000: beyond noise at n = 128 (the table must mark it), standard's dip-free
ROBUST = {"standard": (0.75, 0.5, 0.25), "pgd_at": (0.5, 0.5, 0.8)}


def _cell(training, num_queries, attack="square"):
    return Cell(dataset=DATASET, model=ModelSpec(name="cnn7"), training=TRAININGS[training],
                defence=DefenceSpec(), n_eval=128, seed=0,
                attack=AttackSpec(name=attack, eps=8 / 255,
                                  options={"num_queries": num_queries} if num_queries else {}))


def _store(path):
    store = Store(path)
    for training, robust in ROBUST.items():
        for q, accuracy in zip((10, 100, 1000), robust):
            metrics = {"robust_accuracy": accuracy, "clean_accuracy": 0.9}
            if training == "standard":  # queries used stored (dfjax.attacks.square)
                metrics |= {"queries_budget": float(q), "queries_mean": q * 0.5,
                            "queries_median": q * 0.25, "queries_median_to_flip": 3.5}
            store.put(_cell(training, q), status="ok", metrics=metrics,
                      timings={"n_evaluated": 128})
    store.put(_cell("standard", 300), status="failed", error="boom")
    store.put(_cell("standard", None, attack="pgd"), status="ok",
              metrics={"robust_accuracy": 0.0}, timings={"n_evaluated": 128})
    return store


def test_wilson_interval_and_noise_test_match_hand_computed_values():
    low, high = wilson_interval(0.5, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0.0, 128)[0] == 0.0
    assert wilson_interval(1.0, 128)[1] == pytest.approx(1.0)
    # pooled p = 0.5, se = sqrt(0.25 * 2 / 128) = 0.0625: noise allowance 1.96 * 0.0625
    assert not rises_beyond_noise(0.5, 128, 0.62, 128)
    assert rises_beyond_noise(0.5, 128, 0.63, 128)
    with pytest.raises(ValueError, match="n must be > 0"):
        wilson_interval(0.5, 0)


def test_query_budget_reads_the_spec_and_fills_the_default(tmp_path):
    rows = {(r["training"], r["attack"]): r for r in _store(tmp_path / "s.sqlite").rows()}
    assert query_budget(rows[("standard", "square[num_queries=100]")]) == 100
    assert query_budget(rows[("standard", "pgd")]) is None
    default = Store(tmp_path / "d.sqlite")
    default.put(_cell("standard", None), status="ok", metrics={"robust_accuracy": 0.5})
    assert query_budget(default.rows()[0]) == 200  # square's default num_queries


def test_table_has_a_row_per_budget_a_column_per_detector_and_marks_rises(tmp_path):
    text = queries_markdown(_store(tmp_path / "s.sqlite").rows())
    assert "## synthetic_faces x cnn7, delta 8/255" in text
    header = " | pgd_at / none (n = 128) | standard / none (n = 128) |"
    assert f"| queries{header}" in text and f"| budget{header}" in text  # accuracy, queries
    assert "| clean | 0.900 | 0.900 |" in text
    assert "| 10 | 0.500 [0.41, 0.59] | 0.750 [0.67, 0.82] |" in text
    assert "| 1000 | 0.800 [0.72, 0.86] ↑ | 0.250 [0.18, 0.33] |" in text
    assert "| 300 |  | failed |" in text
    assert "| 10 | – | 5.0 / 2.5 / 3.5 |" in text  # pgd_at stored no query counts
    assert "pgd" not in text.split("## ")[1].replace("pgd_at", "")  # not a square row


def test_curve_and_table_written_and_byte_identical_across_runs(tmp_path):
    store = _store(tmp_path / "s.sqlite")
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    written = write_query_report(store.rows(), first)
    assert [p.name for p in written] == ["queries.md", "queries_synthetic_faces_cnn7.png"]
    write_query_report(store.rows(), second)
    for path in written:
        assert path.read_bytes() == (second / path.name).read_bytes(), path.name
    assert written[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_square_cell_gives_a_table_saying_so_and_no_curve(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    store.put(_cell("standard", None, attack="pgd"), status="ok",
              metrics={"robust_accuracy": 0.0})
    written = write_query_report(store.rows(), tmp_path)
    assert [p.name for p in written] == ["queries.md"]
    assert "no Square cell" in written[0].read_text()
