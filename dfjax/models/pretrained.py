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

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization, traverse_util

HEAD = "fc"


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """name -> float32 array from a torch `.pth`/`.pt` (needs torch) or an `.npz`."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path) as data:
            return {k: np.asarray(data[k]) for k in data.files}
    if path.suffix in (".pth", ".pt"):
        try:
            import torch
        except ImportError as e:
            raise ImportError(f"{path}: reading .pth needs torch; or export it to .npz") from e
        state = torch.load(path, map_location="cpu", weights_only=True)
        return {k: v.detach().cpu().numpy() for k, v in state.items()}
    raise ValueError(f"{path}: expected .npz, .pth or .pt")


def _flax_path(name: str) -> tuple[str, tuple[str, ...], str] | None:
    """torchvision name -> (collection, flax module path, leaf transform), None to skip."""
    parts = name.split(".")
    if parts[-1] == "num_batches_tracked":
        return None
    leaf = parts[-1]
    modules = parts[:-1]
    m = re.fullmatch(r"layer(\d+)", modules[0]) if modules else None
    if m:  # layer{i}.{j}.<sub> -> layer{i}_{j}/<sub>
        sub = modules[2:]
        if sub[:1] == ["downsample"]:
            sub = ["downsample_conv" if sub[1] == "0" else "downsample_bn"]
        modules = [f"{modules[0]}_{modules[1]}", *sub]
    is_bn = modules[-1].startswith("bn") or modules[-1] == "downsample_bn"
    if is_bn:
        collection, flax_leaf = {
            "weight": ("params", "scale"), "bias": ("params", "bias"),
            "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var"),
        }[leaf]
    else:
        collection, flax_leaf = "params", {"weight": "kernel", "bias": "bias"}[leaf]
    return collection, (*modules, flax_leaf), "conv" if flax_leaf == "kernel" else "copy"


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
        collection, path, _ = target
        flat[(collection, *path)] = np.asarray(_to_flax_layout(np.asarray(value)), np.float32)
    return traverse_util.unflatten_dict(flat)


def read_flax_checkpoint(path: str | Path) -> dict[str, Any]:
    """A msgpack file of `flax.serialization.to_bytes(variables)` -> nested state dict."""
    return serialization.msgpack_restore(Path(path).read_bytes())


def transplant(source: Mapping[str, Any], target: Mapping[str, Any], *,
               skip: tuple[str, ...] = (HEAD,)) -> tuple[dict, dict[str, list[str]]]:
    """target with each leaf replaced by source's leaf of the same path and shape.

    Leaves under a top-level module named in `skip` stay as initialised (the new
    head). Returns (variables, report) with report['loaded'], ['kept'] (in target,
    not loaded: skipped, absent or shape-mismatched) and ['unused'] (in source only).
    """
    src = traverse_util.flatten_dict(dict(source), sep="/")
    dst = traverse_util.flatten_dict(jax.tree.map(np.asarray, dict(target)), sep="/")
    out, report = {}, {"loaded": [], "kept": [], "unused": []}
    for path, value in dst.items():
        module = path.split("/")[1] if "/" in path else path
        candidate = src.get(path)
        if module in skip or candidate is None or np.shape(candidate) != value.shape:
            out[path] = value
            report["kept"].append(path)
        else:
            out[path] = np.asarray(candidate, value.dtype)
            report["loaded"].append(path)
    report["unused"] = sorted(set(src) - set(dst))
    return traverse_util.unflatten_dict(out, sep="/"), report


def load_pretrained(path: str | Path, target: Mapping[str, Any], *,
                    min_fraction: float = 0.5) -> dict[str, Any]:
    """Fine-tuning start: `target` (a freshly initialised model's variables) with its
    body replaced from `path` (.npz/.pth in torchvision naming, or .msgpack flax).

    Raises ValueError if less than `min_fraction` of target's leaves were loaded (a
    wrong file for this architecture must not silently become a random init).
    """
    path = Path(path)
    if path.suffix == ".msgpack":
        source = read_flax_checkpoint(path)
    else:
        source = convert_torchvision_resnet(read_state_dict(path))
    variables, report = transplant(source, target)
    total = len(report["loaded"]) + len(report["kept"])
    if len(report["loaded"]) < min_fraction * total:
        raise ValueError(f"{path}: only {len(report['loaded'])} of {total} arrays match the "
                         f"model (e.g. kept {report['kept'][:3]}); wrong architecture?")
    return jax.tree.map(jax.numpy.asarray, variables)
