"""`warm_start_epochs`: adversarial fine-tuning starts from the cached standard detector."""

import jax
import numpy as np

from dfjax.config import AttackSpec, Cell, DatasetSpec, DefenceSpec, ModelSpec, TrainSpec
from dfjax.data.base import DatasetSplits, Split
import dfjax.training.detectors as detectors
from dfjax.training.detectors import get_detector, warm_start_cell


def _splits():
    rng = np.random.default_rng(0)
    y = (np.arange(128) % 2).astype(np.int32)
    images = (rng.integers(0, 120, (128, 16, 16, 3)) + 100 * y[:, None, None, None]).astype(
        np.uint8)
    split = Split(images, y, np.arange(128), np.zeros(128, np.int32))
    return DatasetSplits(split, split.take(64), split.take(64))


def _cell(training):
    return Cell(dataset=DatasetSpec(name="synthetic_faces", image_size=16),
                model=ModelSpec(name="cnn7_tiny"), training=training, defence=DefenceSpec(),
                attack=AttackSpec(name="pgd"), n_eval=8, seed=0)


def test_warm_start_fine_tunes_the_cached_standard_detector(tmp_path, monkeypatch):
    """The pgd_at training starts from the very weights of the standard detector (loaded
    from the cache, not retrained), trains only its own epoch, and moves them."""
    starts = []
    real_train = detectors.train_detector

    def recording_train(*args, initial_variables=None, **kwargs):
        starts.append(initial_variables)
        return real_train(*args, initial_variables=initial_variables, **kwargs)

    monkeypatch.setattr(detectors, "train_detector", recording_train)
    splits = _splits()
    tuned = _cell(TrainSpec(recipe="pgd_at", epochs=1, batch_size=32,
                            options={"eps": 2 / 255, "steps": 1, "warm_start_epochs": 2}))
    base_cell = warm_start_cell(tuned)
    assert base_cell.training == TrainSpec(recipe="standard", epochs=2, batch_size=32)
    standard = get_detector(base_cell, splits, checkpoint_dir=tmp_path, log=lambda m: None)
    assert not standard.from_cache
    detector = get_detector(tuned, splits, checkpoint_dir=tmp_path, log=lambda m: None)
    assert len(starts) == 2 and starts[0] is None  # the standard one trained from scratch
    for a, b in zip(jax.tree.leaves(starts[1]), jax.tree.leaves(standard.variables), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert len(detector.history) == 1  # only the fine-tuning epochs
    # the base came from the cache (no retraining), and fine-tuning moved the weights
    assert get_detector(base_cell, splits, checkpoint_dir=tmp_path).from_cache
    moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(standard.variables),
                                                      jax.tree.leaves(detector.variables))]
    assert any(moved)
