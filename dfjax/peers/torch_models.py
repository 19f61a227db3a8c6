"""PyTorch mirrors of dfjax's `cnn7` and `meso4`, and `from_flax` to copy trained weights.

The torch modules take NCHW float32 in [0, 1] and normalise inside, like the Flax
ones, so torchattacks' budgets are in the same pixel units. Weight layouts:
Flax conv kernel [kh, kw, in, out] (HWIO) -> torch [out, in, kh, kw] (OIHW); Flax
dense kernel [in, out] -> torch [out, in]; the first dense layer after the flatten
also has its input rows permuted, because Flax flattens the NHWC feature map in
(h, w, c) order and torch flattens NCHW in (c, h, w) order.

This module imports torch; nothing else in dfjax imports it.
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


def _normalize(x: torch.Tensor) -> torch.Tensor:
    """dfjax's Normalize(): (x - 0.5) / 0.25."""
    return (x - 0.5) / 0.25


class CNN7(nn.Module):
    """The paper's 7-layer CNN (dfjax.models.cnn7.CNN7): x [b, 3, h, w] in [0, 1] ->
    logits [b, num_logits].

    feature_hw: the spatial size (h // 8, w // 8) of the last conv map, which fixes the
    first dense layer's input width.
    """

    def __init__(self, *, num_logits: int = 2, conv_features: Sequence[int] = (16, 32, 64),
                 dense_features: Sequence[int] = (256, 128, 64),
                 feature_hw: tuple[int, int] = (8, 8), in_channels: int = 3):
        super().__init__()
        widths = [in_channels, *conv_features]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1)
                                   for a, b in zip(widths[:-1], widths[1:]))
        flat = conv_features[-1] * feature_hw[0] * feature_hw[1]
        dims = [flat, *dense_features]
        self.denses = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.head = nn.Linear(dims[-1], num_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _normalize(x)
        for conv in self.convs:
            x = F.max_pool2d(F.relu(conv(x)), 2)
        x = torch.flatten(x, 1)
        for dense in self.denses:
            x = F.relu(dense(x))
        return self.head(x)


class Meso4(nn.Module):
    """Meso-4 (Afchar et al. 2018, arXiv:1809.00888; dfjax.models.meso.Meso4): x [b, 3,
    h, w] in [0, 1] -> logits [b, num_logits]. Conv (3x3, 5x5, 5x5, 5x5), ReLU,
    BatchNorm (eval mode: running statistics), max pools 2, 2, 2, 4; then dense
    `hidden` + LeakyReLU(0.1) and the classifier (dropout is the identity in eval).

    feature_hw: the spatial size (h // 32, w // 32) of the last map.
    """

    def __init__(self, *, num_logits: int = 2, features: Sequence[int] = (8, 8, 16, 16),
                 hidden: int = 16, feature_hw: tuple[int, int] = (2, 2), in_channels: int = 3):
        super().__init__()
        widths = [in_channels, *features]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, k, padding=k // 2) for a, b, k in
                                   zip(widths[:-1], widths[1:], (3, 5, 5, 5)))
        self.norms = nn.ModuleList(nn.BatchNorm2d(f, eps=BATCH_NORM_EPSILON) for f in features)
        self.pools = (2, 2, 2, 4)
        self.dense = nn.Linear(features[-1] * feature_hw[0] * feature_hw[1], hidden)
        self.head = nn.Linear(hidden, num_logits)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _normalize(x)
        for conv, norm, pool in zip(self.convs, self.norms, self.pools):
            x = norm(F.relu(conv(x)))
            while pool > 1:  # as dfjax: repeated 2x2 pools (odd rows dropped at each)
                x = F.max_pool2d(x, 2)
                pool //= 2
        x = torch.flatten(x, 1)
        x = F.leaky_relu(self.dense(x), 0.1)
        return self.head(x)


def _np(a: Any) -> np.ndarray:
    return np.array(a, np.float32)  # a writable copy (jax arrays are read-only)


def _conv(layer: nn.Conv2d, p: Mapping[str, Any]) -> None:
    layer.weight.copy_(torch.from_numpy(_np(p["kernel"]).transpose(3, 2, 0, 1).copy()))
    layer.bias.copy_(torch.from_numpy(_np(p["bias"])))


def _dense(layer: nn.Linear, p: Mapping[str, Any], *, chw: tuple[int, int, int] | None = None
           ) -> None:
    kernel = _np(p["kernel"])  # [in, out]
    if chw is not None:  # rows in Flax's (h, w, c) flatten order -> torch's (c, h, w)
        c, h, w = chw
        kernel = kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(c * h * w, -1)
    layer.weight.copy_(torch.from_numpy(kernel.T.copy()))
    layer.bias.copy_(torch.from_numpy(_np(p["bias"])))


def _feature_hw(flat: int, channels: int, feature_hw: tuple[int, int] | None
                ) -> tuple[int, int]:
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


def _sorted_layers(params: Mapping[str, Any], prefix: str) -> list[Mapping[str, Any]]:
    names = sorted((k for k in params if k.startswith(prefix + "_")),
                   key=lambda k: int(k.rsplit("_", 1)[1]))
    return [params[k] for k in names]


def _cnn7_from_flax(variables: Mapping[str, Any], feature_hw) -> CNN7:
    params = variables["params"]
    convs, denses = _sorted_layers(params, "Conv"), _sorted_layers(params, "Dense")
    conv_features = [int(np.shape(p["kernel"])[-1]) for p in convs]
    dense_features = [int(np.shape(p["kernel"])[-1]) for p in denses[:-1]]
    hw = _feature_hw(int(np.shape(denses[0]["kernel"])[0]), conv_features[-1], feature_hw)
    model = CNN7(num_logits=int(np.shape(denses[-1]["kernel"])[-1]),
                 conv_features=conv_features, dense_features=dense_features, feature_hw=hw,
                 in_channels=int(np.shape(convs[0]["kernel"])[2]))
    with torch.no_grad():
        for layer, p in zip(model.convs, convs):
            _conv(layer, p)
        _dense(model.denses[0] if model.denses else model.head, denses[0],
               chw=(conv_features[-1], *hw))
        for layer, p in zip([*model.denses, model.head][1:], denses[1:]):
            _dense(layer, p)
    return model


def _meso4_from_flax(variables: Mapping[str, Any], feature_hw) -> Meso4:
    params, stats = variables["params"], variables["batch_stats"]
    convs = _sorted_layers(params, "Conv")
    norms = _sorted_layers(params, "BatchNorm")
    norm_stats = _sorted_layers(stats, "BatchNorm")
    head = params["_MesoHead_0"]
    features = [int(np.shape(p["kernel"])[-1]) for p in convs]
    hw = _feature_hw(int(np.shape(head["Dense_0"]["kernel"])[0]), features[-1], feature_hw)
    model = Meso4(num_logits=int(np.shape(head["Dense_1"]["kernel"])[-1]), features=features,
                  hidden=int(np.shape(head["Dense_0"]["kernel"])[-1]), feature_hw=hw,
                  in_channels=int(np.shape(convs[0]["kernel"])[2]))
    with torch.no_grad():
        for layer, p in zip(model.convs, convs):
            _conv(layer, p)
        for layer, p, s in zip(model.norms, norms, norm_stats):
            layer.weight.copy_(torch.from_numpy(_np(p["scale"])))
            layer.bias.copy_(torch.from_numpy(_np(p["bias"])))
            layer.running_mean.copy_(torch.from_numpy(_np(s["mean"])))
            layer.running_var.copy_(torch.from_numpy(_np(s["var"])))
        _dense(model.dense, head["Dense_0"], chw=(features[-1], *hw))
        _dense(model.head, head["Dense_1"])
    return model


_CONVERTERS = {"cnn7": _cnn7_from_flax, "meso4": _meso4_from_flax}


def from_flax(name: str, variables: Mapping[str, Any], *,
              feature_hw: tuple[int, int] | None = None) -> nn.Module:
    """The torch mirror of dfjax model `name` (e.g. "cnn7", "meso4", "cnn7_tiny") with
    the Flax `variables` copied in; returned in eval mode, float32, NCHW in [0, 1].

    Widths and num_logits are read from the variables' shapes; feature_hw (the last
    conv map's (h, w)) defaults to a square map inferred from the first dense layer.

    Example:
        >>> torch_model = from_flax("cnn7", variables)
        >>> logits = torch_model(torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2)))
    """
    base = name.removesuffix("_tiny")
    if base not in _CONVERTERS:
        raise ValueError(f"no torch mirror of model {name!r}; mirrors: {sorted(_CONVERTERS)}")
    return _CONVERTERS[base](variables, feature_hw).eval()


def nhwc_to_nchw(x: Any) -> torch.Tensor:
    """float32 [b, h, w, c] (numpy or jax) -> a contiguous torch [b, c, h, w]."""
    return torch.from_numpy(np.ascontiguousarray(_np(x).transpose(0, 3, 1, 2)))


def nchw_to_nhwc(x: torch.Tensor) -> np.ndarray:
    """torch [b, c, h, w] -> numpy float32 [b, h, w, c]."""
    return np.ascontiguousarray(x.detach().cpu().numpy().transpose(0, 2, 3, 1))


__all__ = ["CNN7", "Meso4", "from_flax", "nchw_to_nhwc", "nhwc_to_nchw"]
