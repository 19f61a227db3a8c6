"""A cached detector trained by other code (another training fingerprint) is retrained,
not reused; the log and the row's provenance say so."""

import json

import numpy as np
import pytest

from dfjax import fingerprint
from dfjax.config import AttackSpec, Cell, DatasetSpec, DefenceSpec, ModelSpec, TrainSpec
from dfjax.data.base import DatasetSplits, Split
from dfjax.runner.environment import provenance
from dfjax.training import detectors
from dfjax.training.detectors import get_detector, training_fingerprint


def _split(n, seed):
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(np.int32)
    images = rng.integers(0, 150, (n, 16, 16, 3)) + 100 * y[:, None, None, None]
    return Split(images.astype(np.uint8), y, np.arange(n), np.zeros(n, np.int32))


SPLITS = DatasetSplits(_split(32, 0), _split(16, 1), _split(16, 2))
CELL = Cell(dataset=DatasetSpec(name="toy"), model=ModelSpec(name="cnn7_tiny"),
            training=TrainSpec(epochs=1, batch_size=16), defence=DefenceSpec(),
            attack=AttackSpec(name="noise"), n_eval=8, seed=0)


@pytest.fixture
def fresh_fingerprints():
    fingerprint.clear_cache()
    yield
    fingerprint.clear_cache()


def _change_training_code(monkeypatch):
    """As if dfjax/training/loop.py had been edited (one statement added)."""
    original = fingerprint.read_source
    monkeypatch.setattr(fingerprint, "read_source", lambda m: original(m) + "\nCHANGED = 1\n"
                        if m == "dfjax.training.loop" else original(m))
    fingerprint.clear_cache()


def test_a_changed_training_code_retrains_the_cached_detector(tmp_path, monkeypatch,
                                                              fresh_fingerprints):
    logs = []
    first = get_detector(CELL, SPLITS, checkpoint_dir=tmp_path, log=logs.append)
    assert get_detector(CELL, SPLITS, checkpoint_dir=tmp_path, log=logs.append).from_cache
    old = training_fingerprint(CELL)

    _change_training_code(monkeypatch)
    assert training_fingerprint(CELL) != old
    retrained = get_detector(CELL, SPLITS, checkpoint_dir=tmp_path, log=logs.append)
    assert not retrained.from_cache and retrained.stale_replaced
    assert retrained.trained_at > first.trained_at
    assert any(line.startswith(f"stale checkpoint {CELL.detector_id}: trained by other code")
               and old in line for line in logs)
    assert provenance(SPLITS, retrained)["detector_source"] == "retrained (stale cache)"
    meta = json.loads((tmp_path / f"{CELL.detector_id}.json").read_text())
    assert meta["fingerprint"] == training_fingerprint(CELL) != old
    # the new checkpoint is current: loaded from now on
    again = get_detector(CELL, SPLITS, checkpoint_dir=tmp_path, log=logs.append)
    assert again.from_cache and not again.stale_replaced
    assert provenance(SPLITS, again)["detector_source"] == "cache"


def test_a_checkpoint_without_a_fingerprint_is_retrained(tmp_path, fresh_fingerprints):
    """A checkpoint written before fingerprints were recorded cannot be trusted."""
    get_detector(CELL, SPLITS, checkpoint_dir=tmp_path, log=lambda line: None)
    meta_path = tmp_path / f"{CELL.detector_id}.json"
    meta = json.loads(meta_path.read_text())
    del meta["fingerprint"]
    meta_path.write_text(json.dumps(meta))
    logs = []
    detector = get_detector(CELL, SPLITS, checkpoint_dir=tmp_path, log=logs.append)
    assert not detector.from_cache and detector.stale_replaced
    assert "fingerprint not recorded" in logs[0]


def test_an_unchanged_code_loads_the_checkpoint(tmp_path, monkeypatch, fresh_fingerprints):
    """Only the fingerprint decides: a comment added to the training code keeps the cache."""
    get_detector(CELL, SPLITS, checkpoint_dir=tmp_path, log=lambda line: None)
    original = fingerprint.read_source
    monkeypatch.setattr(fingerprint, "read_source", lambda m: original(m) + "\n# note\n"
                        if m == "dfjax.training.loop" else original(m))
    fingerprint.clear_cache()
    trained = []
    monkeypatch.setattr(detectors, "train_new_detector", lambda *a, **k: trained.append(1))
    assert get_detector(CELL, SPLITS, checkpoint_dir=tmp_path, log=lambda line: None).from_cache
    assert trained == []
