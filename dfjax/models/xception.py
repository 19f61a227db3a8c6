"""Xception (Chollet 2017, "Xception: Deep Learning with Depthwise Separable
Convolutions", arXiv:1610.02357): entry, middle and exit flows of separable convs."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from dfjax.models._common import Normalize
from dfjax.types import Images, Logits


class SeparableConv(nn.Module):
    """Depthwise 3x3 conv then pointwise 1x1 conv (no bias: BatchNorm follows)."""

    features: int

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(x.shape[-1], (3, 3), padding="SAME", feature_group_count=x.shape[-1],
                    use_bias=False, name="depthwise")(x)
        return nn.Conv(self.features, (1, 1), use_bias=False, name="pointwise")(x)


def _bn(train: bool) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9)


def _max_pool_3x3_s2(x):
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")


class DownBlock(nn.Module):
    """[ReLU] sepconv-BN-ReLU-sepconv-BN, 3x3/2 max pool, plus a strided 1x1 residual."""

    features: tuple[int, int]
    relu_first: bool = True

    @nn.compact
    def __call__(self, x, train: bool):
        residual = _bn(train)(nn.Conv(self.features[1], (1, 1), strides=(2, 2),
                                      use_bias=False)(x))
        if self.relu_first:
            x = nn.relu(x)
        x = nn.relu(_bn(train)(SeparableConv(self.features[0])(x)))
        x = _bn(train)(SeparableConv(self.features[1])(x))
        return _max_pool_3x3_s2(x) + residual


class MiddleBlock(nn.Module):
    """Three ReLU-sepconv-BN units with an identity residual."""

    features: int

    @nn.compact
    def __call__(self, x, train: bool):
        residual = x
        for _ in range(3):
            x = _bn(train)(SeparableConv(self.features)(nn.relu(x)))
        return x + residual


class Xception(nn.Module):
    """x float32 [b, h, w, 3] in [0, 1] -> logits [b, num_logits].

    Entry flow: conv 3x3/2 (32), conv 3x3 (64), down blocks 128, 256, 728; middle
    flow: `middle_blocks` (8 in the paper) blocks of 728; exit flow: down block
    (728, 1024), sepconvs 1536 and 2048, global average pool, classifier. All widths
    are multiplied by `width` (1.0 = the paper). Convs are SAME-padded (the paper's
    first two are VALID) so 32x32 inputs work; ImageNet mean/std normalisation.
    """

    num_logits: int = 2
    width: float = 1.0
    middle_blocks: int = 8

    @nn.compact
    def __call__(self, x: Images, train: bool = False) -> Logits:
        def w(n: int) -> int:
            return max(4, round(n * self.width))

        x = Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))(x)
        x = nn.relu(_bn(train)(nn.Conv(w(32), (3, 3), strides=(2, 2), padding="SAME",
                                       use_bias=False)(x)))
        x = nn.relu(_bn(train)(nn.Conv(w(64), (3, 3), padding="SAME", use_bias=False)(x)))
        x = DownBlock((w(128), w(128)), relu_first=False)(x, train)
        x = DownBlock((w(256), w(256)))(x, train)
        x = DownBlock((w(728), w(728)))(x, train)
        for _ in range(self.middle_blocks):
            x = MiddleBlock(w(728))(x, train)
        x = DownBlock((w(728), w(1024)))(x, train)
        x = nn.relu(_bn(train)(SeparableConv(w(1536))(x)))
        x = nn.relu(_bn(train)(SeparableConv(w(2048))(x)))
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_logits)(x)
