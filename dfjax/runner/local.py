"""Run a matrix on this machine: train each detector once, then every cell that uses it.

Cells already stored as 'ok' are skipped (a killed run resumes); a cell that raises
is stored as 'failed' with its error and the run goes on.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from dfjax.attacks import ATTACKS, black_box_beats_white_box
from dfjax.losses import true_class_probability, two_class_logits
from dfjax.attacks._projections import changed_pixels, perturbation_norms
from dfjax.config import Cell, MatrixConfig
from dfjax.data import load_dataset
from dfjax.data.base import DatasetSplits, Split
from dfjax.defences import DEFENCES
from dfjax.metrics import attack_success_rate, classification_metrics, robust_flags, summary
from dfjax.metrics.video import video_level_metrics
from dfjax.models import build_model, make_logits_fn
from dfjax.rng import cell_key
from dfjax.runner.environment import environment
from dfjax.runner.expand import expand
from dfjax.store import Store
from dfjax.training import (
    CorruptCheckpointError,
    create_variables,
    default_checkpoint_dir,
    load_checkpoint,
    save_checkpoint,
    train_detector,
)
from dfjax.training.loop import padded_batches
from dfjax.xla import compile_split


@dataclasses.dataclass
class RunSummary:
    """What a run did, and where its time went (seconds)."""

    total: int = 0
    skipped: int = 0
    done: int = 0
    failed: int = 0
    seconds: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"data": 0.0, "training": 0.0, "attacks": 0.0})
    failures: list[tuple[str, str]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Detector:
    model: object
    variables: dict
    history: list[dict]
    train_seconds: float
    from_cache: bool


def warm_start_cell(cell: Cell) -> Cell:
    """The cell whose detector a `warm_start_epochs=N` training starts from: the same
    dataset and model, trained with `standard` for N epochs (same batch, lr, seed) --
    the very detector a `standard` N-epoch entry of the matrix trains, so it is shared."""
    t = cell.training
    base = dataclasses.replace(t, recipe="standard", epochs=int(t.option("warm_start_epochs")),
                               options={})
    return dataclasses.replace(cell, training=base)


def get_detector(cell: Cell, splits: DatasetSplits, *, checkpoint_dir: Path,
                 log: Callable[[str], None] = print,
                 on_epoch: Callable[[dict], None] | None = None) -> Detector:
    """Load the detector a cell needs from the content-hash cache, or train and cache it."""
    model = build_model(cell.model)
    key = jax.random.fold_in(jax.random.key(cell.training.seed), 1)
    target = create_variables(model, splits.train.images.shape[1:], key)
    try:
        cached = load_checkpoint(checkpoint_dir, cell.detector_id, target)
    except CorruptCheckpointError as e:
        log(f"corrupt checkpoint, retraining: {e}")
        cached = None
    if cached is not None:
        variables, meta = cached
        return Detector(model, variables, meta["history"], meta["train_seconds"], True)
    initial = None
    if cell.training.option("warm_start_epochs"):  # adversarial fine-tuning
        base = get_detector(warm_start_cell(cell), splits, checkpoint_dir=checkpoint_dir,
                            log=log, on_epoch=on_epoch)
        initial = base.variables
    start = time.perf_counter()  # the fine-tuning alone; the base has its own record
    variables, history = train_detector(model, splits.train, splits.validation, cell.training,
                                        key=key, on_epoch=on_epoch, initial_variables=initial)
    seconds = time.perf_counter() - start
    save_checkpoint(checkpoint_dir, cell.detector_id, variables,
                    {"history": history, "train_seconds": seconds,
                     "dataset": cell.dataset.to_dict(), "model": cell.model.to_dict(),
                     "training": cell.training.to_dict()})
    return Detector(model, variables, history, seconds, False)


def evaluation_subset(split: Split, n_eval: int, seed: int) -> Split:
    """The examples every cell of a detector is evaluated on (seeded, so the same for all).

    Still images: the first n_eval of a seeded permutation. Video frames (any frame
    index > 0): whole videos in seeded order until n_eval frames are reached, so the
    video-level metrics see every sampled frame of each video they score.
    """
    rng = np.random.default_rng(seed)
    if split.frames.any():
        videos = rng.permutation(np.unique(split.groups))
        frames_per_video = np.array([np.sum(split.groups == v) for v in videos])
        keep = videos[: max(1, int(np.searchsorted(np.cumsum(frames_per_video), n_eval,
                                                   side="right")))]
        order = np.flatnonzero(np.isin(split.groups, keep))
    else:
        order = np.sort(rng.permutation(len(split))[:n_eval])
    return Split(split.images[order], split.labels[order], split.groups[order],
                 split.frames[order])


class AttackEvaluator:
    """Compiles, once per (model, defence, attack options, batch shape), a function
    (variables, x, y, key, eps) -> dict of clean and adversarial logits, Linf, L2 and
    L0 norms, the pixel-range flag, and (where the attack gives them) the true-class
    probability trace and the minimal distance to flip; eps is traced, so a budget
    sweep reuses one compilation. The batch is split across `devices` (default: as
    many CPU devices as divide it, dfjax.xla.split_devices); results do not depend
    on the split beyond float rounding (tests/attacks/test_split_batch.py)."""

    def __init__(self, devices: list | None = None):
        self._compiled: dict[tuple, object] = {}
        self.devices = devices

    def get(self, cell: Cell, model, variables, x, y, key, attack_spec=None
            ) -> tuple[object, float]:
        """(compiled function, seconds spent compiling now: 0 when cached).
        attack_spec: run this attack instead of cell.attack (an ensemble's member)."""
        attack_spec = attack_spec or cell.attack
        spec_no_eps = dataclasses.replace(attack_spec, eps=0.0)
        cache_key = (cell.model.canonical(), cell.defence.canonical(), spec_no_eps.canonical(),
                     x.shape)
        if cache_key in self._compiled:
            return self._compiled[cache_key], 0.0
        entry = ATTACKS.get(attack_spec.name)
        extra_static = {}
        if entry.traces:
            extra_static["return_trace"] = True
        if entry.minimal_norm:
            extra_static["return_distance"] = True
        attack = entry.bind(attack_spec, **extra_static)
        defence = DEFENCES.get(cell.defence.name)

        def evaluate(variables, x, y, key, eps):
            logits_fn = defence(make_logits_fn(model, variables), cell.defence)
            out = attack(logits_fn, x, y, key, eps)
            result = {}
            if entry.traces:
                out, result["trace"] = out
            elif entry.minimal_norm:
                out, result["distance"] = out
            x_adv = out
            result["linf"], result["l2"] = perturbation_norms(x_adv, x)
            result["l0"] = changed_pixels(x_adv, x)
            result["in_range"] = jnp.all((x_adv >= 0) & (x_adv <= 1))
            result["clean"], result["adv"] = logits_fn(x), logits_fn(x_adv)
            return result

        start = time.perf_counter()
        compiled = compile_split(evaluate, variables, x, y, key, jnp.float32(0),
                                 devices=self.devices)
        seconds = time.perf_counter() - start
        self._compiled[cache_key] = compiled
        return compiled, seconds


def fake_probability(logits: np.ndarray) -> np.ndarray:
    return np.asarray(jax.nn.softmax(two_class_logits(jnp.asarray(logits)), axis=-1)[:, 1])


def _predicted(logits: np.ndarray) -> np.ndarray:
    return np.asarray(jnp.argmax(two_class_logits(jnp.asarray(logits)), axis=-1))


def _ensemble_batch(cell, members, detector, evaluator, x, y, key, eps):
    """AutoAttack protocol on one batch: member i runs only on the points still robust
    (gathered, padded to the batch shape with copies of the first, so one compiled
    function serves every call), and flips are scattered back. Returns the batch
    outputs (as one attack's), flipped_by {member: bool [b]} and compile seconds."""
    b = x.shape[0]
    out, flipped_by, compile_seconds = None, {}, 0.0
    robust = None
    for i, member in enumerate(members):
        flipped_by[member.name] = np.zeros(b, bool)
        idx = np.arange(b) if out is None else np.flatnonzero(robust)
        if len(idx) == 0:
            continue
        padded = np.concatenate([idx, np.full(b - len(idx), idx[0])])
        fn, seconds = evaluator.get(cell, detector.model, detector.variables, x, y, key,
                                    attack_spec=member)
        compile_seconds += seconds
        res = jax.block_until_ready(fn(detector.variables, x[padded], y[padded],
                                       jax.random.fold_in(key, i), eps))
        res = {k: np.asarray(res[k])[:len(idx)] for k in ("clean", "adv", "linf", "l2", "l0")
               } | {"in_range": bool(res["in_range"])}
        if out is None:  # the first member ran on every point: clean logits for all
            out = {k: v.copy() for k, v in res.items() if k != "in_range"}
            out["adv"], out["in_range"] = out["clean"].copy(), True
            for k in ("linf", "l2", "l0"):
                out[k][:] = 0
            robust = _predicted(out["clean"]) == np.asarray(y)
        out["in_range"] &= res["in_range"]
        flipped = robust[idx] & (_predicted(res["adv"]) != np.asarray(y)[idx])
        hit = idx[flipped]
        for k in ("adv", "linf", "l2", "l0"):
            out[k][hit] = res[k][flipped]
        flipped_by[member.name][hit] = True
        robust[hit] = False
    return out, flipped_by, compile_seconds


OUTPUT_NAMES = ("clean", "adv", "linf", "l2", "l0", "trace", "distance")


def _attack_outputs(cell, detector, eval_split, evaluator, batch_size, members):
    """Run the attack over the evaluation subset in padded batches.

    Returns (outputs {name: array over examples; "trace" is [steps, n]}, flipped_by
    {member: bool [n]} for ensembles, compile seconds, attack seconds, all pixels in
    range)."""
    key = cell_key(cell.seed, cell.cell_id)
    eps = jnp.float32(cell.attack.eps)
    images = eval_split.float_images()
    outputs = {name: [] for name in OUTPUT_NAMES}
    flipped_by = {m.name: [] for m in members or ()}
    compile_seconds, attack_seconds, all_in_range = 0.0, 0.0, True
    for batch_index, (idx, mask) in enumerate(padded_batches(len(eval_split), batch_size)):
        x = jnp.asarray(images[idx])
        y = jnp.asarray(eval_split.labels[idx])
        batch_key = jax.random.fold_in(key, batch_index)
        keep = mask > 0
        start = time.perf_counter()
        if members:
            res, flips, seconds = _ensemble_batch(cell, members, detector, evaluator, x, y,
                                                  batch_key, eps)
            for name, value in flips.items():
                flipped_by[name].append(value[keep])
        else:
            fn, seconds = evaluator.get(cell, detector.model, detector.variables, x, y,
                                        batch_key)
            start = time.perf_counter()
            res = jax.block_until_ready(fn(detector.variables, x, y, batch_key, eps))
        attack_seconds += time.perf_counter() - start - (seconds if members else 0.0)
        compile_seconds += seconds
        all_in_range &= bool(res["in_range"])
        for name in OUTPUT_NAMES:
            if name in res:
                value = np.asarray(res[name])
                outputs[name].append(value[:, keep] if name == "trace" else value[keep])
    outputs = {name: np.concatenate(v, axis=1 if name == "trace" else 0)
               for name, v in outputs.items() if v}
    flipped_by = {name: np.concatenate(v) for name, v in flipped_by.items()}
    return outputs, flipped_by, compile_seconds, attack_seconds, all_in_range


def _check_contract(cell: Cell, outputs: dict, all_in_range: bool) -> None:
    """Every attack output must stay within its budget and in [0, 1]."""
    realised = outputs[cell.attack.norm]
    if not all_in_range or realised.max() > cell.attack.eps + 1e-5:
        raise AssertionError(
            f"attack {cell.attack.label()} broke its contract: max {cell.attack.norm} norm "
            f"{realised.max():.6g} > eps {cell.attack.eps:.6g} or pixels outside [0, 1]")


def run_cell(cell: Cell, detector: Detector, test: Split, evaluator: AttackEvaluator,
             batch_size: int) -> tuple[dict, dict, dict]:
    """Attack the evaluation subset; returns (metrics, timings, extra).

    An ensemble (`auto`) runs member by member on still-robust points and adds
    robust_accuracy_after_<member> and sanity_black_box_beats_white_box; an attack
    with a trace stores per-step mean/median true-class probability in
    extra["tcp_trace"]; a minimal-norm attack (cw_l2) adds median_l2_to_flip; a
    dataset of video frames adds video-level metrics (video_clean_*, video_adv_*)."""
    eval_split = evaluation_subset(test, cell.n_eval, cell.seed)
    if len(eval_split) == 0:
        raise ValueError(f"dataset {cell.dataset.name} has no test examples")
    entry = ATTACKS.get(cell.attack.name)
    members = entry.members(cell.attack, entry.resolve_options(cell.attack)) \
        if entry.members else None
    outputs, flips, compile_seconds, attack_seconds, in_range = _attack_outputs(
        cell, detector, eval_split, evaluator, min(batch_size, len(eval_split)), members)
    _check_contract(cell, outputs, in_range)
    y = eval_split.labels
    p_clean, p_adv = fake_probability(outputs["clean"]), fake_probability(outputs["adv"])
    clean_correct, robust = robust_flags(y, p_clean), robust_flags(y, p_adv)
    tcp_clean = np.asarray(true_class_probability(jnp.asarray(outputs["clean"]), jnp.asarray(y)))
    tcp_adv = np.asarray(true_class_probability(jnp.asarray(outputs["adv"]), jnp.asarray(y)))
    linf, l2 = outputs["linf"], outputs["l2"]
    metrics = {
        **classification_metrics(y, p_clean, prefix="clean_"),
        **classification_metrics(y, p_adv, prefix="adv_"),
        "robust_accuracy": float(robust.mean()),
        "attack_success_rate": attack_success_rate(clean_correct, robust),
        **summary(tcp_clean, prefix="clean_true_class_probability"),
        **summary(tcp_adv, prefix="adv_true_class_probability"),
        "linf_max": float(linf.max()), "linf_mean": float(linf.mean()),
        "l2_max": float(l2.max()), "l2_mean": float(l2.mean()), "l2_median": float(np.median(l2)),
        "l0_max": float(outputs["l0"].max()),
    }
    if eval_split.frames.any():
        metrics.update(video_level_metrics(eval_split.groups, y, p_clean, prefix="video_clean_"))
        metrics.update(video_level_metrics(eval_split.groups, y, p_adv, prefix="video_adv_"))
    extra = {"nonrobust_indices": np.flatnonzero(~robust).tolist()}  # into the eval subset
    if members:
        still = clean_correct.copy()
        for name, flipped in flips.items():
            still &= ~flipped
            metrics[f"robust_accuracy_after_{name}"] = float(still.mean())
        metrics["sanity_black_box_beats_white_box"] = float(black_box_beats_white_box(flips))
    if "trace" in outputs:
        trace = outputs["trace"].astype(np.float64)
        extra["tcp_trace"] = {"mean": trace.mean(axis=1).tolist(),
                              "median": np.median(trace, axis=1).tolist()}
    if "distance" in outputs:  # minimal-norm attack: robust at eps <=> not flipped within eps
        distance = outputs["distance"]
        flipped = np.isfinite(distance) & clean_correct
        metrics["median_l2_to_flip"] = (float(np.median(distance[flipped])) if flipped.any()
                                        else float("nan"))
        metrics["fraction_flipped_any_l2"] = float(flipped.mean())
    timings = {"compile_time": compile_seconds, "attack_time": attack_seconds,
               "images_per_second": len(y) / attack_seconds if attack_seconds else float("nan")}
    return metrics, timings, extra


def _raise_if_failed(value, what: str):
    """Cached results may be the exception that building them raised: re-raise it per cell."""
    if isinstance(value, Exception):
        raise RuntimeError(f"{what} could not be built: {type(value).__name__}: {value}") from value
    return value


def run_matrix(
    config: MatrixConfig, store: Store, *, only: Mapping[str, Sequence[str]] | None = None,
    data_dir: Path | None = None, checkpoint_dir: Path | None = None, progress: bool = True,
    log: Callable[[str], None] = print,
) -> RunSummary:
    """Run every cell of `config` not yet stored; returns what happened and the time split."""
    cells = expand(config, only)
    checkpoint_dir = checkpoint_dir or default_checkpoint_dir()
    todo = [c for c in cells if not store.has_result(c.cell_id)]
    summary_ = RunSummary(total=len(cells), skipped=len(cells) - len(todo))
    datasets: dict[str, DatasetSplits] = {}
    detectors: dict[str, Detector | Exception] = {}
    evaluator = AttackEvaluator()
    bar = tqdm(total=len(todo), disable=not progress, desc=config.name, unit="cell")
    for cell in todo:
        start = time.perf_counter()
        bar.set_postfix_str(f"{cell.model.label()}/{cell.training.label()} "
                            f"{cell.attack.label()} delta={cell.attack.delta:g}")
        try:
            dataset_id = cell.dataset.canonical()
            if dataset_id not in datasets:
                bar.set_description(f"data {cell.dataset.name}")
                t = time.perf_counter()
                try:
                    datasets[dataset_id] = load_dataset(cell.dataset, data_dir=data_dir)
                except Exception as e:  # every cell on this dataset fails with it
                    datasets[dataset_id] = e
                summary_.seconds["data"] += time.perf_counter() - t
            splits = _raise_if_failed(datasets[dataset_id], f"dataset {cell.dataset.label()}")
            if cell.detector_id not in detectors:
                bar.set_description(f"train {cell.model.label()}/{cell.training.label()}")
                t = time.perf_counter()
                try:
                    detectors[cell.detector_id] = get_detector(
                        cell, splits, checkpoint_dir=checkpoint_dir, log=log,
                        on_epoch=lambda h: bar.set_postfix_str(
                            f"epoch {h['epoch']}/{cell.training.epochs} "
                            f"val acc {h['val_accuracy']:.3f} ({h['seconds']:.0f} s)"))
                    d = detectors[cell.detector_id]
                    store.put_detector(cell.detector_id, {
                        "dataset": cell.dataset.to_dict(), "model": cell.model.to_dict(),
                        "training": cell.training.to_dict()}, d.history, d.train_seconds)
                except Exception as e:  # every cell of this detector fails with it
                    detectors[cell.detector_id] = e
                summary_.seconds["training"] += time.perf_counter() - t
            detector = _raise_if_failed(detectors[cell.detector_id],
                                        f"detector {cell.detector_id}")
            bar.set_description(config.name)
            t = time.perf_counter()
            metrics, timings, extra = run_cell(cell, detector, splits.test, evaluator,
                                               config.eval_batch_size)
            summary_.seconds["attacks"] += time.perf_counter() - t
            timings["wall_time"] = time.perf_counter() - start
            store.put(cell, status="ok", metrics=metrics, timings=timings, extra=extra,
                      env=environment())
            summary_.done += 1
        except Exception as e:  # stored as failed, with its error; the run goes on
            error = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}"
            store.put(cell, status="failed", error=error,
                      timings={"wall_time": time.perf_counter() - start}, env=environment())
            summary_.failed += 1
            summary_.failures.append((cell.cell_id, f"{type(e).__name__}: {e}"))
            log(f"cell {cell.attack.label()} eps={cell.attack.eps:.4g} failed: {e}")
        bar.update(1)
    bar.close()
    return summary_
