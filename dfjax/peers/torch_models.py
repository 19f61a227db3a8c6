"""PyTorch mirrors of dfjax's detectors, and `from_flax` to copy trained weights in.

The torch modules take NCHW float32 in [0, 1] and normalise inside, like the Flax
ones, so torchattacks' budgets are in the same pixel units. This module holds the
paper's plain CNNs (`cnn7`, `cnn6`) and the MesoNets (`meso4`, `mesoinception4`);
`dfjax.peers.torch_zoo` the deeper rest of the zoo (`xception`, `resnet18`, `resnet50`,
`gan_disc`); `from_flax` converts any of them. Weight layouts: see
`dfjax.peers._torch_layers`.

This module imports torch; nothing in dfjax outside dfjax.peers imports it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dfjax.peers import torch_zoo
from dfjax.peers._torch_layers import (
    Normalize,
    as_numpy,
    batch_norm,
    copy_batch_norm,
    copy_conv,
    copy_dense,
    in_features,
    infer_feature_hw,
    max_pool_2x2_repeated,
    out_features,
    sorted_layers,
)


class CNN7(nn.Module):
    """The paper's 7-layer CNN (dfjax.models.cnn7.CNN7): x [b, 3, h, w] in [0, 1] ->
    logits [b, num_logits]. 3x3 convs (ReLU, 2x2 max pool each), ReLU dense layers, the
    classifier.

    feature_hw: the spatial size (h // 2**n, w // 2**n) of the last of the n conv maps,
    which fixes the first dense layer's input width.
    """

    def __init__(self, *, num_logits: int = 2, conv_features: Sequence[int] = (16, 32, 64),
                 dense_features: Sequence[int] = (256, 128, 64),
                 feature_hw: tuple[int, int] = (8, 8), in_channels: int = 3):
        super().__init__()
        self.normalize = Normalize()
        widths = [in_channels, *conv_features]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1)
                                   for a, b in itertools.pairwise(widths))
        flat = conv_features[-1] * feature_hw[0] * feature_hw[1]
        dims = [flat, *dense_features]
        self.denses = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))
        self.head = nn.Linear(dims[-1], num_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        for conv in self.convs:
            x = F.max_pool2d(F.relu(conv(x)), 2)
        x = torch.flatten(x, 1)
        for dense in self.denses:
            x = F.relu(dense(x))
        return self.head(x)


class CNN6(CNN7):
    """The paper's 6-layer CNN (dfjax.models.cnn6.CNN6): CNN7's layout with four convs
    (16, 32, 64, 128) and one hidden dense layer (128); feature_hw = (h // 16, w // 16)."""

    def __init__(self, *, num_logits: int = 2,
                 conv_features: Sequence[int] = (16, 32, 64, 128),
                 dense_features: Sequence[int] = (128,),
                 feature_hw: tuple[int, int] = (8, 8), in_channels: int = 3):
        super().__init__(num_logits=num_logits, conv_features=conv_features,
                         dense_features=dense_features, feature_hw=feature_hw,
                         in_channels=in_channels)


class _MesoHead(nn.Module):
    """Meso's head: flatten, dense `hidden` + LeakyReLU(0.1), classifier (the dropouts
    are the identity in eval mode). flat: the flattened map's width."""

    def __init__(self, flat: int, hidden: int, num_logits: int):
        super().__init__()
        self.dense = nn.Linear(flat, hidden)
        self.head = nn.Linear(hidden, num_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.dense(torch.flatten(x, 1)), 0.1)
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
        self.normalize = Normalize()
        widths = [in_channels, *features]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, k, padding=k // 2) for a, b, k in
                                   zip(widths[:-1], widths[1:], (3, 5, 5, 5)))
        self.norms = nn.ModuleList(batch_norm(f) for f in features)
        self.pools = (2, 2, 2, 4)
        self.mlp = _MesoHead(features[-1] * feature_hw[0] * feature_hw[1], hidden, num_logits)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        for conv, norm, pool in zip(self.convs, self.norms, self.pools):
            x = max_pool_2x2_repeated(norm(F.relu(conv(x))), pool)
        return self.mlp(x)


class InceptionLayer(nn.Module):
    """MesoInception's module (dfjax.models.meso.InceptionLayer): ReLU'd branches 1x1 (a),
    1x1-3x3 (b), 1x1-3x3 dilated 2 (c), 1x1-3x3 dilated 3 (d), concatenated along
    channels (a + b + c + d). "SAME" at stride 1 is symmetric: padding = dilation."""

    def __init__(self, in_channels: int, a: int, b: int, c: int, d: int):
        super().__init__()
        self.branch_a = nn.Conv2d(in_channels, a, 1)
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels, width, 1), nn.ReLU(),
                          nn.Conv2d(width, width, 3, padding=dilation, dilation=dilation))
            for width, dilation in ((b, 1), (c, 2), (d, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.relu(self.branch_a(x)),
                          *(F.relu(branch(x)) for branch in self.branches)], dim=1)


class MesoInception4(nn.Module):
    """MesoInception-4 (Afchar et al. 2018; dfjax.models.meso.MesoInception4): x [b, 3,
    h, w] in [0, 1] -> logits [b, num_logits]. Inception layers (each + BatchNorm + 2x2
    max pool), 5x5 conv blocks (ReLU, BatchNorm, pools 2 and 4), Meso's head.

    inception: the (a, b, c, d) widths of each inception layer; feature_hw: the last
    map's (h // 32, w // 32).
    """

    def __init__(self, *, num_logits: int = 2,
                 inception: Sequence[tuple[int, int, int, int]] = ((1, 4, 4, 2), (2, 4, 4, 2)),
                 features: Sequence[int] = (16, 16), hidden: int = 16,
                 feature_hw: tuple[int, int] = (2, 2), in_channels: int = 3):
        super().__init__()
        self.normalize = Normalize()
        layers, channels = [], in_channels
        for widths in inception:
            layers.append(InceptionLayer(channels, *widths))
            channels = sum(widths)
        self.inceptions = nn.ModuleList(layers)
        self.inception_norms = nn.ModuleList(batch_norm(sum(w)) for w in inception)
        widths = [channels, *features]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 5, padding=2)
                                   for a, b in itertools.pairwise(widths))
        self.norms = nn.ModuleList(batch_norm(f) for f in features)
        self.pools = (2, 4)
        self.mlp = _MesoHead(features[-1] * feature_hw[0] * feature_hw[1], hidden, num_logits)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        for layer, norm in zip(self.inceptions, self.inception_norms):
            x = F.max_pool2d(norm(layer(x)), 2)
        for conv, norm, pool in zip(self.convs, self.norms, self.pools):
            x = max_pool_2x2_repeated(norm(F.relu(conv(x))), pool)
        return self.mlp(x)


def _plain_cnn_from_flax(variables: Mapping[str, Any], feature_hw, cls: type[CNN7]) -> CNN7:
    params = variables["params"]
    convs, denses = sorted_layers(params, "Conv"), sorted_layers(params, "Dense")
    conv_features = [out_features(p) for p in convs]
    hw = infer_feature_hw(in_features(denses[0]), conv_features[-1], feature_hw)
    model = cls(num_logits=out_features(denses[-1]), conv_features=conv_features,
                dense_features=[out_features(p) for p in denses[:-1]], feature_hw=hw,
                in_channels=in_features(convs[0]))
    with torch.no_grad():
        for layer, p in zip(model.convs, convs):
            copy_conv(layer, p)
        copy_dense(model.denses[0] if model.denses else model.head, denses[0],
                   chw=(conv_features[-1], *hw))
        for layer, p in zip([*model.denses, model.head][1:], denses[1:]):
            copy_dense(layer, p)
    return model


def _copy_meso_head(head: _MesoHead, params: Mapping[str, Any], chw: tuple[int, int, int]
                   ) -> None:
    """Flax `_MesoHead` params -> head; chw: (c, h, w) of the map it flattens."""
    copy_dense(head.dense, params["Dense_0"], chw=chw)
    copy_dense(head.head, params["Dense_1"])


def _meso_head_shape(params: Mapping[str, Any]) -> tuple[int, int, int]:
    """(flat inputs, hidden, num_logits) of Flax `_MesoHead` params."""
    return (in_features(params["Dense_0"]), out_features(params["Dense_0"]),
            out_features(params["Dense_1"]))


def _meso4_from_flax(variables: Mapping[str, Any], feature_hw) -> Meso4:
    params, stats = variables["params"], variables["batch_stats"]
    convs = sorted_layers(params, "Conv")
    features = [out_features(p) for p in convs]
    flat, hidden, num_logits = _meso_head_shape(params["_MesoHead_0"])
    hw = infer_feature_hw(flat, features[-1], feature_hw)
    model = Meso4(num_logits=num_logits, features=features, hidden=hidden, feature_hw=hw,
                  in_channels=in_features(convs[0]))
    with torch.no_grad():
        for layer, p in zip(model.convs, convs):
            copy_conv(layer, p)
        for layer, p, s in zip(model.norms, sorted_layers(params, "BatchNorm"),
                               sorted_layers(stats, "BatchNorm")):
            copy_batch_norm(layer, p, s)
        _copy_meso_head(model.mlp, params["_MesoHead_0"], (features[-1], *hw))
    return model


def _mesoinception4_from_flax(variables: Mapping[str, Any], feature_hw) -> MesoInception4:
    params, stats = variables["params"], variables["batch_stats"]
    inceptions = sorted_layers(params, "InceptionLayer")
    # each layer's convs in creation order: a 1x1; b 1x1, 3x3; c 1x1, 3x3; d 1x1, 3x3
    inception_convs = [sorted_layers(p, "Conv") for p in inceptions]
    widths = [tuple(out_features(convs[i]) for i in (0, 1, 3, 5)) for convs in inception_convs]
    convs = sorted_layers(params, "Conv")
    features = [out_features(p) for p in convs]
    flat, hidden, num_logits = _meso_head_shape(params["_MesoHead_0"])
    hw = infer_feature_hw(flat, features[-1], feature_hw)
    model = MesoInception4(num_logits=num_logits, inception=widths, features=features,
                           hidden=hidden, feature_hw=hw,
                           in_channels=in_features(inception_convs[0][0]))
    norms = list(zip(sorted_layers(params, "BatchNorm"), sorted_layers(stats, "BatchNorm")))
    with torch.no_grad():
        for layer, flax_convs in zip(model.inceptions, inception_convs):
            copy_conv(layer.branch_a, flax_convs[0])
            for branch, i in zip(layer.branches, (1, 3, 5)):
                copy_conv(branch[0], flax_convs[i])
                copy_conv(branch[2], flax_convs[i + 1])
        for layer, (p, s) in zip([*model.inception_norms, *model.norms], norms):
            copy_batch_norm(layer, p, s)
        for layer, p in zip(model.convs, convs):
            copy_conv(layer, p)
        _copy_meso_head(model.mlp, params["_MesoHead_0"], (features[-1], *hw))
    return model


_CONVERTERS = {
    "cnn7": lambda variables, feature_hw: _plain_cnn_from_flax(variables, feature_hw, CNN7),
    "cnn6": lambda variables, feature_hw: _plain_cnn_from_flax(variables, feature_hw, CNN6),
    "meso4": _meso4_from_flax,
    "mesoinception4": _mesoinception4_from_flax,
    **torch_zoo.CONVERTERS,
}
_VARIANT_SUFFIXES = ("_tiny", "_small")


def from_flax(name: str, variables: Mapping[str, Any], *,
              feature_hw: tuple[int, int] | None = None) -> nn.Module:
    """The torch mirror of dfjax model `name` (e.g. "cnn7", "meso4", "resnet50",
    "xception_small", "gan_disc_tiny") with the Flax `variables` copied in; returned in
    eval mode, float32, NCHW in [0, 1].

    Widths, depths and num_logits are read from the variables' shapes. feature_hw, for
    the models that flatten their last map into a dense layer (cnn7, cnn6, meso4,
    mesoinception4, gan_disc), is that map's (h, w) and defaults to a square map
    inferred from the dense layer; the global-pooling ones (xception, resnets) take
    any input size and refuse a feature_hw.

    Example:
        >>> torch_model = from_flax("cnn7", variables)
        >>> logits = torch_model(torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2)))
    """
    base = name
    for suffix in _VARIANT_SUFFIXES:
        base = base.removesuffix(suffix)
    if base not in _CONVERTERS:
        raise ValueError(f"no torch mirror of model {name!r}; mirrors: {sorted(_CONVERTERS)}")
    return _CONVERTERS[base](variables, feature_hw).eval()


def nhwc_to_nchw(x: Any) -> torch.Tensor:
    """float32 [b, h, w, c] (numpy or jax) -> a contiguous torch [b, c, h, w]."""
    return torch.from_numpy(np.ascontiguousarray(as_numpy(x).transpose(0, 3, 1, 2)))


def nchw_to_nhwc(x: torch.Tensor) -> np.ndarray:
    """torch [b, c, h, w] -> numpy float32 [b, h, w, c]."""
    return np.ascontiguousarray(x.detach().cpu().numpy().transpose(0, 2, 3, 1))


__all__ = ["CNN6", "CNN7", "Meso4", "MesoInception4", "from_flax", "nchw_to_nhwc", "nhwc_to_nchw"]
