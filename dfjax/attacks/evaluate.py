"""Attack a detector over an evaluation set: compiled once per shape, batched, checked.

`evaluate_attack` runs one attack spec -- a single attack or an ensemble (`auto`,
through `dfjax.attacks.auto.run_ensemble`) -- over padded batches and returns every
per-example output the metrics need. `AttackEvaluator` holds the compiled functions:
(variables, x, y, key, eps) -> clean and adversarial logits, Linf/L2/L0 norms, the
pixel-range flag and, where the attack gives them, the true-class probability trace
or the distance to flip; eps is traced, so a budget sweep compiles once.

Two faults cost the cell, never the run or a wrong number:
- NaN/Inf in what a batch returns (clean or adversarial logits, the attack's
  true-class-probability trace, the adversarial examples) raises
  `dfjax.numerics.NonFiniteError` naming the attack, the batch and, from the trace, the
  attack step where the logits first went non-finite;
- a batch whose compiled attack would need more memory than is available (XLA's memory
  analysis against MemAvailable, `dfjax.xla`) is halved until it fits, or the cell fails
  with `BatchTooLargeError` naming both figures -- instead of the whole run being killed
  for lack of memory.
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
from dfjax.numerics import NonFiniteError, count_nonfinite, first_nonfinite_index, nonfinite_rows
from dfjax.types import LogitsFn
from dfjax.xla import (
    available_memory_bytes,
    compile_split,
    compiled_memory_bytes,
    split_devices,
)

OUTPUT_NAMES = ("clean", "adv", "linf", "l2", "l0", "trace", "distance", "x_adv")
# (variables, key) -> (scored, attacked) logits functions: the defended detector the
# evaluation scores, and the form the attack differentiates (dfjax.defences.Defended)
LogitsOf = Callable[[dict, jax.Array], tuple[LogitsFn, LogitsFn]]
DEFENCE_STREAM = 0x64656600  # the defence's draws: fold_in(batch key, DEFENCE_STREAM)
# The share of the available memory one compiled attack may plan to use (the rest: the
# process's own arrays, other processes, XLA's estimate being an estimate).
MEMORY_FRACTION = 0.8
MIB = 2**20
# An ensemble member after the first runs on the points still robust, padded up to a
# multiple of 1/SUBSET_STEPS of the batch (not to the whole batch): at most SUBSET_STEPS
# programs per member and batch shape, and at most batch/SUBSET_STEPS padded points.
SUBSET_STEPS = 8
# What run_ensemble takes from a member's batch (its trace or distance, if any, is unused).
ENSEMBLE_OUTPUTS = ("adv", "linf", "l2", "l0", "in_range")
MEMBER_STREAM = 0x656E7300  # an ensemble member's draws: fold_in(key, MEMBER_STREAM), then j


class BatchTooLargeError(MemoryError):
    """The compiled attack for a batch would need more memory than the limit allows.

    Attributes: batch_size, needed_bytes (XLA's plan, all devices), limit_bytes,
    compile_seconds (spent compiling the attack that did not fit)."""

    def __init__(self, message: str, *, batch_size: int, needed_bytes: int, limit_bytes: int,
                 compile_seconds: float = 0.0):
        super().__init__(message)
        self.batch_size, self.needed_bytes, self.limit_bytes = batch_size, needed_bytes, limit_bytes
        self.compile_seconds = compile_seconds


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
    batch_size: int = 0  # the batch the attack ran with (smaller than asked where it did not fit)


class AttackEvaluator:
    """Compiles, once per (detector kind, attack options, batch shape), the function
    (variables, x, y, key, eps) -> outputs dict. The batch is split across `devices`
    (default: as many CPU devices as divide it, dfjax.xla.split_devices); results do not
    depend on the split beyond float rounding (tests/attacks/test_split_batch.py).

    memory_limit_bytes: the most memory one compiled attack may plan to use (XLA's memory
    analysis); None: MEMORY_FRACTION of what is available when it compiles
    (dfjax.xla.available_memory_bytes), no limit where that is unknown. A compiled attack
    over the limit raises BatchTooLargeError (and `evaluate_attack` halves the batch)."""

    def __init__(self, devices: list | None = None, *, memory_limit_bytes: int | None = None):
        self._compiled: dict[tuple, object] = {}
        self._too_large: dict[tuple, BatchTooLargeError] = {}  # not recompiled to learn again
        self.devices = devices
        self.memory_limit_bytes = memory_limit_bytes
        self.memo: dict[tuple, dict] = {}  # results shared by cells (dfjax.attacks.sanity)

    def memory_limit(self) -> int | None:
        """The limit a compiled attack is held to now (bytes), or None for none."""
        if self.memory_limit_bytes is not None:
            return self.memory_limit_bytes
        available = available_memory_bytes()
        return None if available is None else int(available * MEMORY_FRACTION)

    def get_clean(self, logits_of: LogitsOf, detector_kind: Hashable, variables, x, y, key,
                  *, split: bool = True) -> tuple[object, float]:
        """(compiled (variables, x, y, key, eps) -> {"clean": scored logits [b, k]}, seconds
        spent compiling now): the defended detector on clean images, its draws from
        fold_in(key, DEFENCE_STREAM) as in `get`'s evaluations. An ensemble's clean pass."""
        cache_key = (detector_kind, "clean", x.shape, split)
        if cache_key in self._compiled:
            return self._compiled[cache_key], 0.0

        def clean(variables, x, y, key, eps):
            scored, _ = logits_of(variables, jax.random.fold_in(key, DEFENCE_STREAM))
            return {"clean": scored(x)}

        compiled, seconds = self._compile(clean, variables, x, y, key, split)
        self._compiled[cache_key] = compiled
        return compiled, seconds

    def _compile(self, fun, variables, x, y, key, split: bool) -> tuple[object, float]:
        """(fun (variables, x, y, key, eps) compiled for these shapes, split across
        `devices` or on one device, seconds it took)."""
        start = time.perf_counter()
        devices = self.devices if split else jax.devices()[:1]
        compiled = compile_split(fun, variables, x, y, key, jnp.float32(0), devices=devices)
        return compiled, time.perf_counter() - start

    def get(self, attack_spec: AttackSpec, logits_of: LogitsOf, detector_kind: Hashable,
            variables, x, y, key, *, split: bool = True, keep_adversarial: bool = False,
            member: bool = False) -> tuple[object, float]:
        """(compiled function, seconds spent compiling now: 0 when cached).
        detector_kind: what identifies `logits_of` (e.g. model and defence specs).
        split=False: run on one device (a defence with a host callback).
        keep_adversarial: the outputs include "x_adv" itself.
        member: for an ensemble member, which takes the clean logits from the ensemble's
        clean pass and keeps no trace or distance: none of the three is computed.
        Raises BatchTooLargeError where the compiled function would need more memory than
        `memory_limit()` (it is not kept; asking again raises again without compiling)."""
        cache_key = (detector_kind, dataclasses.replace(attack_spec, eps=0.0).canonical(),
                     x.shape, split, keep_adversarial, member)
        if cache_key in self._compiled:
            return self._compiled[cache_key], 0.0
        if cache_key in self._too_large:
            known = self._too_large[cache_key]
            raise BatchTooLargeError(str(known), batch_size=known.batch_size,
                                     needed_bytes=known.needed_bytes,
                                     limit_bytes=known.limit_bytes)
        entry = ATTACKS.get(attack_spec.name)
        extra_static = {}
        traces, minimal_norm = entry.traces and not member, entry.minimal_norm and not member
        if traces:
            extra_static["return_trace"] = True
        if minimal_norm:
            extra_static["return_distance"] = True
        attack = entry.bind(attack_spec, **extra_static)

        def evaluate(variables, x, y, key, eps):
            scored, attacked = logits_of(variables, jax.random.fold_in(key, DEFENCE_STREAM))
            out = attack(attacked, x, y, key, eps)
            result = {}
            if traces:
                out, result["trace"] = out
            elif minimal_norm:
                out, result["distance"] = out
            x_adv = out
            result["linf"], result["l2"] = perturbation_norms(x_adv, x)
            result["l0"] = changed_pixels(x_adv, x)
            result["in_range"] = jnp.all((x_adv >= 0) & (x_adv <= 1))
            if not member:
                result["clean"] = scored(x)
            result["adv"] = scored(x_adv)
            if keep_adversarial:
                result["x_adv"] = x_adv
            return result

        compiled, seconds = self._compile(evaluate, variables, x, y, key, split)
        needed, limit = compiled_memory_bytes(compiled), self.memory_limit()
        if needed is not None and limit is not None and needed > limit:
            error = BatchTooLargeError(
                f"attack {attack_spec.label()} on a batch of {x.shape[0]} needs "
                f"{needed / MIB:.1f} MiB (XLA's memory analysis), over the limit of "
                f"{limit / MIB:.1f} MiB", batch_size=x.shape[0], needed_bytes=needed,
                limit_bytes=limit, compile_seconds=seconds)
            self._too_large[cache_key] = error
            raise error
        self._compiled[cache_key] = compiled
        return compiled, seconds


def evaluate_attack(
    attack_spec: AttackSpec, logits_of: LogitsOf, detector_kind: Hashable, variables,
    images: np.ndarray, labels: np.ndarray, key: jax.Array, evaluator: AttackEvaluator,
    batch_size: int, *, split: bool = True, keep_adversarial: bool = False,
    shrink_subsets: bool = True,
) -> AttackOutputs:
    """Attack `images` (float32 [n, h, w, c] in [0, 1]; labels int [n]) in padded batches
    of `batch_size`; batch i gets key fold_in(key, i). An ensemble runs a clean pass, then
    each member on the points still robust, pooled over the set (`_evaluate_ensemble`).
    split=False keeps each batch on one device; keep_adversarial adds outputs["x_adv"]
    [n, h, w, c]. shrink_subsets=False pads an ensemble member's batches of still-robust
    points to the whole batch instead of `subset_size` (for a randomized defence, whose
    noise draws are shaped by the batch).

    Where the compiled attack for `batch_size` would need more memory than
    `evaluator.memory_limit()`, the batch is halved until it fits (result.batch_size says
    which ran; the per-batch keys follow the batches, so the numbers are those of that
    batch size); BatchTooLargeError where even one example does not fit.

    Raises AssertionError if any output breaks its budget or leaves [0, 1], and
    NonFiniteError (dfjax.numerics) if any batch's outputs hold NaN or Inf
    (`check_finite_outputs`)."""
    batch_size = min(batch_size, len(labels))
    discarded_compile_seconds = 0.0
    while True:
        try:
            result = _evaluate_batches(attack_spec, logits_of, detector_kind, variables, images,
                                       labels, key, evaluator, batch_size, split=split,
                                       keep_adversarial=keep_adversarial,
                                       shrink_subsets=shrink_subsets)
            break
        except BatchTooLargeError as e:
            discarded_compile_seconds += e.compile_seconds
            if batch_size == 1:
                raise BatchTooLargeError(
                    f"{e}: the attack does not fit in memory even one example at a time",
                    batch_size=1, needed_bytes=e.needed_bytes, limit_bytes=e.limit_bytes,
                    compile_seconds=discarded_compile_seconds) from None
            batch_size //= 2
    result.compile_seconds += discarded_compile_seconds
    check_contract(attack_spec, result)
    return result


def _evaluate_batches(
    attack_spec: AttackSpec, logits_of: LogitsOf, detector_kind: Hashable, variables,
    images: np.ndarray, labels: np.ndarray, key: jax.Array, evaluator: AttackEvaluator,
    batch_size: int, *, split: bool, keep_adversarial: bool, shrink_subsets: bool,
) -> AttackOutputs:
    """evaluate_attack at one batch size (BatchTooLargeError where it does not fit)."""
    entry = ATTACKS.get(attack_spec.name)
    eps = jnp.float32(attack_spec.eps)
    compile_seconds, attack_seconds = 0.0, 0.0

    def devices_for(size: int) -> int:
        if not split:
            return 1
        return len(evaluator.devices) if evaluator.devices else len(split_devices(size))

    def run(spec, x, y, key, where, member=False):
        """One compiled evaluation of `spec` (None: the clean pass; member: as an ensemble
        member) on a batch: outputs as numpy, checked finite; its compile and run seconds
        counted apart."""
        nonlocal compile_seconds, attack_seconds
        if spec is None:
            fn, seconds = evaluator.get_clean(logits_of, detector_kind, variables, x, y, key,
                                              split=split)
        else:
            fn, seconds = evaluator.get(spec, logits_of, detector_kind, variables, x, y, key,
                                        split=split, keep_adversarial=keep_adversarial,
                                        member=member)
        compile_seconds += seconds
        start = time.perf_counter()
        out = {k: np.asarray(v) for k, v in jax.block_until_ready(
            fn(variables, jnp.asarray(x), jnp.asarray(y), key, eps)).items()}
        attack_seconds += time.perf_counter() - start
        check_finite_outputs(out, "clean pass" if spec is None else spec.label(), where)
        return out

    def over_batches(spec):
        """(outputs, real-row mask) of `spec` (None: the clean pass) on each padded batch;
        batch i with key fold_in(key, i)."""
        for batch_index, (idx, mask) in enumerate(padded_batches(len(labels), batch_size)):
            yield run(spec, images[idx], labels[idx], jax.random.fold_in(key, batch_index),
                      batch_index), mask > 0

    if entry.members:
        members = member_specs(attack_spec, entry.resolve_spec(attack_spec), ATTACKS)
        clean = np.concatenate([res["clean"][keep] for res, keep in over_batches(None)])
        outputs, flipped_by, in_range = _evaluate_ensemble(
            members, clean, run, images, labels, key, batch_size, devices_for(batch_size),
            keep_adversarial=keep_adversarial, shrink_subsets=shrink_subsets)
        return AttackOutputs(outputs, flipped_by, compile_seconds, attack_seconds, in_range,
                             batch_size)
    outputs = {name: [] for name in OUTPUT_NAMES}
    all_in_range = True
    for res, keep in over_batches(attack_spec):
        all_in_range &= bool(res["in_range"])
        for name in OUTPUT_NAMES:
            if name in res:
                outputs[name].append(res[name][:, keep] if name == "trace" else res[name][keep])
    outputs = {name: np.concatenate(v, axis=1 if name == "trace" else 0)
               for name, v in outputs.items() if v}
    return AttackOutputs(outputs, {}, compile_seconds, attack_seconds, all_in_range, batch_size)


def _evaluate_ensemble(
    members: list[AttackSpec], clean: np.ndarray, run: Callable, images: np.ndarray,
    labels: np.ndarray, key: jax.Array, batch_size: int, devices: int, *,
    keep_adversarial: bool, shrink_subsets: bool,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], bool]:
    """An ensemble over the evaluation set (`dfjax.attacks.auto.run_ensemble`), given its
    clean logits [n, k] (the clean pass): member j on the points still robust, pooled over
    the whole set and cut into batches of at most `batch_size` (batch c: key
    fold_in(fold_in(fold_in(key, MEMBER_STREAM), j), c)), each padded to `subset_size`
    (shrink_subsets) or to the whole batch.
    run(spec, x, y, key, batch label, member=True) -> numpy outputs of one compiled batch.
    Returns (outputs over the set, flipped_by, in_range)."""
    members_key = jax.random.fold_in(key, MEMBER_STREAM)

    def run_member(j, member, robust_idx):
        parts = {}
        for c, start in enumerate(range(0, len(robust_idx), batch_size)):
            part = robust_idx[start:start + batch_size]
            size = subset_size(len(part), batch_size, devices) if shrink_subsets else batch_size
            padded = np.concatenate([part, np.full(size - len(part), part[0])])
            res = run(member, images[padded], labels[padded],
                      jax.random.fold_in(jax.random.fold_in(members_key, j), c), c, member=True)
            for k in ENSEMBLE_OUTPUTS + (("x_adv",) if keep_adversarial else ()):
                parts.setdefault(k, []).append(res[k] if k == "in_range" else res[k][:len(part)])
        return {k: (all(v) if k == "in_range" else np.concatenate(v)) for k, v in parts.items()}

    out, flipped_by = run_ensemble(members, clean, run_member, labels,
                                   images if keep_adversarial else None)
    in_range = bool(out.pop("in_range"))
    return out, flipped_by, in_range


def subset_size(count: int, batch_size: int, devices: int = 1) -> int:
    """The batch an ensemble member runs `count` still-robust points of a batch of
    `batch_size` at: count rounded up to a multiple of the step ceil(batch_size /
    SUBSET_STEPS) (itself a multiple of `devices`, so the split stays even), at most
    batch_size. The attacks draw their randomness per example and position
    (`jax_threefry_partitionable`), so the first `count` rows come out as with the subset
    padded to the whole batch: x_adv identical (tests/attacks/test_ensemble_and_traces.py),
    logits at the rounding level of the smaller matmuls."""
    step = _round_up(_round_up(batch_size, SUBSET_STEPS) // SUBSET_STEPS, devices)
    return min(batch_size, _round_up(count, step))


def _round_up(value: int, multiple: int) -> int:
    """The smallest multiple of `multiple` >= value."""
    return -(-value // multiple) * multiple


def check_finite_outputs(outputs: dict, attack_label: str, batch_index: int) -> None:
    """NonFiniteError if one batch's outputs (the compiled evaluation's dict, an ensemble
    member's without "clean", or a clean pass's {"clean"}) hold NaN or Inf, checked in
    the order they arise: the clean logits; the true-class probability trace [steps, b]
    where the attack gives one (its first non-finite row is the attack step where the
    logits went non-finite; row 0 is the start); the adversarial logits; the perturbation
    norms (a non-finite x_adv, e.g. from a non-finite gradient)."""
    where = f"attack {attack_label}, batch {batch_index}"
    if "clean" in outputs and (bad := nonfinite_rows(outputs["clean"])):
        raise NonFiniteError(f"{where}: the detector's clean logits are NaN/Inf on {bad} of "
                             f"{len(outputs['clean'])} examples", what="clean logits")
    if "trace" in outputs:
        trace = np.asarray(outputs["trace"])
        step = first_nonfinite_index(trace)
        if step is not None:
            raise NonFiniteError(
                f"{where}: the detector's logits went NaN/Inf at attack step {step} (the "
                f"true-class probability trace; step 0 is the start) on "
                f"{count_nonfinite(trace[step])} of {trace.shape[1]} examples",
                what="attack logits", step=step)
    if "adv" not in outputs:  # an ensemble's clean pass
        return
    adv = np.asarray(outputs["adv"])
    if bad := nonfinite_rows(adv):
        raise NonFiniteError(f"{where}: the detector's logits on the adversarial examples "
                             f"are NaN/Inf on {bad} of {len(adv)} examples",
                             what="adversarial logits")
    norms = np.stack([np.asarray(outputs[name], np.float32) for name in ("linf", "l2", "l0")],
                     axis=1)
    if bad := nonfinite_rows(norms):
        raise NonFiniteError(f"{where}: the adversarial examples are NaN/Inf on {bad} of "
                             f"{len(norms)} examples (a non-finite gradient?)",
                             what="adversarial examples")


def check_contract(attack_spec: AttackSpec, result: AttackOutputs) -> None:
    """Every attack output must stay within its budget and in [0, 1]."""
    realised = result.outputs[attack_spec.norm]
    if not result.in_range or realised.max() > attack_spec.eps + 1e-5:
        raise AssertionError(
            f"attack {attack_spec.label()} broke its contract: max {attack_spec.norm} norm "
            f"{realised.max():.6g} > eps {attack_spec.eps:.6g} or pixels outside [0, 1]")
