"""Pretrained weights from local files only (nothing is downloaded).

Two sources:
* ImageNet ResNets in torchvision's naming (`conv1.weight`, `layer1.0.bn2.running_var`,
  `layer2.0.downsample.0.weight`, `fc.weight`, ...), from a torchvision state_dict
  `.pth` (read with torch, if installed) or an `.npz` holding the same names and
  torch layouts; `convert_torchvision_resnet` maps them onto `dfjax.models.ResNet`.
* Flax msgpack checkpoints (`flax.serialization.to_bytes` of a variables dict, e.g.
  a dfjax detector checkpoint).

`load_pretrained(path, target)` takes either and returns `target` with every
array replaced whose name and shape match, except the classifier head `fc` (or any
leaf whose shape differs): fine-tuning as the paper did, a num_logits head on an
ImageNet body. See docs/pretrained.md.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization, traverse_util

HEAD = "fc"

# What a weights file must start with: .npz and torch >= 1.6 files are zip archives (a
# legacy torch file is a bare pickle and is refused unread); a flax checkpoint is a
# msgpack map (fixmap 0x80-0x8f, map16 0xde, map32 0xdf).
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_MSGPACK_MAP_FIRST_BYTES = frozenset(range(0x80, 0x90)) | {0xDE, 0xDF}
SUFFIXES = (".npz", ".pth", ".pt", ".msgpack")


class StateDictError(ValueError):
    """A weights file that cannot be used; the message names the file and what is wrong."""


def check_weights_file(path: str | Path) -> None:
    """Raise StateDictError unless `path` is a file whose suffix and first bytes are
    those of a format this module reads (nothing is parsed: cheap, for validation)."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise StateDictError(f"{path}: expected one of {', '.join(SUFFIXES)}")
    if not path.is_file():
        raise StateDictError(f"{path}: no such file")
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as e:
        raise StateDictError(f"{path}: unreadable ({e})") from e
    if path.suffix == ".msgpack":
        if not head or head[0] not in _MSGPACK_MAP_FIRST_BYTES:
            raise StateDictError(f"{path}: not a flax msgpack checkpoint (no msgpack map)")
    elif not head.startswith(_ZIP_MAGIC):
        kind = ".npz" if path.suffix == ".npz" else "torch >= 1.6 file"
        raise StateDictError(f"{path}: not a zip archive, so not a {kind}; refused unread "
                             "(a legacy torch pickle is never unpickled)")


@functools.lru_cache(maxsize=8)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    del size, mtime_ns  # cache keys: a changed file is hashed again
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(path: str | Path) -> str:
    """The hex sha256 of a weights file's bytes (what a fine-tuned detector's provenance
    names); hashed once per process while the file's size and mtime stay the same.
    Raises OSError for a file that cannot be read."""
    path = Path(path).resolve()
    stat = path.stat()
    return _sha256(path, stat.st_size, stat.st_mtime_ns)


def _checked_array(path: Path, name: Any, value: Any) -> np.ndarray:
    """`value` as an array if `name` is a string and it holds finite numbers."""
    if not isinstance(name, str):
        raise StateDictError(f"{path}: array name {name!r} is not a string")
    array = np.asarray(value) if isinstance(value, (np.ndarray, int, float)) else None
    if array is None or array.dtype.kind not in "biuf":
        kind = array.dtype if array is not None else type(value).__name__
        raise StateDictError(f"{path}: {name!r} holds {kind}, not numbers")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise StateDictError(f"{path}: {name!r} holds NaN or infinite values")
    return array


def _checked_arrays(path: Path, state: Mapping[Any, Any]) -> dict[str, np.ndarray]:
    """name -> array, each name a string and each array numeric and finite."""
    return {name: _checked_array(path, name, value) for name, value in state.items()}


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """name -> numeric array from an `.npz` or a torch `.pth`/`.pt` (needs torch).

    The file's format is checked before it is parsed; a `.pth` is read by torch's
    weights-only unpickler, which builds tensors and refuses every other object.
    Raises StateDictError naming the file for anything that is not such a state dict.
    """
    path = Path(path)
    if path.suffix == ".msgpack":
        raise StateDictError(f"{path}: a flax checkpoint; read it with read_flax_checkpoint")
    check_weights_file(path)
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                state = {name: data[name] for name in data.files}
        except Exception as e:  # zipfile, zlib, numpy's format checks: each its own type
            raise StateDictError(f"{path}: not a readable .npz ({type(e).__name__}: {e})") from e
        return _checked_arrays(path, state)
    try:
        import torch
    except ImportError as e:
        raise ImportError(f"{path}: reading .pth needs torch; or export it to .npz") from e
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the weights-only unpickler refuses code; zip/format errors
        raise StateDictError(f"{path}: torch cannot read it as weights ({e})") from e
    if not isinstance(state, Mapping):
        raise StateDictError(f"{path}: holds a {type(state).__name__}, not a state dict")
    tensors = {}
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise StateDictError(f"{path}: {name!r} is a {type(value).__name__}, not a "
                                 "tensor (a training checkpoint? save its state_dict)")
        value = value.detach().cpu()
        tensors[name] = (value.float() if value.is_floating_point() else value).numpy()
    return _checked_arrays(path, tensors)


# torchvision ResNet names: stem modules, or layer{i}.{j}.<conv|bn|downsample.{0,1}>.
_TORCHVISION_NAME = re.compile(
    r"(?:(?P<stem>conv1|bn1|fc)|layer(?P<stage>\d+)\.(?P<block>\d+)\."
    r"(?P<sub>conv\d+|bn\d+|downsample\.[01]))"
    r"\.(?P<leaf>weight|bias|running_mean|running_var|num_batches_tracked)")
_BATCH_NORM_LEAVES = {"weight": ("params", "scale"), "bias": ("params", "bias"),
                      "running_mean": ("batch_stats", "mean"),
                      "running_var": ("batch_stats", "var")}


def _flax_path(name: str) -> tuple[str, tuple[str, ...]] | None:
    """torchvision name -> (collection, flax module path + leaf); None for a name that is
    not a torchvision ResNet array (skipped, so `load_pretrained` reports it unloaded)."""
    m = _TORCHVISION_NAME.fullmatch(name)
    if m is None or m["leaf"] == "num_batches_tracked":
        return None
    if m["stem"]:
        modules: tuple[str, ...] = (m["stem"],)
    else:  # layer{i}.{j}.<sub> -> layer{i}_{j}/<sub>
        sub = m["sub"]
        if sub.startswith("downsample"):
            sub = "downsample_conv" if sub.endswith("0") else "downsample_bn"
        modules = (f"layer{m['stage']}_{m['block']}", sub)
    if modules[-1].startswith("bn") or modules[-1] == "downsample_bn":
        collection, flax_leaf = _BATCH_NORM_LEAVES[m["leaf"]]
    elif m["leaf"] in ("weight", "bias"):
        collection, flax_leaf = "params", {"weight": "kernel", "bias": "bias"}[m["leaf"]]
    else:
        return None
    return collection, (*modules, flax_leaf)


def _to_flax_layout(value: np.ndarray) -> np.ndarray:
    if value.ndim == 4:  # torch conv [out, in, kh, kw] -> flax [kh, kw, in, out]
        return value.transpose(2, 3, 1, 0)
    if value.ndim == 2:  # torch linear [out, in] -> flax dense [in, out]
        return value.T
    return value


def convert_torchvision_resnet(state_dict: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """torchvision ResNet state_dict -> nested Flax variables {'params', 'batch_stats'}
    for `dfjax.models.ResNet` (same stage sizes). The head `fc` is converted too;
    `load_pretrained` drops it when the target's head has another shape."""
    flat: dict[tuple[str, ...], np.ndarray] = {}
    for name, value in state_dict.items():
        target = _flax_path(name)
        if target is None:
            continue
        collection, path = target
        flat[(collection, *path)] = np.asarray(_to_flax_layout(np.asarray(value)), np.float32)
    return traverse_util.unflatten_dict(flat)


def read_flax_checkpoint(path: str | Path) -> dict[str, Any]:
    """A msgpack file of `flax.serialization.to_bytes(variables)` -> nested state dict of
    numeric arrays. msgpack holds data only; StateDictError naming the file otherwise."""
    path = Path(path)
    check_weights_file(path)
    try:
        tree = serialization.msgpack_restore(path.read_bytes())
    except Exception as e:  # msgpack's and flax's format errors: each its own type
        raise StateDictError(f"{path}: not a flax msgpack checkpoint ({e})") from e
    if not isinstance(tree, dict):
        raise StateDictError(f"{path}: holds a {type(tree).__name__}, not a state dict")
    flat = {}
    for keys, value in traverse_util.flatten_dict(tree).items():
        if not all(isinstance(key, str) for key in keys):
            raise StateDictError(f"{path}: array name {keys!r} is not made of strings")
        flat[keys] = _checked_array(path, "/".join(keys), value)
    return traverse_util.unflatten_dict(flat)


def _matches(source_shapes: Mapping[str, tuple[int, ...]],
             target_shapes: Mapping[str, tuple[int, ...]],
             skip: tuple[str, ...]) -> dict[str, list[str]]:
    """The transplant rule on shapes alone: report['loaded'] (same path and shape, not
    under a skipped top-level module), ['kept'] (the rest of the target), ['unused']."""
    report = {"loaded": [], "kept": [], "unused": sorted(set(source_shapes) - set(target_shapes))}
    for path, shape in target_shapes.items():
        module = path.split("/")[1] if "/" in path else path
        fits = module not in skip and source_shapes.get(path) == tuple(shape)
        report["loaded" if fits else "kept"].append(path)
    return report


def _shapes(tree: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {path: tuple(np.shape(leaf))
            for path, leaf in traverse_util.flatten_dict(dict(tree), sep="/").items()}


def transplant(source: Mapping[str, Any], target: Mapping[str, Any], *,
               skip: tuple[str, ...] = (HEAD,)) -> tuple[dict, dict[str, list[str]]]:
    """target with each leaf replaced by source's leaf of the same path and shape.

    Leaves under a top-level module named in `skip` stay as initialised (the new
    head). Returns (variables, report) with report['loaded'], ['kept'] (in target,
    not loaded: skipped, absent or shape-mismatched) and ['unused'] (in source only).
    """
    src = traverse_util.flatten_dict(dict(source), sep="/")
    dst = traverse_util.flatten_dict(jax.tree.map(np.asarray, dict(target)), sep="/")
    report = _matches(_shapes(source), {p: v.shape for p, v in dst.items()}, skip)
    loaded = set(report["loaded"])
    out = {path: np.asarray(src[path], value.dtype) if path in loaded else value
           for path, value in dst.items()}
    return traverse_util.unflatten_dict(out, sep="/"), report


def _read_weights(path: Path) -> dict[str, Any]:
    """Nested variables from a .msgpack flax checkpoint, or a torchvision ResNet state
    dict (.npz/.pth) converted to dfjax's ResNet names."""
    if path.suffix == ".msgpack":
        return read_flax_checkpoint(path)
    return convert_torchvision_resnet(read_state_dict(path))


def _check_fraction(path: Path, report: dict[str, list[str]], min_fraction: float) -> None:
    total = len(report["loaded"]) + len(report["kept"])
    if len(report["loaded"]) < min_fraction * total:
        raise StateDictError(f"{path}: only {len(report['loaded'])} of {total} arrays match the "
                             f"model (e.g. kept {report['kept'][:3]}); wrong architecture?")


def check_weights_for_model(path: str | Path, model: Any, image_shape: tuple[int, ...], *,
                            min_fraction: float = 0.5, model_name: str = "") -> None:
    """Raise StateDictError naming the file unless `load_pretrained(path, variables of
    `model` for inputs [h, w, c] = image_shape)` would succeed: the file is read and
    matched against the model's shapes (found without computing any weights), so a
    missing, unreadable or wrong-architecture file is refused before any training.
    `model_name` goes into the message."""
    path = Path(path)
    source = _read_weights(path)
    shapes = jax.eval_shape(lambda: model.init(
        jax.random.key(0), jax.numpy.zeros((1, *image_shape), jax.numpy.float32), train=False))
    try:
        _check_fraction(path, _matches(_shapes(source), _shapes(shapes), (HEAD,)), min_fraction)
    except StateDictError as e:
        raise StateDictError(f"{e} (checked against model {model_name})" if model_name
                             else str(e)) from None


def load_pretrained(path: str | Path, target: Mapping[str, Any], *,
                    min_fraction: float = 0.5) -> dict[str, Any]:
    """Fine-tuning start: `target` (a freshly initialised model's variables) with its
    body replaced from `path` (.npz/.pth in torchvision naming, or .msgpack flax).

    Raises StateDictError (a ValueError) naming the file if it is not a readable weights
    file, or if less than `min_fraction` of target's leaves were loaded (a wrong file for
    this architecture must not silently become a random init).
    """
    path = Path(path)
    variables, report = transplant(_read_weights(path), target)
    _check_fraction(path, report, min_fraction)
    return jax.tree.map(jax.numpy.asarray, variables)
