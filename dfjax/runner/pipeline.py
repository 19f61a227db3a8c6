"""One cell as a pipeline of named stages, each owned by its package:

data (`dfjax.data`: the evaluation subset) -> detector (`dfjax.training.detectors`,
acquired by the executor) -> defended logits (`dfjax.defences`) -> attack, ensembles
included (`dfjax.attacks.evaluate`) -> scores (`dfjax.metrics.cell`). The executor
(`dfjax.runner.local`, or any other) loads data and detectors, calls `run_cell`, and
stores what it returns (`dfjax.store`).

A transfer cell (`Cell.source`) crafts on the bare source detector and scores on its own
(`dfjax.attacks.transfer`) instead of attacking its own detector.
"""

from __future__ import annotations

import jax
import numpy as np

from dfjax.attacks.evaluate import AttackEvaluator, AttackOutputs, evaluate_attack
from dfjax.attacks.sanity import sanity_checks
from dfjax.attacks.square import query_metrics
from dfjax.attacks.transfer import craft_on_source, score_on_target, transfer_outputs
from dfjax.config import Cell, DefenceSpec
from dfjax.data.base import Split
from dfjax.data.subsets import evaluation_indices, evaluation_subset
from dfjax.defences import DEFENCES, defended_logits
from dfjax.metrics.cell import attack_timings, cell_metrics
from dfjax.metrics.examples import gallery, per_example
from dfjax.models import make_logits_fn
from dfjax.rng import cell_key
from dfjax.runner.expand import check_cells
from dfjax.store import Store
from dfjax.training.detectors import Detector


def run_cell(cell: Cell, detector: Detector, test: Split, evaluator: AttackEvaluator,
             batch_size: int, *, validation: Split | None = None,
             source: Detector | None = None) -> tuple[dict, dict, dict]:
    """Attack the cell's evaluation subset of `test`; returns (metrics, timings, extra)
    (see dfjax.metrics.cell.cell_metrics; timings["n_evaluated"]: the examples actually
    evaluated, fewer than cell.n_eval where the test split is smaller;
    extra["eval_batch_size"]: the batch the attack ran at, smaller than `batch_size` where
    the machine's memory halved it). The cell's key is cell_key(seed, cell_id).
    extra["examples"] (per-example fake probabilities, dfjax.metrics.examples.per_example)
    and extra["gallery"] (a few adversarial examples as PNG) are for the store's examples
    and gallery tables, not its JSON column.
    validation: clean examples a detecting defence fits its threshold on (required by
    those; the same subset rule as the test examples).
    source: a transfer cell's source detector (`cell.source`), required by those; see
    `run_transfer_cell`."""
    if (source is None) != (cell.source is None):
        raise ValueError("run_cell: a transfer cell needs its source detector, and only it")
    indices = evaluation_indices(test, cell.n_eval, cell.seed)
    evaluated = test.select(indices)  # evaluation_subset(test, cell.n_eval, cell.seed)
    if len(evaluated) == 0:
        raise ValueError(f"dataset {cell.dataset.name} has no test examples")
    if source is not None:
        return run_transfer_cell(cell, detector, source, indices, evaluated, evaluator,
                                 batch_size, validation=validation)
    defence = DEFENCES.get(cell.defence.name)
    form = defence.attack_form(DEFENCES.resolve(cell.defence.name, cell.defence.options))
    logits_of = defended_logits(detector.model, cell.defence)
    kind = (cell.model.canonical(), cell.defence.canonical())  # what compiles alike
    inputs = (detector.variables, evaluated.float_images(), evaluated.labels,
              cell_key(cell.seed, cell.cell_id), evaluator, batch_size)
    split = not defence.host_callback
    result = evaluate_attack(cell.attack, logits_of, kind, *inputs, split=split,
                             keep_adversarial=True, shrink_subsets=not defence.randomized)
    metrics, extra = cell_metrics(evaluated, result)
    if cell.attack.name == "square":  # the queries an attacker who stops at success spends
        metrics |= query_metrics(result.outputs["trace"])
    extra |= _examples(cell, indices, evaluated, inputs[1], result)
    metrics |= {"adaptive": float(form["adaptive"]), "eot_samples": float(form["eot_samples"])}
    still_robust = np.ones(len(evaluated), bool)
    still_robust[extra["nonrobust_indices"]] = False
    try:
        metrics |= sanity_checks(cell.attack, metrics["robust_accuracy"], logits_of, kind,
                                 *inputs, split=split,
                                 detector=(cell.detector_id, cell.defence.canonical()),
                                 still_robust=still_robust,
                                 probe_memo=None if defence.randomized else (
                                     cell.detector_id, cell.defence.canonical(), cell.n_eval,
                                     cell.seed, batch_size))
    except Exception as e:  # name the stage: its attacks are not the cell's own
        raise type(e)(f"sanity check: {e}") from e
    if defence.certify is not None:  # once per detector: certificates need no attack
        memo = evaluator.memo.setdefault(("certified", cell.detector_id,
                                          cell.defence.canonical()), {})
        if "metrics" not in memo:
            memo["metrics"] = defence.certify(
                make_logits_fn(detector.model, detector.variables), evaluated.float_images(),
                evaluated.labels, cell_key(cell.seed, cell.detector_id),
                DEFENCES.resolve(cell.defence.name, cell.defence.options))
        metrics |= memo["metrics"]
    metrics |= _detection(cell, detector, evaluated, result.outputs["x_adv"], validation)
    extra["defence"] = form
    extra["eval_batch_size"] = result.batch_size  # what ran, if memory halved the batch
    timings = attack_timings(len(evaluated), result) | {"n_evaluated": len(evaluated)}
    return metrics, timings, extra


def run_transfer_cell(cell: Cell, target: Detector, source: Detector, indices: np.ndarray,
                      evaluated: Split, evaluator: AttackEvaluator, batch_size: int, *,
                      validation: Split | None = None) -> tuple[dict, dict, dict]:
    """A transfer cell: its attack crafted on the bare `source` with the key of the
    source's white-box cell (`cell.source_cell()`; crafted once per process and source,
    dfjax.attacks.transfer), scored on `target` behind the cell's defence. Returns what
    `run_cell` returns, with metrics transfer = 1.0 and adaptive = 0.0 (black-box to the
    target); no sanity check (they re-attack the target) and no certificate (the target's
    white-box cells carry it); a detecting defence is scored on the crafted examples.
    extra["transfer"]: the source's label and white-box cell id, and whether this cell
    crafted the examples (its time then includes crafting). Raises ConfigError
    (dfjax.runner.expand.check_cells) for a source on another dataset."""
    check_cells([cell])
    source_cell = cell.source_cell()
    images = evaluated.float_images()
    source_kind = (cell.source.model.canonical(), DefenceSpec().canonical())
    crafted = craft_on_source(cell.attack, source, source_kind, images, evaluated.labels,
                              cell_key(cell.seed, source_cell.cell_id), evaluator, batch_size,
                              memo_key=source_cell.cell_id)
    defence = DEFENCES.get(cell.defence.name)
    scored, compile_seconds, seconds = score_on_target(
        defended_logits(target.model, cell.defence),
        (cell.model.canonical(), cell.defence.canonical()), target.variables, images,
        crafted.result.outputs["x_adv"], cell_key(cell.seed, cell.cell_id), evaluator,
        batch_size, split=not defence.host_callback)
    result = transfer_outputs(crafted, scored, compile_seconds, seconds)
    metrics, extra = cell_metrics(evaluated, result)
    extra |= _examples(cell, indices, evaluated, images, result)
    metrics |= {"transfer": 1.0, "adaptive": 0.0}
    metrics |= _detection(cell, target, evaluated, result.outputs["x_adv"], validation)
    extra["transfer"] = {"source": cell.source.label(), "source_cell_id": source_cell.cell_id,
                         "crafted_in_this_cell": crafted.crafted_now}
    extra["eval_batch_size"] = result.batch_size
    timings = attack_timings(len(evaluated), result) | {"n_evaluated": len(evaluated)}
    return metrics, timings, extra


def _examples(cell: Cell, indices: np.ndarray, evaluated: Split, images: np.ndarray,
              result: AttackOutputs) -> dict:
    """extra["examples"] (per-example fake probabilities) and extra["gallery"]."""
    examples = per_example(indices, evaluated.labels, result.outputs["clean"],
                           result.outputs["adv"])
    return {"examples": examples, "gallery": gallery(examples, images, result.outputs["x_adv"],
                                                     cell.attack.eps)}


def _detection(cell: Cell, detector: Detector, evaluated: Split, x_adv: np.ndarray,
               validation: Split | None) -> dict[str, float]:
    """A detecting defence's metrics on the clean and adversarial examples ({} for other
    defences); its threshold is fitted on `validation` (required by those)."""
    defence = DEFENCES.get(cell.defence.name)
    if defence.detect is None:
        return {}
    if validation is None:
        raise ValueError(f"defence {cell.defence.name!r} fits its threshold on "
                         "validation examples: run_cell needs `validation`")
    return defence.detect(
        make_logits_fn(detector.model, detector.variables),
        evaluation_subset(validation, cell.n_eval, cell.seed).float_images(),
        evaluated.float_images(), evaluated.labels, x_adv,
        jax.random.fold_in(cell_key(cell.seed, cell.cell_id), 0xDE7), eps=cell.attack.eps,
        options=DEFENCES.resolve(cell.defence.name, cell.defence.options))


def store_cell(store: Store, cell: Cell, metrics: dict, timings: dict, extra: dict,
               env: dict) -> None:
    """Store what `run_cell` returned as the cell's 'ok' row: extra["examples"] and
    extra["gallery"] go to the store's examples and gallery tables, the rest of `extra`
    to the row's JSON."""
    blobs = ("examples", "gallery")
    store.put(cell, status="ok", metrics=metrics, timings=timings, env=env,
              extra={k: v for k, v in extra.items() if k not in blobs},
              examples=extra.get("examples"), gallery=extra.get("gallery"))
