"""Fuzzing detector checkpoints (issue 18): a truncated, empty, random, tampered or
foreign checkpoint, or garbage metadata, is a CorruptCheckpointError naming the file (the
runner then retrains), never a crash inside flax or msgpack, never wrong weights."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import msgpack
import numpy as np
import pytest
from flax import serialization
from hypothesis import event, given, settings
from hypothesis import strategies as st

from dfjax.config import ModelSpec
from dfjax.models import build_model
from dfjax.training.checkpoints import CorruptCheckpointError, load_checkpoint, save_checkpoint

FUZZ = settings(max_examples=40, deadline=None, database=None, derandomize=True)
ID = "d3adb33f"


def _variables(name: str = "cnn7_tiny", **options):
    """A model's variables tree (shapes and dtypes by tracing, not compiling), filled with
    seeded random values."""
    model = build_model(ModelSpec(name=name, options=options))
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)),
                                               train=False))
    rng = np.random.default_rng(0)
    return jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), shapes)


TARGET = _variables()
BLOB = serialization.to_bytes(TARGET)


def _write(directory: Path, blob: bytes, meta: dict | bytes | None = None) -> None:
    """weights `blob` and its metadata: given bytes, or `meta` with blob's true sha256."""
    (directory / f"{ID}.msgpack").write_bytes(blob)
    if not isinstance(meta, bytes):
        meta = json.dumps({**(meta or {"history": []}),
                           "sha256": hashlib.sha256(blob).hexdigest()}).encode()
    (directory / f"{ID}.json").write_bytes(meta)


def _load_or_error(blob: bytes, meta: dict | bytes | None = None):
    """(variables, None) if it loads, else (None, the CorruptCheckpointError message)."""
    with tempfile.TemporaryDirectory() as tmp:
        _write(Path(tmp), blob, meta)
        try:
            variables, _ = load_checkpoint(Path(tmp), ID, TARGET)
        except CorruptCheckpointError as e:
            return None, str(e).replace(tmp, "<dir>")
        return variables, None


def _assert_like_target(variables) -> None:
    leaves, tree = jax.tree.flatten(variables)
    target_leaves, target_tree = jax.tree.flatten(TARGET)
    assert tree == target_tree
    for got, want in zip(leaves, target_leaves):
        assert got.shape == want.shape and got.dtype == want.dtype


@FUZZ
@given(length=st.integers(0, len(BLOB) - 1))
def test_truncated_weights_are_corrupt(length):
    """Weights cut anywhere (zero bytes included) under the original metadata: corrupt,
    named by the .msgpack file."""
    sha = hashlib.sha256(BLOB).hexdigest()
    meta = json.dumps({"history": [], "sha256": sha}).encode()
    variables, message = _load_or_error(BLOB[:length], meta)
    assert variables is None and message.startswith(f"<dir>/{ID}.msgpack: sha256 does not")


@FUZZ
@given(blob=st.binary(max_size=2048))
def test_random_bytes_with_a_matching_hash_are_corrupt(blob):
    """Random bytes whose metadata carries their true sha256 reach the msgpack parser:
    it refuses them as corrupt, naming the .msgpack file."""
    variables, message = _load_or_error(blob)
    assert variables is None and message.startswith(f"<dir>/{ID}.msgpack: "), message


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, len(BLOB) - 1), st.integers(1, 255)),
                      min_size=1, max_size=4, unique_by=lambda flip: flip[0]))
def test_edited_weights_are_refused_or_keep_the_model_tree(flips):
    """Bytes of a real checkpoint changed: refused with the original metadata (the
    checksum); with a re-computed checksum, corrupt (naming the file) or a tree with
    exactly the target's names, shapes and dtypes -- never a wrongly shaped model."""
    blob = bytearray(BLOB)
    for position, xor in flips:
        blob[position] ^= xor
    blob = bytes(blob)
    sha = hashlib.sha256(BLOB).hexdigest()
    _, message = _load_or_error(blob, json.dumps({"history": [], "sha256": sha}).encode())
    assert message is not None and "sha256 does not match" in message
    variables, message = _load_or_error(blob)
    if variables is None:
        event("corrupt")
        assert message.startswith(f"<dir>/{ID}.msgpack: "), message
    else:
        event("loaded (array bytes changed)")
        _assert_like_target(variables)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
              st.text(max_size=70)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["sha256", "history", "x"]), inner,
                                            max_size=3)),
    max_leaves=6)


@FUZZ
@given(meta=st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()),
                      st.sampled_from([b"", b"\xff\xfe", b"[" * 100_000, b"{}",
                                       b'{"sha256": 5}', b'{"sha256": "abc"}', b"null"])))
def test_garbage_metadata_is_corrupt(meta):
    """Any metadata bytes beside real weights (not UTF-8, not JSON, nested past the
    recursion limit, not an object, no well-formed sha256): corrupt, naming a file."""
    variables, message = _load_or_error(BLOB, meta)
    assert variables is None
    assert message.startswith((f"<dir>/{ID}.json: ", f"<dir>/{ID}.msgpack: ")), message


@pytest.mark.parametrize("name,options,message", [
    ("cnn6_tiny", {}, "cannot be restored"),  # other module names
    ("cnn7_tiny", {"conv_features": (4, 8, 16)}, "another model's checkpoint"),  # shapes
])
def test_another_models_checkpoint_under_this_id_is_corrupt(name, options, message):
    """A valid checkpoint of another architecture (its own correct sha256) saved under
    this detector's id: corrupt, naming the file -- flax alone would restore the second
    one with the wrong shapes."""
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(Path(tmp), ID, _variables(name, **options), {"history": []})
        with pytest.raises(CorruptCheckpointError, match=f"{ID}.msgpack: .*{message}"):
            load_checkpoint(Path(tmp), ID, TARGET)


def test_float64_weights_are_corrupt():
    """The target's arrays as float64 (same names and shapes): corrupt (dtype named)."""
    blob = serialization.to_bytes(jax.tree.map(lambda a: np.asarray(a, np.float64), TARGET))
    variables, message = _load_or_error(blob)
    assert variables is None and "float64" in message and "float32" in message


def test_a_directory_in_place_of_the_weights_is_corrupt(tmp_path):
    (tmp_path / f"{ID}.msgpack").mkdir()
    (tmp_path / f"{ID}.json").write_text(json.dumps({"sha256": "0" * 64}))
    with pytest.raises(CorruptCheckpointError, match=f"{ID}.msgpack: unreadable"):
        load_checkpoint(tmp_path, ID, TARGET)


def test_a_healthy_checkpoint_loads_exactly(tmp_path):
    """The fuzzed loader still loads what save_checkpoint wrote, bit for bit."""
    save_checkpoint(tmp_path, ID, TARGET, {"history": [{"epoch": 1}]})
    variables, meta = load_checkpoint(tmp_path, ID, TARGET)
    assert meta["history"] == [{"epoch": 1}]
    for got, want in zip(jax.tree.leaves(variables), jax.tree.leaves(TARGET)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert msgpack.unpackb((tmp_path / f"{ID}.msgpack").read_bytes(), raw=False,
                           strict_map_key=False, ext_hook=lambda code, data: data)
