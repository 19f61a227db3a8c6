"""`dfjax compare`: the paired statistics, the fallbacks, the exit codes, and the must-show
case: a deliberately degraded detector is flagged, an identical rerun is not."""

import dataclasses
import json
import math

import jax
import numpy as np
import pytest
from scipy import stats

from dfjax.cli import main
from dfjax.config import AttackSpec, Cell, DatasetSpec, DefenceSpec, ModelSpec, TrainSpec
from dfjax.reporting.compare import (
    CompareInputError,
    compare_runs,
    comparison_markdown,
    holm_adjusted,
    load_run,
    mcnemar_exact_p,
    paired_change,
    unpaired_change,
)
from dfjax.store import Store

Z95 = 1.959963984540054


def _cell(delta: float, attack: str = "pgd") -> Cell:
    return Cell(dataset=DatasetSpec(name="synthetic_faces"), model=ModelSpec(name="cnn7_tiny"),
                training=TrainSpec(), defence=DefenceSpec(),
                attack=AttackSpec(name=attack, eps=delta / 255), n_eval=40, seed=0)


def _examples(clean_correct, adv_correct, index=None):
    """Per-example arrays whose correctness is exactly the given flags."""
    clean_correct, adv_correct = np.asarray(clean_correct, bool), np.asarray(adv_correct, bool)
    label = np.arange(len(clean_correct)) % 2
    fake_if = lambda correct: np.where(correct == (label == 1), 0.9, 0.1)  # noqa: E731
    return {"index": np.arange(len(label)) * 3 if index is None else np.asarray(index),
            "label": label, "p_fake_clean": fake_if(clean_correct),
            "p_fake_adv": fake_if(adv_correct)}


def _put(store, cell, clean_correct, adv_correct, *, examples=True, index=None):
    metrics = {"clean_accuracy": float(np.mean(clean_correct)),
               "robust_accuracy": float(np.mean(adv_correct))}
    store.put(cell, status="ok", metrics=metrics, timings={"n_evaluated": len(clean_correct)},
              examples=_examples(clean_correct, adv_correct, index) if examples else None)


def test_mcnemar_p_is_the_hand_computed_two_sided_binomial():
    """8 losses, 2 gains: p = 2 P(X <= 2), X ~ Bin(10, 1/2) = 2 (1 + 10 + 45) / 1024."""
    assert mcnemar_exact_p(8, 2) == pytest.approx(112 / 1024, rel=1e-12)
    assert mcnemar_exact_p(0, 0) == 1.0
    base = np.array([1] * 8 + [0] * 2 + [1] * 5 + [0] * 5, bool)  # 10 concordant pairs
    new = np.array([0] * 8 + [1] * 2 + [1] * 5 + [0] * 5, bool)
    change = paired_change(base, new)
    assert (change.losses, change.gains, change.n_base) == (8, 2, 20)
    assert change.difference == pytest.approx(-0.3) and change.p_value == pytest.approx(112 / 1024)


def test_paired_interval_is_wald_with_continuity_correction():
    """n = 20, b = 8, c = 2: d = -0.3, half = z sqrt(10 - 36/20) / 20 + 1/20."""
    base = np.array([1] * 8 + [0] * 2 + [1] * 10, bool)
    new = np.array([0] * 8 + [1] * 2 + [1] * 10, bool)
    change = paired_change(base, new)
    half = Z95 * math.sqrt(10 - 36 / 20) / 20 + 1 / 20
    assert change.low == pytest.approx(-0.3 - half) and change.high == pytest.approx(-0.3 + half)


def test_intervals_cover_the_true_difference_at_least_95_percent_of_the_time():
    """Seeded simulation: correlated pairs (true accuracies 0.7 -> 0.59: new = base's
    0.6-threshold flags with 5% flipped) and independent samples (0.7 -> 0.6); the
    continuity-corrected intervals cover the true difference in >= 95% of 400 runs."""
    rng = np.random.default_rng(0)
    covered_paired = covered_unpaired = 0
    for _ in range(400):
        u = rng.random(100)
        base, new = u < 0.7, (u < 0.6) ^ (rng.random(100) < 0.05)  # mostly concordant
        true_d = (0.6 * 0.95 + 0.4 * 0.05) - 0.7
        paired = paired_change(base, new)
        covered_paired += paired.low <= true_d <= paired.high
        k_base, k_new = rng.binomial(100, 0.7), rng.binomial(120, 0.6)
        unpaired = unpaired_change(k_base / 100, 100, k_new / 120, 120)
        covered_unpaired += unpaired.low <= -0.1 <= unpaired.high
    assert covered_paired / 400 >= 0.95 and covered_unpaired / 400 >= 0.95


def test_holm_adjusted_p_values_by_hand():
    """Sorted 0.01, 0.03, 0.04, 0.5 -> x4, x3, x2, x1 = 0.04, 0.09, 0.08 (raised to the
    running max 0.09), 0.5; returned in the input order."""
    assert holm_adjusted([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm_adjusted([]) == []


def test_identical_stores_compare_to_zero_with_p_one(tmp_path):
    for name in ("a", "b"):
        with Store(tmp_path / f"{name}.sqlite") as store:
            _put(store, _cell(0), [1, 0] * 20, [1, 0] * 20)
            _put(store, _cell(8), [1, 0] * 20, [1, 1, 0, 0] * 10)
    comparison = compare_runs(load_run(tmp_path / "a.sqlite"), load_run(tmp_path / "b.sqlite"))
    assert len(comparison.tracked) == 2 and not comparison.regressed
    for cell in comparison.cells:
        assert cell.robust.paired and cell.robust.difference == 0.0 and cell.robust.p_value == 1
        assert cell.robust_p_holm == 1.0 and cell.flag == ""


def test_a_drop_is_flagged_and_a_rise_is_not_a_regression(tmp_path):
    """Cell at delta 8 loses 30 of 40 examples (DROP); on the other store it gains them."""
    good, bad = [1] * 40, [1] * 10 + [0] * 30
    for name, robust in (("good", good), ("bad", bad)):
        with Store(tmp_path / f"{name}.sqlite") as store:
            _put(store, _cell(0), good, good)
            _put(store, _cell(8), good, robust)
    drop = compare_runs(load_run(tmp_path / "good.sqlite"), load_run(tmp_path / "bad.sqlite"))
    assert [c.axes["delta"] for c in drop.drops] == [8.0] and drop.regressed
    flagged = drop.drops[0]
    assert flagged.robust.difference == pytest.approx(-0.75)
    assert flagged.robust_p_holm == pytest.approx(min(1, 2 * 2 * 0.5 ** 30))
    rise = compare_runs(load_run(tmp_path / "bad.sqlite"), load_run(tmp_path / "good.sqlite"))
    assert len(rise.rises) == 1 and not rise.regressed


def test_without_per_example_data_the_cell_is_compared_unpaired_and_labelled(tmp_path):
    """A store without examples (as schema 1 stored) falls back to Fisher's exact test on
    the counts, labelled unpaired with its reason, in the table too."""
    with Store(tmp_path / "old.sqlite") as store:
        _put(store, _cell(8), [1] * 40, [1] * 30 + [0] * 10, examples=False)
    with Store(tmp_path / "new.sqlite") as store:
        _put(store, _cell(8), [1] * 40, [1] * 10 + [0] * 30)
    comparison = compare_runs(load_run(tmp_path / "old.sqlite"), load_run(tmp_path / "new.sqlite"))
    (cell,) = comparison.cells
    assert not cell.robust.paired and cell.unpaired_reason == "no per-example data in base"
    assert cell.robust.p_value == pytest.approx(
        stats.fisher_exact([[10, 30], [30, 10]]).pvalue)
    assert cell.flag == "DROP"
    assert "Fisher exact (unpaired): no per-example data in base" in \
        comparison_markdown(comparison)


def test_examples_of_different_indices_are_not_paired(tmp_path):
    with Store(tmp_path / "a.sqlite") as store:
        _put(store, _cell(8), [1] * 40, [1] * 40)
    with Store(tmp_path / "b.sqlite") as store:
        _put(store, _cell(8), [1] * 40, [1] * 40, index=np.arange(40) + 1000)
    (cell,) = compare_runs(load_run(tmp_path / "a.sqlite"), load_run(tmp_path / "b.sqlite")).cells
    assert cell.unpaired_reason == "the evaluated examples differ" and not cell.robust.paired


def test_examples_that_contradict_their_row_or_another_dataset_version_are_not_paired(
        tmp_path):
    """Per-example data must reproduce the row's stored accuracy, and both runs must have
    evaluated the same dataset version; otherwise the cell falls back to unpaired."""
    cell = _cell(8)
    with Store(tmp_path / "a.sqlite") as store:
        _put(store, cell, [1] * 40, [1] * 40)
    with Store(tmp_path / "b.sqlite") as store:
        store.put(cell, status="ok", metrics={"clean_accuracy": 1.0, "robust_accuracy": 0.5},
                  timings={"n_evaluated": 40}, examples=_examples([1] * 40, [1] * 40))
    with Store(tmp_path / "c.sqlite") as store:
        store.put(cell, status="ok", metrics={"clean_accuracy": 1.0, "robust_accuracy": 1.0},
                  timings={"n_evaluated": 40}, examples=_examples([1] * 40, [1] * 40),
                  env={"dataset_version": "9.9.9"})
    with Store(tmp_path / "d.sqlite") as store:
        store.put(cell, status="ok", metrics={"clean_accuracy": 1.0, "robust_accuracy": 1.0},
                  timings={"n_evaluated": 40}, examples=_examples([1] * 40, [1] * 40),
                  env={"dataset_version": "1.0.0"})
    base = load_run(tmp_path / "a.sqlite")
    (wrong,) = compare_runs(base, load_run(tmp_path / "b.sqlite")).cells
    assert wrong.unpaired_reason == "new's per-example data do not reproduce its robust_accuracy"
    (versions,) = compare_runs(load_run(tmp_path / "d.sqlite"), load_run(tmp_path / "c.sqlite")
                               ).cells
    assert versions.unpaired_reason == "dataset versions differ (1.0.0 vs 9.9.9)"
    (unknown,) = compare_runs(base, load_run(tmp_path / "c.sqlite")).cells  # a: no version
    assert unknown.robust.paired


def test_cells_in_one_run_only_and_failed_cells_are_listed_not_compared(tmp_path):
    """A tracked cell ok in base and failed in new is a regression; one missing from new is
    listed only."""
    with Store(tmp_path / "a.sqlite") as store:
        for delta in (0, 4, 8):
            _put(store, _cell(delta), [1] * 40, [1] * 40)
    with Store(tmp_path / "b.sqlite") as store:
        _put(store, _cell(0), [1] * 40, [1] * 40)
        store.put(_cell(4), status="failed", error="boom")
        _put(store, _cell(16), [1] * 40, [1] * 40)
    comparison = compare_runs(load_run(tmp_path / "a.sqlite"), load_run(tmp_path / "b.sqlite"))
    status = {c.axes["delta"]: c.status for c in comparison.cells}
    assert status == {0: "compared", 4: "failed in new", 8: "only in base", 16: "only in new"}
    assert comparison.regressed and not comparison.drops
    text = comparison_markdown(comparison)
    assert "| failed in new |" in text and "| only in base |" in text and "REGRESSION" in text


def test_track_filter_chooses_the_tested_cells_and_unknown_axes_are_refused(tmp_path):
    good, bad = [1] * 40, [0] * 40
    for name, robust in (("a", good), ("b", bad)):
        with Store(tmp_path / f"{name}.sqlite") as store:
            _put(store, _cell(8, "pgd"), good, robust)
            _put(store, _cell(8, "fgsm"), good, good)
    base, new = load_run(tmp_path / "a.sqlite"), load_run(tmp_path / "b.sqlite")
    only_fgsm = compare_runs(base, new, track={"attack": ["fgsm"]})
    assert [c.axes["attack"] for c in only_fgsm.tracked] == ["fgsm"] and not only_fgsm.regressed
    assert compare_runs(base, new, track={"delta": ["8"]}).regressed
    with pytest.raises(CompareInputError, match="unknown axis 'model_name'"):
        compare_runs(base, new, track={"model_name": ["cnn7"]})
    with pytest.raises(CompareInputError, match="selects no cell"):
        compare_runs(base, new, track={"attack": ["square"]})


def test_results_json_is_compared_unpaired(tmp_path):
    with Store(tmp_path / "a.sqlite") as store:
        _put(store, _cell(8), [1] * 40, [1] * 40)
        rows = store.rows()
    (tmp_path / "results.json").write_text(json.dumps(rows))
    comparison = compare_runs(load_run(tmp_path / "results.json"), load_run(tmp_path / "a.sqlite"))
    (cell,) = comparison.cells
    assert cell.unpaired_reason == "no per-example data in base"
    assert cell.robust.difference == 0 and not comparison.regressed


@pytest.mark.parametrize("name,content,message", [
    ("missing.sqlite", None, "no such results store"),
    ("text.sqlite", "not sqlite", "not a readable dfjax results store"),
    ("object.json", "{}", "expected a results.json"),
    ("broken.json", "[{", "not a readable results.json"),
])
def test_unreadable_input_exits_2_naming_the_file(tmp_path, capsys, name, content, message):
    with Store(tmp_path / "a.sqlite") as store:
        _put(store, _cell(8), [1] * 40, [1] * 40)
    bad = tmp_path / name
    if content is not None:
        bad.write_text(content)
    assert main(["compare", str(tmp_path / "a.sqlite"), str(bad)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(bad) in err


def test_runs_without_a_common_cell_exit_2(tmp_path, capsys):
    with Store(tmp_path / "a.sqlite") as store:
        _put(store, _cell(8), [1] * 40, [1] * 40)
    with Store(tmp_path / "b.sqlite") as store:
        _put(store, _cell(4), [1] * 40, [1] * 40)
    assert main(["compare", str(tmp_path / "a.sqlite"), str(tmp_path / "b.sqlite")]) == 2
    assert "share no cell" in capsys.readouterr().err


# the must-show case, through the real runner -----------------------------------------
def _bright_dark_folder(root, n=100):
    """n bright 'real' and n dark 'fake' PNGs: a detector learns this in a few epochs."""
    from tests.data.conftest import write_jpeg

    rng = np.random.default_rng(0)
    for name, bright in (("real", True), ("fake", False)):
        for i in range(n):
            write_jpeg(root / name / f"{i}.png", rng, bright=bright, size=16)


def _noised(detector, seed, scale=3.0):
    """The detector with every weight moved by Gaussian noise of `scale` times the spread of
    its layer's weights (a deliberately degraded detector); numpy, seeded: no compiles."""
    rng = np.random.default_rng(seed)
    leaves, tree = jax.tree_util.tree_flatten(detector.variables["params"])
    noised = [np.asarray(w) + scale * (float(np.std(w)) or 1.0)
              * rng.standard_normal(np.shape(w)).astype(np.asarray(w).dtype) for w in leaves]
    variables = {**detector.variables, "params": jax.tree_util.tree_unflatten(tree, noised)}
    return dataclasses.replace(detector, variables=variables)


@pytest.mark.slow
def test_compare_flags_a_degraded_detector_and_not_an_identical_rerun(tmp_path, monkeypatch,
                                                                       capsys):
    """The same cells run three times: trained detector (base), again from the detector
    cache (identical: exit 0, every difference exactly 0), and with the detector's weights
    noised (exit 1, its robust accuracy flagged DROP)."""
    import dfjax.runner.stages as stages
    from dfjax.config import AttackSweep, MatrixConfig
    from dfjax.runner import run_matrix

    data_dir, checkpoint_dir = tmp_path / "data", tmp_path / "ckpt"
    _bright_dark_folder(data_dir / "manual" / "image_folder")
    config = MatrixConfig(
        name="compare", datasets=(DatasetSpec(name="image_folder", image_size=16),),
        models=(ModelSpec(name="cnn7_tiny"),),
        trainings=(TrainSpec(epochs=3, batch_size=16, learning_rate=0.01),),
        attacks=(AttackSweep(name="fgsm"),), eps_values=(0.0, 8 / 255), n_eval=64,
        eval_batch_size=64, seed=0)

    def run(name):
        with Store(tmp_path / f"{name}.sqlite") as store:
            summary = run_matrix(config, store, progress=False, data_dir=data_dir,
                                 checkpoint_dir=checkpoint_dir, log=lambda _: None)
            assert summary.failed == 0
        return str(tmp_path / f"{name}.sqlite")

    base, rerun = run("base"), run("rerun")
    real_get_detector = stages.get_detector
    monkeypatch.setattr(stages, "get_detector", lambda *a, **k: _noised(
        real_get_detector(*a, **k), seed=7))
    degraded = run("degraded")

    capsys.readouterr()
    assert main(["compare", base, rerun, "--out", str(tmp_path / "same.md")]) == 0
    same = compare_runs(load_run(base), load_run(rerun))
    assert len(same.tracked) == 2
    assert all(c.robust.paired and c.robust.difference == 0 and c.clean.difference == 0
               for c in same.tracked)
    assert (tmp_path / "same.md").read_text().splitlines()[-1].startswith("OK: 2 tracked")

    assert main(["compare", base, degraded]) == 1
    out = capsys.readouterr().out
    assert "| DROP |" in out and out.splitlines()[-1].startswith("REGRESSION")
    worse = compare_runs(load_run(base), load_run(degraded))
    assert 8.0 in {c.axes["delta"] for c in worse.drops}  # the attacked cell, not just eps 0
    assert all(c.robust.paired for c in worse.tracked)
    assert main(["compare", base, degraded, "--no-fail-on-drop"]) == 0
