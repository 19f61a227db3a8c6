"""Fuzzing the pretrained-weights reader (issue 18): a weights file that is truncated,
not a zip, random, of the wrong architecture, holding non-numbers or a malicious pickle
is refused with a StateDictError naming the file, before any work; nothing in it runs."""

from __future__ import annotations

import importlib.util
import io
import os
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

from dfjax.config import ModelSpec, TrainSpec
from dfjax.models import build_model
from dfjax.models.pretrained import (
    StateDictError,
    convert_torchvision_resnet,
    load_pretrained,
    read_state_dict,
)
from tests.models.test_pretrained import fake_torchvision_resnet50

FUZZ = settings(max_examples=40, deadline=None, database=None, derandomize=True)
HAS_TORCH = importlib.util.find_spec("torch") is not None
ZIP_MAGIC = b"PK\x03\x04"
ZIP_MAGICS = (ZIP_MAGIC, b"PK\x05\x06")  # a zip, or an empty one


def _shapes_of(name: str):
    model = build_model(ModelSpec(name=name))
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                                               train=False))
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


TARGET = _shapes_of("resnet50_tiny")  # the model fine-tuned from the file
STATE_DICT = fake_torchvision_resnet50(np.random.default_rng(0))


def _npz_bytes(arrays: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


NPZ = _npz_bytes(STATE_DICT)
MSGPACK = serialization.to_bytes(TARGET)


class MaliciousPickle:
    """Unpickling it calls os.makedirs(marker): proof that a file's code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (str(self.marker),)


def _refusal(data: bytes, suffix: str) -> str:
    """The message `load_pretrained` refuses `data` with, the temporary folder as <dir>
    (fails the test if it loads). ImportError for a zip .pth without torch."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"weights{suffix}"
        path.write_bytes(data)
        with pytest.raises((StateDictError, ImportError)) as error:
            load_pretrained(path, TARGET)
        if isinstance(error.value, ImportError):
            assert not HAS_TORCH and suffix in (".pth", ".pt") and data.startswith(ZIP_MAGICS)
            event("zip .pth without torch: ImportError")
        assert str(path) in str(error.value)
        return str(error.value).replace(tmp, "<dir>")


def test_the_unfuzzed_files_load():
    """The seeds of the fuzzing below are good files: both load onto the model."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in (("w.npz", NPZ), ("w.msgpack", MSGPACK)):
            (Path(tmp) / name).write_bytes(data)
            loaded = load_pretrained(Path(tmp) / name, TARGET)
            assert jax.tree.structure(loaded) == jax.tree.structure(TARGET)


@FUZZ
@given(data=st.binary(max_size=600), suffix=st.sampled_from([".npz", ".pth", ".pt", ".msgpack"]),
       magic=st.sampled_from([b"", ZIP_MAGIC, b"PK\x05\x06", b"\x81", b"\xde\x00\x01"]))
def test_random_bytes_are_refused_naming_the_file(data, suffix, magic):
    """Random bytes under each suffix, some starting like a zip or a msgpack map so the
    parser itself is fuzzed: StateDictError naming the file."""
    _refusal(magic + data, suffix)


@FUZZ
@given(length=st.integers(0, len(NPZ) - 1))
def test_truncated_npz_is_refused(length):
    message = _refusal(NPZ[:length], ".npz")
    event("refused before parsing" if "refused unread" in message else "parser refused")


@FUZZ
@given(length=st.integers(0, len(MSGPACK) - 1))
def test_truncated_msgpack_is_refused(length):
    _refusal(MSGPACK[:length], ".msgpack")


torchvision_like = st.from_regex(
    r"(conv1|bn1|fc|layer[0-9]\.[0-9]\.(conv[0-9]|bn[0-9]|downsample\.[0-9])|layer1\.0|x)"
    r"\.(weight|bias|running_mean|running_var|num_batches_tracked|kernel)", fullmatch=True)
arrays = st.sampled_from([
    np.zeros((2, 3), np.float32), np.ones(4, np.int64), np.array(True), np.zeros((1, 1, 1, 1)),
    np.array([1 + 2j]), np.array(["abc"]), np.array([np.nan], np.float32),
    np.array([np.inf]), np.zeros((4, 3, 7, 7), np.float32), np.zeros(0, np.float32)])


@FUZZ
@given(names=st.lists(st.one_of(torchvision_like, st.text(min_size=1, max_size=30)),
                      min_size=1, max_size=6, unique=True), data=st.data())
def test_npz_of_any_names_and_arrays_is_refused_naming_the_file(names, data):
    """An .npz of arbitrary names (torchvision-like or not) holding arrays of any dtype,
    NaN and infinity included: never the model (too few of its arrays), StateDictError."""
    state = {name: data.draw(arrays) for name in names}
    convert_torchvision_resnet({k: v for k, v in state.items() if v.dtype.kind in "biuf"})
    message = _refusal(_npz_bytes(state), ".npz")
    event("wrong architecture" if "wrong architecture" in message else "bad array")


msgpack_trees = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(),
              st.text(max_size=8), st.binary(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.one_of(st.text(max_size=6), st.integers()),
                                            inner, max_size=3)),
    max_leaves=10)


@FUZZ
@given(tree=msgpack_trees)
def test_msgpack_of_any_tree_is_refused_naming_the_file(tree):
    """Any well-formed msgpack data (non-string keys, strings, bytes, None, NaN leaves,
    lists, not a map): StateDictError naming the file."""
    _refusal(msgpack.packb(tree), ".msgpack")


def test_another_architecture_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "cnn7.msgpack"
    path.write_bytes(serialization.to_bytes(_shapes_of("cnn7_tiny")))
    with pytest.raises(StateDictError, match=f"{path}: only 0 of .* wrong architecture"):
        load_pretrained(path, TARGET)


def test_malicious_pickle_in_a_pth_is_refused_unread(tmp_path):
    """A legacy (bare pickle) .pth whose pickle would run os.makedirs: refused by its
    first bytes, with or without torch; the marker folder is never made."""
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    import pickle  # the test writes the hostile file that dfjax must refuse

    path.write_bytes(pickle.dumps({"conv1.weight": MaliciousPickle(marker)}))
    with pytest.raises(StateDictError, match=f"{path}: not a zip archive.*refused unread"):
        read_state_dict(path)
    assert not marker.exists()


def test_malicious_pickle_inside_an_npz_is_not_unpickled(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.npz"
    np.savez(path, conv1=np.array([MaliciousPickle(marker)], dtype=object))
    with pytest.raises(StateDictError, match=f"{path}: not a readable .npz.*allow_pickle"):
        read_state_dict(path)
    assert not marker.exists()


def test_malicious_pickle_in_a_torch_zip_is_refused(tmp_path):
    """A torch >= 1.6 zip whose data.pkl would run code: torch's weights-only unpickler
    refuses it (StateDictError naming the file); the marker folder is never made."""
    torch = pytest.importorskip("torch")
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": MaliciousPickle(marker)}, path)
    with pytest.raises(StateDictError, match=f"{path}: torch cannot read it as weights"):
        read_state_dict(path)
    assert not marker.exists()


def test_a_training_checkpoint_is_not_a_state_dict(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "checkpoint.pth"
    torch.save({"conv1.weight": torch.zeros(2), "epoch": 3}, path)
    with pytest.raises(StateDictError, match="'epoch' is a int, not a tensor"):
        read_state_dict(path)


def test_bad_init_from_file_is_refused_before_data_loads(tmp_path, monkeypatch):
    """A training spec's init_from naming a missing or non-zip file: ConfigError naming
    it at validation, before any dataset is loaded."""
    import dataclasses

    from dfjax.configs import get_config
    from dfjax.runner import ConfigError, expand, local, stages

    monkeypatch.setattr(stages, "load_dataset", lambda *a, **k: pytest.fail("data was loaded"))
    not_zip = tmp_path / "weights.npz"
    not_zip.write_bytes(b"\x80\x04 a pickle, say")
    for path, message in ((tmp_path / "missing.npz", "no such file"),
                          (not_zip, "not a zip archive")):
        config = dataclasses.replace(get_config("smoke"), trainings=(
            TrainSpec(epochs=1, options={"init_from": str(path)}),))
        with pytest.raises(ConfigError, match=f"init_from {path}: {message}"):
            expand(config)
        with pytest.raises(ConfigError):
            local.run_matrix(config, store=None)
