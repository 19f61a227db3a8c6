"""Security rules as tests (issue 18): files dfjax did not write cost one named input,
never the run and never code execution, and nothing is downloaded at run time.

(a) no pickle, marshal, shelve, eval/exec, np.load(allow_pickle=True), unsafe yaml.load or
    torch.load without weights_only=True anywhere in dfjax/ (read with `ast`, so comments
    and strings do not count);
(b) checkpoints are msgpack with a sha256 checksum, and a tampered one is refused;
(c) a state dict holding a pickle with a malicious __reduce__ is never executed;
(d) preparing the default dataset completes with every socket connection refused.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import socket
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import msgpack
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dfjax"

UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle"}
NUMPY_NAMES = {"np", "numpy", "onp"}
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader"}


def _dotted(node: ast.AST) -> str:
    """`a.b.c` for a Name/Attribute chain, '' for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_constant(node: ast.AST | None, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _call_problem(call: ast.Call) -> str | None:
    name = _dotted(call.func)
    head, _, attr = name.rpartition(".")
    if name in ("eval", "exec", "builtins.eval", "builtins.exec"):
        return f"{name}()"
    if attr == "load" and head in NUMPY_NAMES and _keyword(call, "allow_pickle") is not None \
            and not _is_constant(_keyword(call, "allow_pickle"), False):
        return f"{name}(allow_pickle=...) other than False"
    if head == "yaml" and attr in ("unsafe_load", "full_load", "unsafe_load_all"):
        return f"{name}()"
    if head == "yaml" and attr in ("load", "load_all"):
        loader = _keyword(call, "Loader") or (call.args[1] if len(call.args) > 1 else None)
        if loader is None or _dotted(loader).rpartition(".")[2] not in SAFE_YAML_LOADERS:
            return f"{name}() without a SafeLoader"
    if head == "torch" and attr == "load" and not _is_constant(_keyword(call, "weights_only"),
                                                                True):
        return "torch.load() without weights_only=True"
    return None


def unsafe_constructs(source: str, filename: str = "<source>") -> list[str]:
    """`file:line: what` for each construct that can run a file's code on reading it."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        problem = None
        if isinstance(node, ast.Import):
            bad = [a.name for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
            problem = f"import {', '.join(bad)}" if bad else None
        elif isinstance(node, ast.ImportFrom) and node.module \
                and node.module.split(".")[0] in UNSAFE_MODULES:
            problem = f"from {node.module} import ..."
        elif isinstance(node, ast.Call):
            problem = _call_problem(node)
        if problem:
            found.append(f"{filename}:{node.lineno}: {problem}")
    return found


def test_no_unsafe_deserialisation_or_eval_in_the_package():
    """(a) Every module of dfjax/, parsed: none of the constructs above."""
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 50  # the whole package, not an empty glob
    found = [p for f in files for p in unsafe_constructs(f.read_text(), str(f.relative_to(
        PACKAGE.parent)))]
    assert found == []


@pytest.mark.parametrize("source,expected", [
    ("import pickle", "import pickle"),
    ("import os, marshal as m", "import marshal"),
    ("from shelve import open", "from shelve import"),
    ("from pickle import loads", "from pickle import"),
    ("x = eval('1')", "eval()"),
    ("exec(code)", "exec()"),
    ("np.load(f, allow_pickle=True)", "allow_pickle"),
    ("numpy.load(f, allow_pickle=flag)", "allow_pickle"),
    ("yaml.load(text)", "without a SafeLoader"),
    ("yaml.load(text, Loader=yaml.FullLoader)", "without a SafeLoader"),
    ("yaml.unsafe_load(text)", "yaml.unsafe_load()"),
    ("torch.load(path)", "weights_only"),
    ("torch.load(path, weights_only=False)", "weights_only"),
])
def test_the_checker_finds_each_unsafe_construct(source, expected):
    """The rule above could fail: each construct, alone in a snippet, is found."""
    found = unsafe_constructs(source)
    assert len(found) == 1 and expected in found[0], found


def test_the_checker_ignores_comments_strings_and_safe_forms():
    source = '''
"""Docstring: never pickle, never eval(x), never torch.load(f)."""
import ast
# import pickle; exec(code); np.load(f, allow_pickle=True)
message = "yaml.load(text) and marshal are not used"
value = ast.literal_eval("(1, 2)")
arrays = np.load(path, allow_pickle=False)
data = np.load(path)
config = yaml.load(text, Loader=yaml.SafeLoader)
safe = yaml.safe_load(text)
state = torch.load(path, map_location="cpu", weights_only=True)
model.eval()
'''
    assert unsafe_constructs(source) == []


def test_checkpoints_are_checksummed_msgpack_and_tampering_is_refused(tmp_path):
    """(b) The weights file is a msgpack map (data only), its sha256 is in the metadata,
    and a changed byte -- in the weights or in the recorded checksum -- is refused."""
    from dfjax.config import ModelSpec
    from dfjax.models import build_model
    from dfjax.training.checkpoints import (
        CorruptCheckpointError,
        load_checkpoint,
        save_checkpoint,
    )

    model = build_model(ModelSpec(name="cnn7_tiny"))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3))))
    variables = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), variables)
    weights = save_checkpoint(tmp_path, "abc", variables, {"history": []})
    blob = weights.read_bytes()
    tree = msgpack.unpackb(blob, ext_hook=lambda code, data: data)  # plain msgpack
    assert set(tree) == {"params"} and blob[0] in range(0x80, 0x90)
    meta_path = tmp_path / "abc.json"
    meta = json.loads(meta_path.read_text())
    assert meta["sha256"] == hashlib.sha256(blob).hexdigest()
    assert load_checkpoint(tmp_path, "abc", variables) is not None

    tampered = bytearray(blob)
    tampered[-5] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(tampered))
    with pytest.raises(CorruptCheckpointError, match="abc.msgpack: sha256 does not match"):
        load_checkpoint(tmp_path, "abc", variables)
    weights.write_bytes(blob)
    meta_path.write_text(json.dumps({**meta, "sha256": "0" * 64}))
    with pytest.raises(CorruptCheckpointError, match="abc.msgpack: sha256 does not match"):
        load_checkpoint(tmp_path, "abc", variables)


class _MaliciousPickle:
    """Unpickling it calls os.makedirs(marker)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (str(self.marker),)


def test_a_pickled_state_dict_is_refused_before_unpickling(tmp_path, monkeypatch):
    """(c) without torch: a .pth that is a bare pickle with a malicious __reduce__ is
    refused by its first bytes -- torch made unimportable shows it is never handed to
    torch -- and its code does not run."""
    import pickle  # the test writes the hostile file that dfjax must refuse

    from dfjax.models.pretrained import StateDictError, read_state_dict

    marker = tmp_path / "code_ran"
    path = tmp_path / "resnet50.pth"
    path.write_bytes(pickle.dumps({"conv1.weight": _MaliciousPickle(marker)}))
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    with pytest.raises(StateDictError, match="not a zip archive.*refused unread"):
        read_state_dict(path)
    assert not marker.exists()


def test_a_malicious_pickle_in_a_torch_file_is_not_executed(tmp_path):
    """(c) with torch: the same payload inside a torch >= 1.6 zip is refused by the
    weights-only unpickler; its code does not run."""
    torch = pytest.importorskip("torch")
    from dfjax.models.pretrained import StateDictError, read_state_dict

    marker = tmp_path / "code_ran"
    path = tmp_path / "resnet50.pth"
    torch.save({"conv1.weight": _MaliciousPickle(marker)}, path)
    with pytest.raises(StateDictError, match="resnet50.pth: torch cannot read it"):
        read_state_dict(path)
    assert not marker.exists()


def test_data_preparation_downloads_nothing(tmp_path, monkeypatch, capsys):
    """(d) `dfjax data prepare synthetic_faces` (the default matrix's dataset, through
    TFDS) completes with every socket connection and name lookup refused, and none is
    attempted. (A whole `dfjax run` of one smoke cell took 43-49 s here, nearly all of it
    compiling the detector and the attack, so the test stops at the data stage.)"""
    from dfjax.cli import main

    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:] if args else kwargs)
        raise OSError("network access in a test of an offline run")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    code = main(["data", "prepare", "synthetic_faces", "--image-size", "32",
                 "--num-examples", "40", "--no-progress", "--data-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "train: " in out and "test: " in out
    assert (tmp_path / "synthetic_faces").is_dir()
    assert attempts == []
    with socket.socket() as sock, pytest.raises(OSError, match="network access"):
        sock.connect(("192.0.2.1", 80))  # the refusal is live: an attempt is caught
    assert len(attempts) == 1
