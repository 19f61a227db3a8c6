"""Transfer attacks: adversarial examples crafted white-box on a *source* detector and
scored on a *target* detector, to which the attack is black-box (Papernot et al. 2016,
"Transferability in Machine Learning", arXiv:1605.07277).

`craft_on_source` runs the attack on the bare source (no defence) exactly as a white-box
cell on the source would (same compiled function, key and batches), so a transfer from a
detector to itself reproduces that detector's white-box cell. Its result is memoised in
the evaluator, keyed by that white-box cell's id: every target of one dataset scores the
same crafted examples, crafted once per process. `score_on_target` scores the clean and
crafted examples on the target's defended logits, in the batches an attack would use.

Memory: the memo keeps each source's adversarial examples for the process's lifetime,
n_eval x h x w x c float32 per (source, attack, budget): 12.6 MB for the default matrix's
256 examples of 64 x 64 x 3.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Hashable
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from dfjax.attacks.evaluate import (
    DEFENCE_STREAM,
    AttackEvaluator,
    AttackOutputs,
    LogitsOf,
    check_finite_outputs,
    evaluate_attack,
)
from dfjax.batches import padded_batches
from dfjax.config import AttackSpec, DefenceSpec
from dfjax.defences import defended_logits
from dfjax.xla import compile_split

if TYPE_CHECKING:
    from dfjax.training.detectors import Detector

NORM_OUTPUTS = ("linf", "l2", "l0")  # properties of the crafted examples, whatever scores them


@dataclasses.dataclass
class Crafted:
    """Adversarial examples crafted on a source: `result` its white-box AttackOutputs
    (outputs["x_adv"] float32 [n, h, w, c] in [0, 1], norms, the source's own logits);
    `crafted_now`: this call crafted them (False: taken from the memo)."""

    result: AttackOutputs
    crafted_now: bool


def craft_on_source(attack: AttackSpec, source: Detector, source_kind: Hashable,
                    images: np.ndarray, labels: np.ndarray, key: jax.Array,
                    evaluator: AttackEvaluator, batch_size: int, *, memo_key: str) -> Crafted:
    """Attack the bare `source` (white-box, no defence) on `images` (float32 [n, h, w, c]
    in [0, 1], labels int [n]) with `key`, as dfjax.attacks.evaluate.evaluate_attack does
    for a white-box cell; memoised in `evaluator.memo` under ("transfer", memo_key) (the
    id of the source's white-box cell: same examples, attack, key and batch).
    source_kind: what identifies the source's compiled attack (its model and defence
    specs, as a white-box cell's kind)."""
    memo = evaluator.memo.setdefault(("transfer", memo_key), {})
    if "result" in memo:
        if memo["labels"].shape != labels.shape or not np.array_equal(memo["labels"], labels):
            raise ValueError(f"transfer: the crafted examples of source cell {memo_key} are "
                             "for other evaluation examples than this target's")
        return Crafted(memo["result"], crafted_now=False)
    bare = DefenceSpec()
    result = evaluate_attack(attack, defended_logits(source.model, bare), source_kind,
                             source.variables, images, labels, key, evaluator, batch_size,
                             keep_adversarial=True)
    memo.update(result=result, labels=np.array(labels))
    return Crafted(result, crafted_now=True)


def _scorer(logits_of: LogitsOf):
    """(variables, x, x_adv, key) -> (scored logits of x, of x_adv), the defence's draws
    from fold_in(key, DEFENCE_STREAM) as in a compiled attack."""

    def score(variables, x, x_adv, key):
        scored, _ = logits_of(variables, jax.random.fold_in(key, DEFENCE_STREAM))
        return {"clean": scored(x), "adv": scored(x_adv)}

    return score


def score_on_target(logits_of: LogitsOf, target_kind: Hashable, variables, images: np.ndarray,
                    x_adv: np.ndarray, key: jax.Array, evaluator: AttackEvaluator,
                    batch_size: int, *, split: bool = True) -> tuple[dict, float, float]:
    """The target's scored logits on `images` and `x_adv` (float32 [n, h, w, c]), in padded
    batches of `batch_size` (batch i's defence draws from fold_in(key, i), as in an
    attack): ({"clean": [n, k], "adv": [n, k]}, compile seconds, scoring seconds).
    Compiled once per (target_kind, batch shape, split), kept in `evaluator.memo`.
    Raises dfjax.numerics.NonFiniteError on NaN/Inf logits."""
    batch_size = min(batch_size, len(images))
    outputs: dict[str, list] = {"clean": [], "adv": []}
    compile_seconds, seconds = 0.0, 0.0
    for batch_index, (idx, mask) in enumerate(padded_batches(len(images), batch_size)):
        x, adv = jnp.asarray(images[idx]), jnp.asarray(x_adv[idx])
        batch_key = jax.random.fold_in(key, batch_index)
        cache = evaluator.memo.setdefault(("transfer_scorer", target_kind, x.shape, split), {})
        if "compiled" not in cache:
            start = time.perf_counter()
            cache["compiled"] = compile_split(
                _scorer(logits_of), variables, x, adv, batch_key,
                devices=None if split else jax.devices()[:1])
            compile_seconds += time.perf_counter() - start
        start = time.perf_counter()
        out = jax.block_until_ready(cache["compiled"](variables, x, adv, batch_key))
        seconds += time.perf_counter() - start
        _check_finite(out, batch_index)
        keep = mask > 0
        for name in outputs:
            outputs[name].append(np.asarray(out[name])[keep])
    return ({name: np.concatenate(v) for name, v in outputs.items()}, compile_seconds, seconds)


def _check_finite(out: dict, batch_index: int) -> None:
    """check_finite_outputs on scoring logits (no norms here: zero placeholders)."""
    zeros = np.zeros(len(out["clean"]), np.float32)
    check_finite_outputs(out | dict.fromkeys(NORM_OUTPUTS, zeros), "transfer scoring",
                         batch_index)


def transfer_outputs(crafted: Crafted, scored: dict, compile_seconds: float,
                     seconds: float) -> AttackOutputs:
    """The target's AttackOutputs of a transfer: its clean and adversarial logits, the
    crafted examples and their norms. What is the source's own (its true-class trace,
    distances to flip, an ensemble's per-member flips) is left out. Time: scoring, plus
    crafting where it happened in this call."""
    source = crafted.result
    outputs = {name: scored[name] for name in ("clean", "adv")}
    outputs |= {name: source.outputs[name] for name in (*NORM_OUTPUTS, "x_adv")}
    if crafted.crafted_now:
        compile_seconds += source.compile_seconds
        seconds += source.attack_seconds
    return AttackOutputs(outputs, {}, compile_seconds, seconds, source.in_range,
                         source.batch_size)
