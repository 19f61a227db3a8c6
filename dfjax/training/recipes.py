"""Training recipes by name: what loss a detector's weights minimise, and how.

Each entry is a `RecipeEntry` (`dfjax.training.base`): its options with defaults,
checked without a model, and `build(model, spec, options) -> Recipe`, built once per
training. Every recipe also takes the common options `warm_start_epochs` (the runner)
and `init_from` (the loop).

Registered here, in one place: standard (`dfjax.training.standard`), fgsm_rs and pgd_at
(`dfjax.training.adversarial`), dp_sgd (`dfjax.training.dp_sgd`).
"""

from __future__ import annotations

import flax.linen as nn

from dfjax.config import TrainSpec
from dfjax.registry import Registry
from dfjax.training.adversarial import FGSM_RS, PGD_AT
from dfjax.training.base import Recipe, RecipeEntry
from dfjax.training.dp_sgd import DP_SGD
from dfjax.training.standard import STANDARD

RECIPES: Registry[RecipeEntry] = Registry("training")
RECIPES.register("standard", STANDARD)
RECIPES.register("fgsm_rs", FGSM_RS)
RECIPES.register("pgd_at", PGD_AT)
RECIPES.register("dp_sgd", DP_SGD)


def build_recipe(model: nn.Module, spec: TrainSpec) -> Recipe:
    """The Recipe of `spec.recipe` for `model`, its options resolved (OptionError on an
    unknown option or a refused value).

    Example:
        >>> recipe = build_recipe(model, TrainSpec(recipe="pgd_at", options={"steps": 5}))
        >>> loss, (logits, state) = recipe.loss(variables, variables["params"], x, y, key, 0.0)
    """
    options = RECIPES.resolve(spec.recipe, spec.options)
    return RECIPES.get(spec.recipe).build(model, spec, options)
