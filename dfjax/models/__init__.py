"""Detectors by name: `MODELS.get(name)(num_logits=2)` -> a Flax linen module.

Every model takes float32 NHWC in [0, 1] and normalises inside; `apply(variables,
x, train=False)` is the pure forward pass attacks differentiate.
"""

from __future__ import annotations

import functools

import flax.linen as nn

from dfjax.config import ModelSpec
from dfjax.models._common import Normalize, make_logits_fn, max_pool_2x2
from dfjax.models.cnn6 import CNN6
from dfjax.models.cnn7 import CNN7
from dfjax.models.gan import DCGANDiscriminator, DCGANGenerator
from dfjax.models.meso import Meso4, MesoInception4
from dfjax.models.resnet import ResNet
from dfjax.models.xception import Xception
from dfjax.registry import Registry

MODELS: Registry = Registry("model")

MODELS.register("cnn7", CNN7)
MODELS.register("cnn7_tiny", functools.partial(CNN7, conv_features=(4, 8, 8),
                                                dense_features=(16, 16, 8)))
MODELS.register("cnn6", CNN6)
MODELS.register("cnn6_tiny", functools.partial(CNN6, conv_features=(4, 8, 8, 8),
                                                dense_features=16))
MODELS.register("meso4", Meso4)
MODELS.register("meso4_tiny", functools.partial(Meso4, features=(4, 4, 8, 8), hidden=8))
MODELS.register("mesoinception4", MesoInception4)
MODELS.register("mesoinception4_tiny", functools.partial(
    MesoInception4, inception=((1, 2, 2, 1), (1, 2, 2, 1)), features=(8, 8), hidden=8))
MODELS.register("xception", Xception)
MODELS.register("xception_small", functools.partial(Xception, width=0.25, middle_blocks=4))
MODELS.register("xception_tiny", functools.partial(Xception, width=1 / 32, middle_blocks=1))
MODELS.register("resnet18", functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block="basic"))
MODELS.register("resnet18_tiny", functools.partial(ResNet, stage_sizes=(1, 1), block="basic",
                                                    width=8))
MODELS.register("resnet50", functools.partial(ResNet, stage_sizes=(3, 4, 6, 3),
                                              block="bottleneck"))
MODELS.register("resnet50_tiny", functools.partial(ResNet, stage_sizes=(1, 1, 1),
                                                   block="bottleneck", width=4))
MODELS.register("gan_disc", DCGANDiscriminator)
MODELS.register("gan_disc_tiny", functools.partial(DCGANDiscriminator, features=(8, 16)))


def build_model(spec: ModelSpec) -> nn.Module:
    """The module a ModelSpec names; its options are passed as module attributes."""
    if spec.num_logits not in (1, 2):
        raise ValueError(f"num_logits must be 1 or 2, got {spec.num_logits}")
    return MODELS.get(spec.name)(num_logits=spec.num_logits, **dict(spec.options))


__all__ = [
    "CNN6",
    "CNN7",
    "MODELS",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "Meso4",
    "MesoInception4",
    "Normalize",
    "ResNet",
    "Xception",
    "build_model",
    "make_logits_fn",
    "max_pool_2x2",
]
