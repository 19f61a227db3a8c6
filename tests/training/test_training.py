import jax
import numpy as np
import pytest

from dfjax.config import ModelSpec, TrainSpec
from dfjax.data.base import Split
from dfjax.models import build_model
from dfjax.training import (
    CorruptCheckpointError,
    create_variables,
    load_checkpoint,
    save_checkpoint,
    train_detector,
)


def _split(n, seed):
    """Learnable toy data: fakes are brighter."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(np.int32)
    images = rng.integers(0, 150, (n, 16, 16, 3)).astype(np.uint8) + (y * 100)[:, None, None,
                                                                                  None].astype(
        np.uint8)
    return Split(images, y, np.arange(n), np.zeros(n, np.int32))


def test_training_lowers_loss_and_is_deterministic():
    model = build_model(ModelSpec(name="cnn7_tiny"))
    spec = TrainSpec(epochs=3, batch_size=16, learning_rate=3e-3)
    train, val = _split(128, 0), _split(64, 1)
    v1, h1 = train_detector(model, train, val, spec, key=jax.random.key(0))
    v2, h2 = train_detector(model, train, val, spec, key=jax.random.key(0))
    assert h1[-1]["train_loss"] < h1[0]["train_loss"]
    assert h1[-1]["val_accuracy"] > 0.8
    for a, b in zip(jax.tree.leaves(v1), jax.tree.leaves(v2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert [r["train_loss"] for r in h1] == [r["train_loss"] for r in h2]


def test_checkpoint_roundtrip_and_corruption(tmp_path):
    model = build_model(ModelSpec(name="cnn7_tiny"))
    variables = create_variables(model, (16, 16, 3), jax.random.key(0))
    save_checkpoint(tmp_path, "abc", variables, {"history": []})
    loaded, meta = load_checkpoint(tmp_path, "abc", variables)
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(loaded)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert load_checkpoint(tmp_path, "missing", variables) is None
    weights = tmp_path / "abc.msgpack"
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(CorruptCheckpointError, match="abc.msgpack"):
        load_checkpoint(tmp_path, "abc", variables)
