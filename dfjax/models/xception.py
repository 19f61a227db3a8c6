"""Xception (Chollet 2017, "Xception: Deep Learning with Depthwise Separable
Convolutions", arXiv:1610.02357): entry, middle and exit flows of separable convs.

Under attack (fast=True, default, eval mode) every BatchNorm folds into the conv before
it (the pointwise conv of a separable conv), depthwise convs run as shifted
multiply-adds, the 3x3/2 max pools as strided slices, and convs to 2x2 maps as a GEMM
(models/_cpu_kernels.py; measured with bench/bench_layers.py, see docs/architecture.md).
Training with fast=True uses the same convs and pools (the same function up to float32
rounding) with nn.BatchNorm on batch statistics, which cannot fold.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from dfjax.models._common import Normalize
from dfjax.models._cpu_kernels import (
    BatchNormVariables,
    ConvKernel,
    conv_fast,
    depthwise_conv,
    fold_batch_norm,
    max_pool_3x3_stride2,
)
from dfjax.types import Images, Logits

BN_EPSILON = 1e-5  # nn.BatchNorm's default


class SeparableConv(nn.Module):
    """Depthwise 3x3 conv then pointwise 1x1 conv (no bias: BatchNorm follows).

    fused=True returns the two kernels ([3, 3, 1, c], [1, 1, c, features]) instead of
    convolving: for the fast path, which folds the BatchNorm after it into the pointwise
    kernel (the same variables either way)."""

    features: int
    fused: bool = False

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        if self.fused:
            return (ConvKernel(c, 3, feature_group_count=c, name="depthwise")(c),
                    ConvKernel(self.features, 1, name="pointwise")(c))
        x = nn.Conv(c, (3, 3), padding="SAME", feature_group_count=c,
                    use_bias=False, name="depthwise")(x)
        return nn.Conv(self.features, (1, 1), use_bias=False, name="pointwise")(x)


def _bn(train: bool, name: str) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=BN_EPSILON,
                        name=name)


def _same_pads(x, kernel: int, stride: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The pads of flax/XLA "SAME" padding for x [b, h, w, c]."""
    pads = lax.padtype_to_pads(x.shape[1:3], (kernel, kernel), (stride, stride), "SAME")
    return tuple(map(tuple, pads))


def _folded(x, kernel, batch_norm: BatchNormVariables, stride: int):
    """BatchNorm(conv(x, kernel)) (SAME) with the BatchNorm folded into the conv."""
    kernel, bias = fold_batch_norm(kernel, *batch_norm(), BN_EPSILON)
    out = conv_fast(x, kernel.astype(x.dtype), stride, _same_pads(x, kernel.shape[0], stride))
    return out + bias.astype(x.dtype).reshape(1, 1, 1, -1)


def conv_bn(x, features: int, kernel: int, stride: int, names: tuple[str, str], *,
            train: bool, fast: bool):
    """BatchNorm(nn.Conv(features, (kernel, kernel), stride, SAME, no bias)(x)); with
    `fast` the conv computed by conv_fast and, in eval mode, the BatchNorm folded into it.
    Called inside a module."""
    if not fast:
        conv = nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding="SAME",
                       use_bias=False, name=names[0])
        return _bn(train, names[1])(conv(x))
    weights = ConvKernel(features, kernel, name=names[0])(x.shape[-1])
    if train:  # batch statistics: nothing to fold
        conv = conv_fast(x, weights.astype(x.dtype), stride, _same_pads(x, kernel, stride))
        return _bn(train, names[1])(conv)
    return _folded(x, weights, BatchNormVariables(features, name=names[1]), stride)


def separable_bn(x, features: int, names: tuple[str, str], *, train: bool, fast: bool):
    """BatchNorm(SeparableConv(features)(x)); with `fast`, the depthwise conv as shifted
    multiply-adds and, in eval mode, the BatchNorm folded into the pointwise conv."""
    if not fast:
        return _bn(train, names[1])(SeparableConv(features, name=names[0])(x))
    depthwise, pointwise = SeparableConv(features, fused=True, name=names[0])(x)
    x = depthwise_conv(x, depthwise.astype(x.dtype), _same_pads(x, 3, 1))
    if train:  # batch statistics: nothing to fold
        return _bn(train, names[1])(conv_fast(x, pointwise.astype(x.dtype), 1, ((0, 0), (0, 0))))
    return _folded(x, pointwise, BatchNormVariables(features, name=names[1]), 1)


def _max_pool_3x3_s2(x, fast: bool):
    if fast:
        return max_pool_3x3_stride2(x, _same_pads(x, 3, 2))
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")


class DownBlock(nn.Module):
    """[ReLU] sepconv-BN-ReLU-sepconv-BN, 3x3/2 max pool, plus a strided 1x1 residual."""

    features: tuple[int, int]
    relu_first: bool = True
    fast: bool = True

    @nn.compact
    def __call__(self, x, train: bool):
        options = {"train": train, "fast": self.fast}
        residual = conv_bn(x, self.features[1], 1, 2, ("Conv_0", "BatchNorm_0"), **options)
        if self.relu_first:
            x = nn.relu(x)
        x = nn.relu(separable_bn(x, self.features[0], ("SeparableConv_0", "BatchNorm_1"),
                                 **options))
        x = separable_bn(x, self.features[1], ("SeparableConv_1", "BatchNorm_2"), **options)
        return _max_pool_3x3_s2(x, self.fast) + residual


class MiddleBlock(nn.Module):
    """Three ReLU-sepconv-BN units with an identity residual."""

    features: int
    fast: bool = True

    @nn.compact
    def __call__(self, x, train: bool):
        residual = x
        for i in range(3):
            x = separable_bn(nn.relu(x), self.features, (f"SeparableConv_{i}", f"BatchNorm_{i}"),
                             train=train, fast=self.fast)
        return x + residual


class Xception(nn.Module):
    """x float32 [b, h, w, 3] in [0, 1] -> logits [b, num_logits].

    Entry flow: conv 3x3/2 (32), conv 3x3 (64), down blocks 128, 256, 728; middle
    flow: `middle_blocks` (8 in the paper) blocks of 728; exit flow: down block
    (728, 1024), sepconvs 1536 and 2048, global average pool, classifier. All widths
    are multiplied by `width` (1.0 = the paper). Convs are SAME-padded (the paper's
    first two are VALID) so 32x32 inputs work; ImageNet mean/std normalisation.

    fast=True (default) computes with the fast layers (see the module docstring): the
    same function, up to float32 rounding, and the same variables; fast=False uses the
    plain layers (the reference, and the FLOP count of dfjax.benchmarks.plain_model).
    """

    num_logits: int = 2
    width: float = 1.0
    middle_blocks: int = 8
    fast: bool = True

    @nn.compact
    def __call__(self, x: Images, train: bool = False) -> Logits:
        def w(n: int) -> int:
            return max(4, round(n * self.width))

        options = {"train": train, "fast": self.fast}
        x = Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))(x)
        x = nn.relu(conv_bn(x, w(32), 3, 2, ("Conv_0", "BatchNorm_0"), **options))
        x = nn.relu(conv_bn(x, w(64), 3, 1, ("Conv_1", "BatchNorm_1"), **options))
        blocks = [((w(128), w(128)), False), ((w(256), w(256)), True), ((w(728), w(728)), True)]
        for i, (features, relu_first) in enumerate(blocks):
            x = DownBlock(features, relu_first, self.fast, name=f"DownBlock_{i}")(x, train)
        for i in range(self.middle_blocks):
            x = MiddleBlock(w(728), self.fast, name=f"MiddleBlock_{i}")(x, train)
        x = DownBlock((w(728), w(1024)), fast=self.fast, name="DownBlock_3")(x, train)
        x = nn.relu(separable_bn(x, w(1536), ("SeparableConv_0", "BatchNorm_2"), **options))
        x = nn.relu(separable_bn(x, w(2048), ("SeparableConv_1", "BatchNorm_3"), **options))
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_logits, name="Dense_0")(x)
