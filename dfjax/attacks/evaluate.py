"""Attack a detector over an evaluation set: compiled once per shape, batched, checked.

`evaluate_attack` runs one attack spec -- a single attack or an ensemble (`auto`,
through `dfjax.attacks.auto.run_ensemble`) -- over padded batches and returns every
per-example output the metrics need. `AttackEvaluator` holds the compiled functions:
(variables, x, y, key, eps) -> clean and adversarial logits, Linf/L2/L0 norms, the
pixel-range flag and, where the attack gives them, the true-class probability trace
or the distance to flip; eps is traced, so a budget sweep compiles once.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Hashable

import jax
import jax.numpy as jnp
import numpy as np

from dfjax.attacks import ATTACKS
from dfjax.attacks._projections import changed_pixels, perturbation_norms
from dfjax.attacks.auto import member_specs, run_ensemble
from dfjax.batches import padded_batches
from dfjax.config import AttackSpec
from dfjax.types import LogitsFn
from dfjax.xla import compile_split

OUTPUT_NAMES = ("clean", "adv", "linf", "l2", "l0", "trace", "distance", "x_adv")
# (variables, key) -> (scored, attacked) logits functions: the defended detector the
# evaluation scores, and the form the attack differentiates (dfjax.defences.Defended)
LogitsOf = Callable[[dict, jax.Array], tuple[LogitsFn, LogitsFn]]
DEFENCE_STREAM = 0x64656600  # the defence's draws: fold_in(batch key, DEFENCE_STREAM)


@dataclasses.dataclass
class AttackOutputs:
    """Per-example outputs over the evaluation set (n examples) and what they cost.

    outputs: "clean", "adv" logits [n, k]; "linf", "l2", "l0" [n]; "trace" [steps, n]
    (true-class probability after each step) and "distance" [n] (L2 to flip, inf if
    none) where the attack gives them. flipped_by: for an ensemble, member -> bool [n].
    """

    outputs: dict[str, np.ndarray]
    flipped_by: dict[str, np.ndarray]
    compile_seconds: float
    attack_seconds: float
    in_range: bool


class AttackEvaluator:
    """Compiles, once per (detector kind, attack options, batch shape), the function
    (variables, x, y, key, eps) -> outputs dict. The batch is split across `devices`
    (default: as many CPU devices as divide it, dfjax.xla.split_devices); results do not
    depend on the split beyond float rounding (tests/attacks/test_split_batch.py)."""

    def __init__(self, devices: list | None = None):
        self._compiled: dict[tuple, object] = {}
        self.devices = devices
        self.memo: dict[tuple, dict] = {}  # results shared by cells (dfjax.attacks.sanity)

    def get(self, attack_spec: AttackSpec, logits_of: LogitsOf, detector_kind: Hashable,
            variables, x, y, key, *, split: bool = True, keep_adversarial: bool = False
            ) -> tuple[object, float]:
        """(compiled function, seconds spent compiling now: 0 when cached).
        detector_kind: what identifies `logits_of` (e.g. model and defence specs).
        split=False: run on one device (a defence with a host callback).
        keep_adversarial: the outputs include "x_adv" itself."""
        cache_key = (detector_kind, dataclasses.replace(attack_spec, eps=0.0).canonical(),
                     x.shape, split, keep_adversarial)
        if cache_key in self._compiled:
            return self._compiled[cache_key], 0.0
        entry = ATTACKS.get(attack_spec.name)
        extra_static = {}
        if entry.traces:
            extra_static["return_trace"] = True
        if entry.minimal_norm:
            extra_static["return_distance"] = True
        attack = entry.bind(attack_spec, **extra_static)

        def evaluate(variables, x, y, key, eps):
            scored, attacked = logits_of(variables, jax.random.fold_in(key, DEFENCE_STREAM))
            out = attack(attacked, x, y, key, eps)
            result = {}
            if entry.traces:
                out, result["trace"] = out
            elif entry.minimal_norm:
                out, result["distance"] = out
            x_adv = out
            result["linf"], result["l2"] = perturbation_norms(x_adv, x)
            result["l0"] = changed_pixels(x_adv, x)
            result["in_range"] = jnp.all((x_adv >= 0) & (x_adv <= 1))
            result["clean"], result["adv"] = scored(x), scored(x_adv)
            if keep_adversarial:
                result["x_adv"] = x_adv
            return result

        start = time.perf_counter()
        devices = self.devices if split else jax.devices()[:1]
        compiled = compile_split(evaluate, variables, x, y, key, jnp.float32(0), devices=devices)
        seconds = time.perf_counter() - start
        self._compiled[cache_key] = compiled
        return compiled, seconds


def evaluate_attack(
    attack_spec: AttackSpec, logits_of: LogitsOf, detector_kind: Hashable, variables,
    images: np.ndarray, labels: np.ndarray, key: jax.Array, evaluator: AttackEvaluator,
    batch_size: int, *, split: bool = True, keep_adversarial: bool = False,
) -> AttackOutputs:
    """Attack `images` (float32 [n, h, w, c] in [0, 1]; labels int [n]) in padded batches
    of `batch_size`; batch i gets key fold_in(key, i), an ensemble's member j within it
    fold_in(batch key, j). split=False keeps each batch on one device; keep_adversarial
    adds outputs["x_adv"] [n, h, w, c]. Raises
    AssertionError if any output breaks its budget or leaves [0, 1]."""
    entry = ATTACKS.get(attack_spec.name)
    members = (member_specs(attack_spec, entry.resolve_spec(attack_spec), ATTACKS)
               if entry.members else None)
    eps = jnp.float32(attack_spec.eps)
    batch_size = min(batch_size, len(labels))
    outputs = {name: [] for name in OUTPUT_NAMES}
    flipped_by = {m.name: [] for m in members or ()}
    compile_seconds, attack_seconds, all_in_range = 0.0, 0.0, True
    for batch_index, (idx, mask) in enumerate(padded_batches(len(labels), batch_size)):
        x, y = jnp.asarray(images[idx]), jnp.asarray(labels[idx])
        batch_key = jax.random.fold_in(key, batch_index)
        keep = mask > 0
        compiled_now = 0.0

        def run(spec, x, y, key):
            nonlocal compiled_now
            fn, seconds = evaluator.get(spec, logits_of, detector_kind, variables, x, y, key,
                                        split=split, keep_adversarial=keep_adversarial)
            compiled_now += seconds
            return jax.block_until_ready(fn(variables, x, y, key, eps))

        start = time.perf_counter()
        if members:
            def run_member(i, member, idx_robust):
                padded = np.concatenate([idx_robust,
                                         np.full(len(y) - len(idx_robust), idx_robust[0])])
                res = run(member, x[padded], y[padded], jax.random.fold_in(batch_key, i))
                m = len(idx_robust)
                return {k: np.asarray(res[k])[:m] for k in res if k != "in_range"
                        } | {"in_range": bool(res["in_range"])}

            res, flips = run_ensemble(members, run_member, np.asarray(y))
            for name, value in flips.items():
                flipped_by[name].append(value[keep])
        else:
            res = run(attack_spec, x, y, batch_key)
        attack_seconds += time.perf_counter() - start - compiled_now
        compile_seconds += compiled_now
        all_in_range &= bool(res["in_range"])
        for name in OUTPUT_NAMES:
            if name in res:
                value = np.asarray(res[name])
                outputs[name].append(value[:, keep] if name == "trace" else value[keep])
    outputs = {name: np.concatenate(v, axis=1 if name == "trace" else 0)
               for name, v in outputs.items() if v}
    result = AttackOutputs(outputs, {n: np.concatenate(v) for n, v in flipped_by.items()},
                           compile_seconds, attack_seconds, all_in_range)
    check_contract(attack_spec, result)
    return result


def check_contract(attack_spec: AttackSpec, result: AttackOutputs) -> None:
    """Every attack output must stay within its budget and in [0, 1]."""
    realised = result.outputs[attack_spec.norm]
    if not result.in_range or realised.max() > attack_spec.eps + 1e-5:
        raise AssertionError(
            f"attack {attack_spec.label()} broke its contract: max {attack_spec.norm} norm "
            f"{realised.max():.6g} > eps {attack_spec.eps:.6g} or pixels outside [0, 1]")
