"""The trained detector the torchattacks comparisons share (tests/peers/
test_torch_crosscheck.py, bench/test_ensemble_peer.py): cnn7 trained on synthetic_faces
64x64 (4,000 images, 8 epochs) through the runner's checkpoint cache, so it is trained
once per machine, and the runner's evaluation subset. Imports no torch."""

from __future__ import annotations

from typing import Any

import numpy as np

from dfjax import settings
from dfjax.config import AttackSpec, Cell, DatasetSpec, DefenceSpec, ModelSpec, TrainSpec
from dfjax.data import load_dataset
from dfjax.data.subsets import evaluation_subset
from dfjax.training.detectors import get_detector


def trained_cnn7(n_eval: int, seed: int = 0) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    """(model, variables, x float32 [n_eval, 64, 64, 3] in [0, 1], y int32 [n_eval]) of the
    shared trained cnn7 and its first-`seed` evaluation subset."""
    cell = Cell(dataset=DatasetSpec(name="synthetic_faces", image_size=64, num_examples=4000),
                model=ModelSpec(name="cnn7"), training=TrainSpec(epochs=8),
                defence=DefenceSpec(), attack=AttackSpec(name="noise"), n_eval=n_eval,
                seed=seed)
    splits = load_dataset(cell.dataset)
    detector = get_detector(cell, splits, checkpoint_dir=settings.checkpoint_dir(),
                            log=lambda _: None)
    subset = evaluation_subset(splits.test, n_eval, cell.seed)
    return (detector.model, detector.variables, subset.float_images(),
            subset.labels.astype(np.int32))
