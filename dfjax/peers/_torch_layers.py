"""Pieces the torch mirrors share: in-model normalisation, Flax "SAME" padding, and the
copies of Flax weights into torch layers.

Weight layouts: Flax conv kernel [kh, kw, in / groups, out] (HWIO) -> torch [out, in /
groups, kh, kw] (OIHW; a depthwise kernel [kh, kw, 1, c] becomes [c, 1, kh, kw]); Flax
dense kernel [in, out] -> torch [out, in]. A dense layer after a flatten also has its
input rows permuted: Flax flattens NHWC maps in (h, w, c) order, torch NCHW in (c, h, w).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

BATCH_NORM_EPSILON = 1e-5  # flax.linen.BatchNorm's default, = torch's default
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """(x - mean) / std per channel of x [b, c, h, w], as dfjax.models.Normalize (whose
    defaults, 0.5 and 0.25, are these too)."""

    def __init__(self, mean: float | Sequence[float] = 0.5,
                 std: float | Sequence[float] = 0.25):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(-1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding of Flax/TF "SAME" along one axis: ceil(size / stride)
    outputs; an odd total puts the extra row after (e.g. 3x3 stride 2 on an even size
    pads (0, 1), where torch's symmetric padding=1 would shift every window)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """nn.Conv2d with Flax's "SAME" padding, computed from each input's size (symmetric
    padding inside the conv where it is symmetric, else an explicit F.pad first)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, *, stride: int = 1,
                 bias: bool = True):
        super().__init__(in_channels, out_channels, kernel, stride=stride, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (top, bottom), (left, right) = (
            same_pads(size, self.kernel_size[i], self.stride[i], self.dilation[i])
            for i, size in enumerate(x.shape[-2:]))
        if top != bottom or left != right:
            x, top, left = F.pad(x, (left, right, top, bottom)), 0, 0
        return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation,
                        self.groups)


def max_pool_2x2_repeated(x: torch.Tensor, size: int) -> torch.Tensor:
    """size x size max pool (size a power of 2) as repeated 2x2 pools, as dfjax's
    meso models: each drops an odd trailing row/column."""
    while size > 1:
        x = F.max_pool2d(x, 2)
        size //= 2
    return x


def batch_norm(features: int) -> nn.BatchNorm2d:
    """Flax's BatchNorm (epsilon 1e-5); eval mode in every mirror (running statistics)."""
    return nn.BatchNorm2d(features, eps=BATCH_NORM_EPSILON)


def as_numpy(a: Any) -> np.ndarray:
    """A writable float32 copy (jax arrays are read-only)."""
    return np.array(a, np.float32)


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def copy_conv(layer: nn.Conv2d, p: Mapping[str, Any]) -> None:
    """Flax conv params {'kernel' [kh, kw, in/groups, out], 'bias'?} -> layer (in place,
    under torch.no_grad)."""
    layer.weight.copy_(_tensor(as_numpy(p["kernel"]).transpose(3, 2, 0, 1)))
    if ("bias" in p) != (layer.bias is not None):
        raise ValueError("a conv's bias is in only one of the Flax params and the mirror")
    if layer.bias is not None:
        layer.bias.copy_(_tensor(as_numpy(p["bias"])))


def copy_dense(layer: nn.Linear, p: Mapping[str, Any], *,
               chw: tuple[int, int, int] | None = None) -> None:
    """Flax dense params -> layer; chw = (c, h, w) of the flattened map before it, if any."""
    kernel = as_numpy(p["kernel"])  # [in, out]
    if chw is not None:  # rows in Flax's (h, w, c) flatten order -> torch's (c, h, w)
        c, h, w = chw
        kernel = kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(c * h * w, -1)
    layer.weight.copy_(_tensor(kernel.T))
    layer.bias.copy_(_tensor(as_numpy(p["bias"])))


def copy_batch_norm(layer: nn.BatchNorm2d, params: Mapping[str, Any],
                    stats: Mapping[str, Any]) -> None:
    """Flax BatchNorm params {'scale', 'bias'} and batch_stats {'mean', 'var'} -> layer."""
    layer.weight.copy_(_tensor(as_numpy(params["scale"])))
    layer.bias.copy_(_tensor(as_numpy(params["bias"])))
    layer.running_mean.copy_(_tensor(as_numpy(stats["mean"])))
    layer.running_var.copy_(_tensor(as_numpy(stats["var"])))


def sorted_layers(params: Mapping[str, Any], prefix: str) -> list[Mapping[str, Any]]:
    """Flax's auto-named submodules `prefix_0, prefix_1, ...` in creation order."""
    names = sorted((k for k in params if k.rsplit("_", 1)[0] == prefix),
                   key=lambda k: int(k.rsplit("_", 1)[1]))
    return [params[k] for k in names]


def out_features(p: Mapping[str, Any]) -> int:
    """The output width of a Flax conv or dense layer's params."""
    return int(np.shape(p["kernel"])[-1])


def in_features(p: Mapping[str, Any]) -> int:
    """The input width (per group) of a Flax conv or dense layer's params."""
    return int(np.shape(p["kernel"])[-2])


def infer_feature_hw(flat: int, channels: int, feature_hw: tuple[int, int] | None
                     ) -> tuple[int, int]:
    """The (h, w) of the map a first dense layer of `flat` inputs flattens: feature_hw,
    checked, or else a square map."""
    if feature_hw is not None:
        if feature_hw[0] * feature_hw[1] * channels != flat:
            raise ValueError(f"feature_hw {feature_hw} x {channels} channels != the first "
                             f"dense layer's {flat} inputs")
        return tuple(feature_hw)
    side = math.isqrt(flat // channels)
    if side * side * channels != flat:
        raise ValueError(f"{flat} dense inputs / {channels} channels is not a square map: "
                         "pass feature_hw=(h, w)")
    return side, side
