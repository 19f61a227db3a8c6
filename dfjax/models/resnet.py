"""ResNets (He et al. 2016, "Deep Residual Learning for Image Recognition",
arXiv:1512.03385), laid out like torchvision's (v1.5: stride on the 3x3 conv) so
ImageNet weights convert 1:1 (see `dfjax.models.pretrained`).

Under attack (fast=True, default, eval mode) each conv + BatchNorm runs with the
BatchNorm folded into the conv's kernel and bias, convs to 2x2 maps as a GEMM, the stem
in space-to-depth form and the stem's ReLU + max pool as one pass over strided slices
(models/_cpu_kernels.py; measured with bench/bench_layers.py, see docs/architecture.md).
Training with fast=True uses the same convs and pool (the same function up to float32
rounding) with nn.BatchNorm on batch statistics, which cannot fold.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from dfjax.models._common import Normalize
from dfjax.models._cpu_kernels import (
    BatchNormVariables,
    ConvKernel,
    conv_fast,
    fold_batch_norm,
    max_pool_3x3_stride2,
)
from dfjax.types import Images, Logits

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BN_EPSILON = 1e-5  # torch's


def _bn(train: bool, name: str, zero_init: bool = False) -> nn.BatchNorm:
    # torch: eps 1e-5, momentum 0.1 (= flax momentum 0.9)
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=BN_EPSILON,
                        name=name,
                        scale_init=nn.initializers.zeros if zero_init else nn.initializers.ones)


def _conv(features: int, kernel: int, stride: int, name: str) -> nn.Conv:
    pad = kernel // 2  # torch-style symmetric padding (flax SAME is asymmetric at stride 2)
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                   padding=((pad, pad), (pad, pad)), use_bias=False, name=name)


def conv_bn(x: jnp.ndarray, features: int, kernel: int, stride: int, names: tuple[str, str],
            *, train: bool, fast: bool, zero_init: bool = False) -> jnp.ndarray:
    """BatchNorm(conv(x)) with the variables of `_conv(.., name=names[0])` and
    `_bn(.., name=names[1])`; with `fast`, the conv computed by conv_fast and, in eval
    mode, the BatchNorm folded into it (fold_batch_norm). Called inside a module."""
    if not fast:
        return _bn(train, names[1], zero_init)(_conv(features, kernel, stride, names[0])(x))
    pad = kernel // 2
    weights = ConvKernel(features, kernel, name=names[0])(x.shape[-1])
    if train:  # batch statistics: nothing to fold
        conv = conv_fast(x, weights.astype(x.dtype), stride, ((pad, pad), (pad, pad)))
        return _bn(train, names[1], zero_init)(conv)
    scale_init = nn.initializers.zeros if zero_init else nn.initializers.ones
    batch_norm = BatchNormVariables(features, scale_init=scale_init, name=names[1])()
    weights, bias = fold_batch_norm(weights, *batch_norm, BN_EPSILON)
    out = conv_fast(x, weights.astype(x.dtype), stride, ((pad, pad), (pad, pad)))
    return out + bias.astype(x.dtype).reshape(1, 1, 1, -1)


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34); projection shortcut when the shape changes."""

    features: int
    stride: int = 1
    fast: bool = True
    expansion = 1

    @nn.compact
    def __call__(self, x, train: bool):
        options = {"train": train, "fast": self.fast}
        out = nn.relu(conv_bn(x, self.features, 3, self.stride, ("conv1", "bn1"), **options))
        out = conv_bn(out, self.features, 3, 1, ("conv2", "bn2"), **options)
        if self.stride != 1 or x.shape[-1] != self.features:
            x = conv_bn(x, self.features, 1, self.stride, ("downsample_conv", "downsample_bn"),
                        **options)
        return nn.relu(out + x)


class Bottleneck(nn.Module):
    """1x1 - 3x3 (strided) - 1x1 x4 (ResNet-50/101/152, torchvision v1.5 layout)."""

    features: int
    stride: int = 1
    fast: bool = True
    expansion = 4

    @nn.compact
    def __call__(self, x, train: bool):
        options = {"train": train, "fast": self.fast}
        out_features = self.features * self.expansion
        out = nn.relu(conv_bn(x, self.features, 1, 1, ("conv1", "bn1"), **options))
        out = nn.relu(conv_bn(out, self.features, 3, self.stride, ("conv2", "bn2"), **options))
        out = conv_bn(out, out_features, 1, 1, ("conv3", "bn3"), **options)
        if self.stride != 1 or x.shape[-1] != out_features:
            x = conv_bn(x, out_features, 1, self.stride, ("downsample_conv", "downsample_bn"),
                        **options)
        return nn.relu(out + x)


class ResNet(nn.Module):
    """x float32 [b, h, w, 3] in [0, 1] -> logits [b, num_logits].

    Stem conv 7x7/2 + BN + ReLU + max pool 3x3/2, then stages of `block`s (widths
    `width * 2**i`, stride 2 from the second stage), global average pool, and the
    head `fc` (replaced when fine-tuning ImageNet weights). ImageNet mean/std
    normalisation inside. Module names follow torchvision: `layer{i}_{j}` etc.

    fast=True (default) computes with the fast layers (see the module docstring): the
    same function, up to float32 rounding, and the same variables; fast=False uses the
    plain layers (the reference, and the FLOP count of dfjax.benchmarks.plain_model).
    """

    num_logits: int = 2
    stage_sizes: tuple[int, ...] = (3, 4, 6, 3)
    block: str = "bottleneck"
    width: int = 64
    fast: bool = True

    @nn.compact
    def __call__(self, x: Images, train: bool = False) -> Logits:
        block_cls = {"basic": BasicBlock, "bottleneck": Bottleneck}[self.block]
        x = Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)(x)
        x = conv_bn(x, self.width, 7, 2, ("conv1", "bn1"), train=train, fast=self.fast)
        if not self.fast:
            x = nn.max_pool(nn.relu(x), (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        else:
            x = max_pool_3x3_stride2(x, ((1, 1), (1, 1)), True)  # the ReLU folded in
        for i, blocks in enumerate(self.stage_sizes):
            for j in range(blocks):
                stride = 2 if i > 0 and j == 0 else 1
                x = block_cls(self.width * 2**i, stride, fast=self.fast,
                              name=f"layer{i + 1}_{j}")(x, train)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_logits, name="fc")(x)
