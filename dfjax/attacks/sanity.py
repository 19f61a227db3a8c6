"""Sanity checks on an evaluation, made to work on binary detectors (Carlini et al. 2019,
"On Evaluating Adversarial Robustness", arXiv:1902.06705, Sec. 5; AutoAttack's checks,
Croce & Hein 2020, which test zero gradients only for their DLR loss and so never fire
on a two-class model -- ours use the cross-entropy the attacks use).

Each check gives a `sanity_*` number for the cell's row (1.0 = the check fired):

- sanity_nondeterministic: the defended detector's logits differ between two identical
  forward passes (randomness the evaluation did not account for);
- sanity_probability_outputs: the "logits" look like probabilities (2 outputs >= 0
  summing to 1, or 1 output in [0, 1] on every example);
- sanity_zero_gradients (and sanity_zero_gradient_fraction): the input gradient of the
  attacked loss is exactly zero at the clean input on some examples (masked gradients);
- sanity_unbounded_not_broken: PGD with an unbounded budget (Linf eps = 1) leaves more
  than 5% of the examples correct (the attack, not the model, is failing);
- sanity_more_steps_help: the same attack with twice the steps, run on the examples the
  cell's attack left robust, breaks more than 2 points of them (the attack had not
  converged; sanity_robust_accuracy_double_steps is the robust accuracy against both,
  and where the cell's robust accuracy is already <= 2 points the check cannot fire and
  the doubled attack is not run);
- sanity_black_box_beats_white_box: see `dfjax.attacks.auto` (ensembles).
A cross-cell check (robust accuracy rising with eps) runs on the stored rows
(`dfjax.reporting.tables`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable

import jax
import jax.numpy as jnp
import numpy as np

from dfjax.attacks import ATTACKS
from dfjax.attacks.evaluate import DEFENCE_STREAM, AttackEvaluator, LogitsOf, evaluate_attack
from dfjax.batches import padded_batches
from dfjax.config import AttackSpec
from dfjax.losses import cross_entropy, predicted_class
from dfjax.rng import cell_key
from dfjax.xla import jit

UNBOUNDED = AttackSpec(name="pgd", norm="linf", eps=1.0, options={"num_steps": 10})
UNBOUNDED_TOLERANCE = 0.05  # robust accuracy an unbounded attack may leave
MORE_STEPS_TOLERANCE = 0.02  # robust accuracy twice the steps may remove


def _probe(logits_of: LogitsOf):
    """(variables, x, y, key) -> (scored logits [b, k], bool [b]: the attacked loss's input
    gradient is exactly zero), jitted (on one device: the check is cheap)."""

    def probe(variables, x, y, key):
        scored, attacked = logits_of(variables, jax.random.fold_in(key, DEFENCE_STREAM))
        grad = jax.grad(lambda z: cross_entropy(attacked(z), y).sum())(x)
        return scored(x), jnp.all(grad.reshape(x.shape[0], -1) == 0, axis=1)

    return jit(probe)


def _robust(result, labels) -> float:
    return float(np.mean(np.asarray(predicted_class(result.outputs["adv"])) == labels))


def _robust_after_more_steps(spec, logits_of, detector_kind, variables, images, labels, key,
                             evaluator, batch_size, split, still_robust) -> float:
    """Robust accuracy over all n examples when `spec` also attacks the still-robust ones;
    the survivors are padded (repeating the first) to whole batches of the cell's batch
    shape, so the compiled attack is shared across cells."""
    n = len(labels)
    survivors = np.flatnonzero(np.ones(n, bool) if still_robust is None else still_robust)
    if len(survivors) == 0:
        return 0.0
    shape = min(batch_size, n)
    padded = np.concatenate([survivors, np.full(-len(survivors) % shape, survivors[0])])
    result = evaluate_attack(spec, logits_of, detector_kind, variables, images[padded],
                             labels[padded], key, evaluator, shape, split=split)
    correct = np.asarray(predicted_class(result.outputs["adv"]))[:len(survivors)]
    return float(np.sum(correct == labels[survivors]) / n)


def sanity_checks(
    attack_spec: AttackSpec, robust_accuracy: float, logits_of: LogitsOf,
    detector_kind: Hashable, variables, images: np.ndarray, labels: np.ndarray,
    key: jax.Array, evaluator: AttackEvaluator, batch_size: int, *, split: bool = True,
    detector: Hashable, still_robust: np.ndarray | None = None,
    probe_memo: Hashable | None = None,
) -> dict[str, float]:
    """The per-cell sanity numbers (see the module docstring) of attack `attack_spec`,
    which left `robust_accuracy` on (images float32 [n, h, w, c] in [0, 1], labels [n]).
    detector_kind: what compiles alike (as in evaluate_attack); detector: what identifies
    the defended detector, whose unbounded-budget check runs once (kept on `evaluator`),
    with a key of its own, so its number does not depend on which cell ran first.
    still_robust: bool [n], the examples the cell's attack left correct (default: all;
    the doubled attack runs on these only).
    probe_memo: where the probe's inputs do not depend on `key` (a deterministic defence),
    what identifies them (detector, defence, examples, batch): its four flags are then
    computed once per probe_memo (kept on `evaluator`) and shared by the cells that
    have it; None: computed for this cell."""
    probe_inputs = (logits_of, detector_kind, variables, images, labels, key, evaluator,
                    batch_size)
    if probe_memo is None:
        flags = _probe_flags(*probe_inputs)
    else:
        memo = evaluator.memo.setdefault(("probe flags", probe_memo), {})
        if "flags" not in memo:
            memo["flags"] = _probe_flags(*probe_inputs)
        flags = dict(memo["flags"])
    return flags | _attack_checks(attack_spec, robust_accuracy, logits_of, detector_kind,
                                  variables, images, labels, key, evaluator, batch_size,
                                  split=split, detector=detector, still_robust=still_robust)


def _probe_flags(logits_of, detector_kind, variables, images, labels, key, evaluator,
                 batch_size) -> dict[str, float]:
    """sanity_nondeterministic, sanity_probability_outputs, sanity_zero_gradient_fraction
    and sanity_zero_gradients: one probe pass over the examples (the first batch twice)."""
    probes = evaluator.memo.setdefault(("probe", detector_kind), {})
    if "fn" not in probes:  # one jitted probe per detector kind: compiled once per shape
        probes["fn"] = _probe(logits_of)
    probe = probes["fn"]
    batch_size = min(batch_size, len(labels))
    zero, logits = [], []
    for i, (idx, mask) in enumerate(padded_batches(len(labels), batch_size)):
        x, y = jnp.asarray(images[idx]), jnp.asarray(labels[idx])
        batch_key = jax.random.fold_in(key, i)
        scored, zero_grad = probe(variables, x, y, batch_key)
        if i == 0:
            again, _ = probe(variables, x, y, batch_key)
            nondeterministic = not np.array_equal(np.asarray(scored), np.asarray(again))
        keep = mask > 0
        zero.append(np.asarray(zero_grad)[keep])
        logits.append(np.asarray(scored)[keep])
    zero, logits = np.concatenate(zero), np.concatenate(logits)
    if logits.shape[1] == 1:
        probabilities = bool(np.all((logits >= 0) & (logits <= 1)))
    else:
        probabilities = bool(np.all(logits >= 0) and np.allclose(logits.sum(1), 1, atol=1e-3))
    flags = {"sanity_nondeterministic": float(nondeterministic),
             "sanity_probability_outputs": float(probabilities),
             "sanity_zero_gradient_fraction": float(zero.mean()),
             "sanity_zero_gradients": float(zero.any())}
    return flags


def _attack_checks(attack_spec, robust_accuracy, logits_of, detector_kind, variables, images,
                   labels, key, evaluator, batch_size, *, split, detector,
                   still_robust) -> dict[str, float]:
    """The checks that attack: the unbounded budget (once per `detector`) and, for an
    attack with steps, twice the steps on the still-robust examples."""
    batch_size = min(batch_size, len(labels))
    flags = {}
    memo = evaluator.memo.setdefault(("unbounded", detector), {})
    if "robust" not in memo:
        memo["robust"] = _robust(evaluate_attack(
            UNBOUNDED, logits_of, detector_kind, variables, images, labels,
            cell_key(0, repr(detector)), evaluator, batch_size, split=split), labels)
    flags["sanity_unbounded_robust_accuracy"] = memo["robust"]
    flags["sanity_unbounded_not_broken"] = float(memo["robust"] > UNBOUNDED_TOLERANCE)

    entry = ATTACKS.get(attack_spec.name)
    if entry.fn is not None and "num_steps" in entry.options and attack_spec.eps > 0:
        options = entry.resolve_spec(attack_spec)
        doubled = dataclasses.replace(attack_spec, options={
            **dict(attack_spec.options), "num_steps": 2 * options["num_steps"]})
        more = robust_accuracy
        if robust_accuracy > MORE_STEPS_TOLERANCE:
            more = _robust_after_more_steps(doubled, logits_of, detector_kind, variables,
                                            images, labels, key, evaluator, batch_size,
                                            split, still_robust)
        flags["sanity_robust_accuracy_double_steps"] = more
        flags["sanity_more_steps_help"] = float(robust_accuracy - more > MORE_STEPS_TOLERANCE)
    return flags
