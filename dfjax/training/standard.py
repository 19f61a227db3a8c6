"""The `standard` recipe: plain cross-entropy on clean inputs (Dhese et al., Eq. 4)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn

from dfjax.config import TrainSpec
from dfjax.losses import cross_entropy
from dfjax.training.base import Recipe, RecipeEntry, apply_train


def build_standard(model: nn.Module, spec: TrainSpec, options: dict[str, Any]) -> Recipe:
    """Mean cross-entropy of the model (train mode) on the clean batch."""
    del spec, options

    def loss(variables, params, x, y, key, progress):
        del progress
        logits, state = apply_train(model, variables, params, x, key)
        return cross_entropy(logits, y).mean(), (logits, state)

    return Recipe(loss=loss)


STANDARD = RecipeEntry(build=build_standard,
                       description="cross-entropy on clean inputs (Dhese et al., Eq. 4)")
