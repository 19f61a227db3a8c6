"""Detectors by name: `build_model(ModelSpec(name=...))` -> a Flax linen module.

Every model takes float32 NHWC in [0, 1] and normalises inside; `apply(variables,
x, train=False)` is the pure forward pass attacks differentiate.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable
from typing import Any

import flax.linen as nn

from dfjax.config import ModelSpec
from dfjax.models._common import Normalize, count_parameters, make_logits_fn, max_pool_2x2
from dfjax.models.cnn6 import CNN6
from dfjax.models.cnn7 import CNN7
from dfjax.models.gan import DCGANDiscriminator, DCGANGenerator
from dfjax.models.meso import Meso4, MesoInception4
from dfjax.models.resnet import ResNet
from dfjax.models.xception import Xception
from dfjax.registry import Entry, Registry


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelEntry(Entry):
    """A detector architecture: `module(num_logits=..., **options)` -> a Flax module.
    Its options are the module's attributes (defaults from the class, or from the
    partial's keywords for a registered variant); a value must have its default's type."""

    module: Callable[..., nn.Module]

    @classmethod
    def of(cls, module: Callable[..., nn.Module]) -> ModelEntry:
        base = module.func if isinstance(module, functools.partial) else module
        options = {f.name: f.default for f in dataclasses.fields(base)
                   if f.name not in ("parent", "name", "num_logits") and f.init
                   and f.default is not dataclasses.MISSING}
        if isinstance(module, functools.partial):
            options.update(module.keywords)
        paragraph = (sys.modules[base.__module__].__doc__ or "").strip().split("\n\n")[0]
        return cls(module=module, options=options, check=functools.partial(_check_types, options),
                   description=" ".join(paragraph.split()))

    def build(self, spec: ModelSpec) -> nn.Module:
        return self.module(num_logits=spec.num_logits, **dict(spec.options))


def _check_types(defaults: dict[str, Any], options: dict[str, Any]) -> None:
    for name, value in options.items():
        default = defaults[name]
        if default is None or isinstance(value, type(default)):
            continue
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            continue
        raise ValueError(f"option {name} must be a {type(default).__name__} like its default "
                         f"{default!r}, got {value!r}")


MODELS: Registry[ModelEntry] = Registry("model")
for _name, _module in (
    ("cnn7", CNN7),
    ("cnn7_tiny", functools.partial(CNN7, conv_features=(4, 8, 8), dense_features=(16, 16, 8))),
    ("cnn6", CNN6),
    ("cnn6_tiny", functools.partial(CNN6, conv_features=(4, 8, 8, 8), dense_features=16)),
    ("meso4", Meso4),
    ("meso4_tiny", functools.partial(Meso4, features=(4, 4, 8, 8), hidden=8)),
    ("mesoinception4", MesoInception4),
    ("mesoinception4_tiny", functools.partial(
        MesoInception4, inception=((1, 2, 2, 1), (1, 2, 2, 1)), features=(8, 8), hidden=8)),
    ("xception", Xception),
    ("xception_small", functools.partial(Xception, width=0.25, middle_blocks=4)),
    ("xception_tiny", functools.partial(Xception, width=1 / 32, middle_blocks=1)),
    ("resnet18", functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block="basic")),
    ("resnet18_tiny", functools.partial(ResNet, stage_sizes=(1, 1), block="basic", width=8)),
    ("resnet50", functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="bottleneck")),
    ("resnet50_tiny", functools.partial(ResNet, stage_sizes=(1, 1, 1), block="bottleneck",
                                        width=4)),
    ("gan_disc", DCGANDiscriminator),
    ("gan_disc_tiny", functools.partial(DCGANDiscriminator, features=(8, 16))),
):
    MODELS.register(_name, ModelEntry.of(_module))


def build_model(spec: ModelSpec) -> nn.Module:
    """The module a ModelSpec names; its options (checked against the entry's) are passed
    as module attributes."""
    if spec.num_logits not in (1, 2):
        raise ValueError(f"num_logits must be 1 or 2, got {spec.num_logits}")
    MODELS.resolve(spec.name, spec.options)
    return MODELS.get(spec.name).build(spec)


__all__ = [
    "CNN6",
    "CNN7",
    "MODELS",
    "ModelEntry",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "Meso4",
    "MesoInception4",
    "Normalize",
    "ResNet",
    "Xception",
    "build_model",
    "count_parameters",
    "make_logits_fn",
    "max_pool_2x2",
]
