"""One cell as a pipeline of named stages, each owned by its package:

data (`dfjax.data`: the evaluation subset) -> detector (`dfjax.training.detectors`,
acquired by the executor) -> defended logits (`dfjax.defences`) -> attack, ensembles
included (`dfjax.attacks.evaluate`) -> scores (`dfjax.metrics.cell`). The executor
(`dfjax.runner.local`, or any other) loads data and detectors, calls `run_cell`, and
stores what it returns (`dfjax.store`).
"""

from __future__ import annotations

from dfjax.attacks.evaluate import AttackEvaluator, evaluate_attack
from dfjax.config import Cell
from dfjax.data.base import Split
from dfjax.data.subsets import evaluation_subset
from dfjax.defences import DEFENCES, defended_logits
from dfjax.metrics.cell import attack_timings, cell_metrics
from dfjax.rng import cell_key
from dfjax.training.detectors import Detector


def run_cell(cell: Cell, detector: Detector, test: Split, evaluator: AttackEvaluator,
             batch_size: int) -> tuple[dict, dict, dict]:
    """Attack the cell's evaluation subset of `test`; returns (metrics, timings, extra)
    (see dfjax.metrics.cell.cell_metrics). The cell's key is cell_key(seed, cell_id)."""
    evaluated = evaluation_subset(test, cell.n_eval, cell.seed)
    if len(evaluated) == 0:
        raise ValueError(f"dataset {cell.dataset.name} has no test examples")
    defence = DEFENCES.get(cell.defence.name)
    form = defence.attack_form(DEFENCES.resolve(cell.defence.name, cell.defence.options))
    result = evaluate_attack(
        cell.attack, defended_logits(detector.model, cell.defence),
        (cell.model.canonical(), cell.defence.canonical()), detector.variables,
        evaluated.float_images(), evaluated.labels, cell_key(cell.seed, cell.cell_id),
        evaluator, batch_size, split=not defence.host_callback)
    metrics, extra = cell_metrics(evaluated, result)
    metrics |= {"adaptive": float(form["adaptive"]), "eot_samples": float(form["eot_samples"])}
    extra["defence"] = form
    return metrics, attack_timings(len(evaluated), result), extra
