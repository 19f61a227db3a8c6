"""The time estimate of `dfjax list cells`: bench rates, FLOP model, calibration on a
reference run."""

import dataclasses
import json

import pytest

from dfjax.config import AttackSpec
from dfjax.configs import get_config
from dfjax.runner import expand
from dfjax.runner.estimate import (
    Rates,
    Reference,
    attack_passes,
    cell_key,
    estimate,
    flop_estimate,
    load_rates,
    load_reference,
)

RATES = Rates(grad_flops_per_second=1e9, forward_flops_per_second=2e9, compile_seconds=1.0,
              source="test")


def _bench(path, when, median):
    path.write_text(json.dumps({"datetime": when, "benchmarks": [
        {"name": "test_throughput[cnn7-forward-b64]", "stats": {"median": median},
         "extra_info": {"flops_per_call": 4e9, "compile_seconds": 0.5}},
        {"name": "test_throughput[cnn7-pgd-b64]", "stats": {"median": median},
         "extra_info": {"flops_per_call": 2e9, "compile_seconds": 3.0}},
        {"name": "test_calibration_matmul", "stats": {"median": 1.0}, "extra_info": {}}]}))


def test_rates_come_from_the_newest_bench_file_with_flop_counts(tmp_path):
    _bench(tmp_path / "old.json", "2026-01-01T00:00:00", 4.0)
    _bench(tmp_path / "new.json", "2026-02-01T00:00:00", 2.0)
    (tmp_path / "peers.json").write_text(json.dumps({"datetime": "2027", "benchmarks": []}))
    rates = load_rates(tmp_path)
    assert rates.source.endswith("new.json")
    assert rates.grad_flops_per_second == 1e9 and rates.forward_flops_per_second == 2e9
    assert rates.compile_seconds == 3.0  # compiles of attacks, not of the forward pass


def test_no_bench_figures_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no bench figures .* in {tmp_path}"):
        load_rates(tmp_path)


def test_attack_passes_follow_the_resolved_options():
    cell = expand(get_config("smoke"))[0]
    pgd = dataclasses.replace(cell, attack=AttackSpec(name="pgd", options={"num_steps": 3}))
    square = dataclasses.replace(cell, attack=AttackSpec(name="square"))
    assert attack_passes(pgd) == (3.0, 0.0)
    assert attack_passes(square) == (0.0, 200.0)  # its default num_queries


def test_more_examples_cost_more_and_a_detector_is_trained_once():
    cells = expand(get_config("smoke"))
    small = estimate(cells, RATES)
    large = estimate([dataclasses.replace(c, n_eval=4 * c.n_eval) for c in cells], RATES)
    assert large.attacks > small.attacks and large.training == small.training
    assert small.detectors == 1 and small.cells == len(cells)


def test_measured_cells_cost_what_they_measured_and_the_rest_is_calibrated():
    cells = expand(get_config("smoke"))
    measured, other = cells[0], cells[1]
    key = cell_key(measured.detector_id, measured.defence.label(), measured.attack.label(),
                   measured.attack.delta)
    flop = flop_estimate(cells, RATES)
    wall = 10 * flop.attacks[measured.cell_id]  # the reference ran 10x the FLOP figure
    reference = Reference({key: (wall, 2 * measured.n_eval)},
                          {measured.detector_id: 123.0}, "test")
    result = estimate([measured, other], RATES, reference, reference_cells=[measured])
    assert result.attack_ratio == pytest.approx(10.0)
    assert result.measured_cells == 1 and result.measured_detectors == 1
    assert result.training == 123.0
    assert result.attacks == pytest.approx(wall / 2 + 10 * flop.attacks[other.cell_id])


def test_reference_takes_the_training_off_a_detectors_slowest_cell(tmp_path):
    rows = [{"status": "ok", "detector_id": "d1", "defence": "none", "attack": "fgsm",
             "delta": 0.0, "wall_time": 105.0, "n_examples": 8},
            {"status": "ok", "detector_id": "d1", "defence": "none", "attack": "fgsm",
             "delta": 8.0, "wall_time": 5.0, "n_examples": 8}]
    (tmp_path / "results.json").write_text(json.dumps(rows))
    (tmp_path / "training.md").write_text("## faces x m (standard), detector d1, trained in "
                                          "100.0 s\n")
    reference = load_reference(tmp_path)
    assert reference.training == {"d1": 100.0}
    assert reference.cells[cell_key("d1", "none", "fgsm", 0.0)] == (5.0, 8)
    assert reference.cells[cell_key("d1", "none", "fgsm", 8.0)] == (5.0, 8)
    assert load_reference(tmp_path / "absent") is None
