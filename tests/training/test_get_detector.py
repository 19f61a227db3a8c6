"""A corrupted checkpoint is detected and retrained by the runner, never loaded."""

import numpy as np

from dfjax.config import AttackSpec, Cell, DatasetSpec, DefenceSpec, ModelSpec, TrainSpec
from dfjax.data.base import DatasetSplits, Split
from dfjax.training.detectors import get_detector


def _split(n, seed):
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(np.int32)
    images = rng.integers(0, 150, (n, 16, 16, 3)) + 100 * y[:, None, None, None]
    return Split(images.astype(np.uint8), y, np.arange(n), np.zeros(n, np.int32))


def test_corrupt_checkpoint_is_retrained(tmp_path):
    splits = DatasetSplits(_split(32, 0), _split(16, 1), _split(16, 2))
    cell = Cell(dataset=DatasetSpec(name="toy"), model=ModelSpec(name="cnn7_tiny"),
                training=TrainSpec(epochs=1, batch_size=16), defence=DefenceSpec(),
                attack=AttackSpec(name="noise"), n_eval=8, seed=0)
    logs = []
    first = get_detector(cell, splits, checkpoint_dir=tmp_path, log=logs.append)
    assert not first.from_cache
    assert get_detector(cell, splits, checkpoint_dir=tmp_path, log=logs.append).from_cache
    weights = tmp_path / f"{cell.detector_id}.msgpack"
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 3] ^= 0x5A
    weights.write_bytes(bytes(blob))
    retrained = get_detector(cell, splits, checkpoint_dir=tmp_path, log=logs.append)
    assert not retrained.from_cache
    assert any("corrupt checkpoint" in line for line in logs)
    # the retrained weights are the same training run, and the cache is healthy again
    for a, b in zip(np.asarray(first.variables["params"]["Conv_0"]["kernel"]).ravel(),
                    np.asarray(retrained.variables["params"]["Conv_0"]["kernel"]).ravel()):
        assert a == b
    assert get_detector(cell, splits, checkpoint_dir=tmp_path, log=logs.append).from_cache


def test_checkpoint_metadata_without_history_is_retrained_not_a_crash(tmp_path, monkeypatch):
    """Metadata whose hash matches but which lacks history/train_seconds (hand-edited, or
    another tool's) costs a retrain, logged, not a KeyError in every cell."""
    from dfjax.training import detectors

    cell = Cell(dataset=DatasetSpec(name="toy"), model=ModelSpec(name="cnn7_tiny"),
                training=TrainSpec(epochs=1, batch_size=8), defence=DefenceSpec(),
                attack=AttackSpec(name="noise"), n_eval=8, seed=0)
    meta = {"sha256": "0" * 64, "fingerprint": detectors.training_fingerprint(cell)}
    monkeypatch.setattr(detectors, "load_checkpoint", lambda *a: ({"params": {}}, meta))
    trained = []
    monkeypatch.setattr(detectors, "train_new_detector",
                        lambda *a, **k: trained.append(1) or detectors.Detector(
                            None, {}, [], 0.0, False))
    monkeypatch.setattr(detectors, "save_checkpoint", lambda *a, **k: None)
    monkeypatch.setattr(detectors, "create_variables", lambda *a: {})
    logged = []
    splits = DatasetSplits(_split(8, 0), _split(8, 1), _split(8, 2))
    detectors.get_detector(cell, splits, checkpoint_dir=tmp_path, log=logged.append)
    assert trained == [1] and "lacks its training history" in logged[0]
