"""A cell's detector: loaded from the content-hash cache, or trained (and warm-started
from the detector it fine-tunes) and cached.

A checkpoint records the fingerprint of the code that trained it (`training_fingerprint`:
the training code, the model's module, the dataset's preparing code); one recording
another fingerprint, or none, is stale: logged, retrained and replaced, never loaded."""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from pathlib import Path

import flax.linen as nn
import jax

from dfjax.config import Cell
from dfjax.data import DATASETS, dataset_fingerprint
from dfjax.data.base import DatasetSplits
from dfjax.fingerprint import (
    cached,
    code_fingerprint,
    combine,
    external_fingerprint,
    module_path,
)
from dfjax.models import MODELS, build_model
from dfjax.models.pretrained import weights_sha256
from dfjax.training.checkpoints import CorruptCheckpointError, load_checkpoint, save_checkpoint
from dfjax.training.loop import create_variables, train_detector


@dataclasses.dataclass
class Detector:
    """A trained detector: the module, its variables, per-epoch history, the seconds its
    own training took (its fine-tuning alone for a warm start), whether it was loaded,
    and when its training finished (Unix seconds; None: not recorded, an older cache).
    fingerprint: the code that trained it (`training_fingerprint`); stale_replaced: a
    cached checkpoint made by other code was found and this one trained in its place."""

    model: nn.Module
    variables: dict
    history: list[dict]
    train_seconds: float
    from_cache: bool
    trained_at: float | None = None
    fingerprint: str | None = None
    stale_replaced: bool = False


TRAINING_ROOTS = ("dfjax.training.detectors",)


@cached
def _model_code(model_name: str) -> str:
    if model_name not in MODELS:  # a user's own module (dfjax.benchmark): not ours to hash
        return f"unregistered model {model_name}"
    module = MODELS.get(model_name).module
    base = module.func if isinstance(module, functools.partial) else module
    if module_path(base.__module__) is None:  # registered from outside dfjax
        return combine(external_fingerprint(base), code_fingerprint(
            ["dfjax.models.pretrained"], stop=["dfjax.data"], shallow=["dfjax.models"]))
    # the registry (variants' keyword arguments) is read, not followed into every model
    return code_fingerprint([base.__module__, "dfjax.models.pretrained"], stop=["dfjax.data"],
                            shallow=["dfjax.models"])


def training_fingerprint(cell: Cell) -> str:
    """The fingerprint of the code that trains `cell`'s detector: dfjax.training and what
    it imports (the data and model packages excepted), the model's own module, the code
    that prepares the dataset (`dfjax.data.dataset_fingerprint`), the bytes of an
    `init_from` weights file, and for a warm start the detector it fine-tunes. A model or
    dataset of no registry (a user's, dfjax.benchmark) enters by name."""
    training = code_fingerprint(TRAINING_ROOTS, stop=["dfjax.data", "dfjax.models"])
    data = (dataset_fingerprint(cell.dataset) if cell.dataset.name in DATASETS
            else f"unregistered dataset {cell.dataset.name}")
    parts = [training, _model_code(cell.model.name), data]
    init_from = cell.training.option("init_from")
    if isinstance(init_from, str):  # other weights under the same name: another detector
        try:
            parts.append(weights_sha256(init_from))
        except OSError:
            parts.append(f"unreadable weights file {init_from}")
    if cell.training.option("warm_start_epochs"):
        parts.append(training_fingerprint(warm_start_cell(cell)))
    return combine(*parts)


def warm_start_cell(cell: Cell) -> Cell:
    """The cell whose detector a `warm_start_epochs=N` training starts from: the same
    dataset and model, trained with `standard` for N epochs (same batch, lr, seed) --
    the very detector a `standard` N-epoch entry of the matrix trains, so it is shared."""
    t = cell.training
    base = dataclasses.replace(t, recipe="standard", epochs=int(t.option("warm_start_epochs")),
                               options={})
    return dataclasses.replace(cell, training=base)


def train_new_detector(model: nn.Module, splits: DatasetSplits, training, *, key: jax.Array,
                       on_epoch: Callable[[dict], None] | None = None,
                       initial_variables: dict | None = None) -> Detector:
    """Train `model` on splits.train (validated on splits.validation) with TrainSpec
    `training` from `key` (or fine-tune `initial_variables`); the Detector records the
    seconds this training took. Nothing is cached: `get_detector` caches."""
    start = time.perf_counter()
    variables, history = train_detector(model, splits.train, splits.validation, training,
                                        key=key, on_epoch=on_epoch,
                                        initial_variables=initial_variables)
    return Detector(model, variables, history, time.perf_counter() - start, False,
                    trained_at=time.time())


def meta_fingerprint(meta: dict) -> str | None:
    """The training fingerprint a checkpoint's metadata records (None: none recorded)."""
    value = meta.get("fingerprint")
    return value if isinstance(value, str) else None


def get_detector(cell: Cell, splits: DatasetSplits, *, checkpoint_dir: Path,
                 log: Callable[[str], None] = print,
                 on_epoch: Callable[[dict], None] | None = None,
                 retrain: set[str] | None = None) -> Detector:
    """Load the detector a cell needs from the content-hash cache, or train and cache it.

    retrain: ids of detectors to train afresh even if cached (`--retrain`); an id is
    removed from the set once trained and cached, so later calls load that fresh one.

    A training with option `warm_start_epochs=N` fine-tunes the `standard` N-epoch
    detector (`warm_start_cell`), itself loaded or trained first. A corrupt checkpoint is
    logged and retrained; so is a stale one (trained by other code: its fingerprint is not
    `training_fingerprint(cell)`), and the Detector says so (`stale_replaced`)."""
    model = build_model(cell.model)
    fingerprint = training_fingerprint(cell)
    stale = False
    key = jax.random.fold_in(jax.random.key(cell.training.seed), 1)
    target = create_variables(model, splits.train.images.shape[1:], key)
    try:
        cached = (None if retrain and cell.detector_id in retrain
                  else load_checkpoint(checkpoint_dir, cell.detector_id, target))
    except CorruptCheckpointError as e:
        log(f"corrupt checkpoint, retraining: {e}")
        cached = None
    if cached is not None and meta_fingerprint(cached[1]) != fingerprint:
        log(f"stale checkpoint {cell.detector_id}: trained by other code (fingerprint "
            f"{meta_fingerprint(cached[1]) or 'not recorded'} != {fingerprint}), retraining")
        cached, stale = None, True
    if cached is not None:
        variables, meta = cached
        if isinstance(meta.get("history"), list) and isinstance(meta.get("train_seconds"),
                                                                (int, float)):
            return Detector(model, variables, meta["history"], meta["train_seconds"], True,
                            trained_at=meta.get("trained_at"), fingerprint=fingerprint)
        log(f"checkpoint {cell.detector_id} lacks its training history, retraining")
    initial = None
    if cell.training.option("warm_start_epochs"):  # adversarial fine-tuning
        base = get_detector(warm_start_cell(cell), splits, checkpoint_dir=checkpoint_dir,
                            log=log, on_epoch=on_epoch, retrain=retrain)
        initial = base.variables
    # its seconds are the fine-tuning alone; the base has its own record
    detector = train_new_detector(model, splits, cell.training, key=key, on_epoch=on_epoch,
                                  initial_variables=initial)
    detector.fingerprint, detector.stale_replaced = fingerprint, stale
    save_checkpoint(checkpoint_dir, cell.detector_id, detector.variables,
                    {"history": detector.history, "train_seconds": detector.train_seconds,
                     "trained_at": detector.trained_at, "fingerprint": fingerprint,
                     "dataset": cell.dataset.to_dict(), "model": cell.model.to_dict(),
                     "training": cell.training.to_dict()})
    if retrain:
        retrain.discard(cell.detector_id)
    return detector
