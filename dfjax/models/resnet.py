"""ResNets (He et al. 2016, "Deep Residual Learning for Image Recognition",
arXiv:1512.03385), laid out like torchvision's (v1.5: stride on the 3x3 conv) so
ImageNet weights convert 1:1 (see `dfjax.models.pretrained`)."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from dfjax.models._common import Normalize
from dfjax.types import Images, Logits

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _bn(train: bool, name: str, zero_init: bool = False) -> nn.BatchNorm:
    # torch: eps 1e-5, momentum 0.1 (= flax momentum 0.9)
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name,
                        scale_init=nn.initializers.zeros if zero_init else nn.initializers.ones)


def _conv(features: int, kernel: int, stride: int, name: str) -> nn.Conv:
    pad = kernel // 2  # torch-style symmetric padding (flax SAME is asymmetric at stride 2)
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                   padding=((pad, pad), (pad, pad)), use_bias=False, name=name)


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34); projection shortcut when the shape changes."""

    features: int
    stride: int = 1
    expansion = 1

    @nn.compact
    def __call__(self, x, train: bool):
        out = nn.relu(_bn(train, "bn1")(_conv(self.features, 3, self.stride, "conv1")(x)))
        out = _bn(train, "bn2")(_conv(self.features, 3, 1, "conv2")(out))
        if self.stride != 1 or x.shape[-1] != self.features:
            x = _bn(train, "downsample_bn")(_conv(self.features, 1, self.stride,
                                                  "downsample_conv")(x))
        return nn.relu(out + x)


class Bottleneck(nn.Module):
    """1x1 - 3x3 (strided) - 1x1 x4 (ResNet-50/101/152, torchvision v1.5 layout)."""

    features: int
    stride: int = 1
    expansion = 4

    @nn.compact
    def __call__(self, x, train: bool):
        out_features = self.features * self.expansion
        out = nn.relu(_bn(train, "bn1")(_conv(self.features, 1, 1, "conv1")(x)))
        out = nn.relu(_bn(train, "bn2")(_conv(self.features, 3, self.stride, "conv2")(out)))
        out = _bn(train, "bn3")(_conv(out_features, 1, 1, "conv3")(out))
        if self.stride != 1 or x.shape[-1] != out_features:
            x = _bn(train, "downsample_bn")(_conv(out_features, 1, self.stride,
                                                  "downsample_conv")(x))
        return nn.relu(out + x)


class ResNet(nn.Module):
    """x float32 [b, h, w, 3] in [0, 1] -> logits [b, num_logits].

    Stem conv 7x7/2 + BN + ReLU + max pool 3x3/2, then stages of `block`s (widths
    `width * 2**i`, stride 2 from the second stage), global average pool, and the
    head `fc` (replaced when fine-tuning ImageNet weights). ImageNet mean/std
    normalisation inside. Module names follow torchvision: `layer{i}_{j}` etc.
    """

    num_logits: int = 2
    stage_sizes: tuple[int, ...] = (3, 4, 6, 3)
    block: str = "bottleneck"
    width: int = 64

    @nn.compact
    def __call__(self, x: Images, train: bool = False) -> Logits:
        block_cls = {"basic": BasicBlock, "bottleneck": Bottleneck}[self.block]
        x = Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)(x)
        x = nn.relu(_bn(train, "bn1")(_conv(self.width, 7, 2, "conv1")(x)))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for i, blocks in enumerate(self.stage_sizes):
            for j in range(blocks):
                stride = 2 if i > 0 and j == 0 else 1
                x = block_cls(self.width * 2**i, stride, name=f"layer{i + 1}_{j}")(x, train)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_logits, name="fc")(x)
