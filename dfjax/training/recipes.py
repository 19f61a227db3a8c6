"""Training recipes: what loss a detector's weights minimise.

A recipe turns (model, spec) into `loss(variables, params, x, y, key)` returning
(scalar loss, (logits, new_model_state)). The `standard` recipe is the paper's
cross-entropy training (Eq. 4).

Optional hooks, as attributes of the returned loss function:
  value_and_grad(variables, params, x, y, key) -> ((loss, (logits, state)), grads):
      replaces `jax.value_and_grad(loss)` in the training step (DP-SGD's clipped,
      noised per-example gradients);
  privacy_epsilon(steps, num_examples) -> float: recorded per epoch as `epsilon`.

Registered: standard, fgsm_rs, pgd_at (dfjax.training.adversarial), dp_sgd
(dfjax.training.dp_sgd).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn

from dfjax.losses import cross_entropy
from dfjax.config import TrainSpec
from dfjax.registry import Registry

RECIPES: Registry = Registry("training")

# Options every recipe accepts: read by the runner (warm_start_epochs) or by the
# training loop (init_from), not by the recipe's loss.
COMMON_OPTIONS = frozenset({"warm_start_epochs", "init_from"})


def check_options(spec: TrainSpec, known: set[str]) -> None:
    """Raises ValueError naming any option of `spec` neither its recipe (`known`) nor
    COMMON_OPTIONS has, and listing the valid ones."""
    unknown = sorted(set(dict(spec.options)) - known - COMMON_OPTIONS)
    if unknown:
        raise ValueError(f"recipe {spec.recipe!r} has no option(s) {unknown}; its options are "
                         f"{sorted(known | COMMON_OPTIONS)}")


def apply_train(model: nn.Module, variables: dict, params: Any, x, key):
    """Forward in training mode; returns (logits, updated non-param state)."""
    state = {k: v for k, v in variables.items() if k != "params"}
    mutable = [k for k in state if k == "batch_stats"]
    out = model.apply({"params": params, **state}, x, train=True,
                      mutable=mutable or False, rngs={"dropout": key})
    if mutable:
        logits, new_state = out
        return logits, {**state, **new_state}
    return out, state


def standard(model: nn.Module, spec: TrainSpec) -> Callable:
    """Plain cross-entropy on clean inputs (Dhese et al., Eq. 4). No options of its own."""
    check_options(spec, set())

    def loss(variables, params, x, y, key):
        logits, state = apply_train(model, variables, params, x, key)
        return cross_entropy(logits, y).mean(), (logits, state)

    return loss


RECIPES.register("standard", standard)


# Recipes in their own modules register here (they import apply_train from this one).
from dfjax.training.adversarial import fgsm_rs, pgd_at
from dfjax.training.dp_sgd import dp_sgd

RECIPES.register("fgsm_rs", fgsm_rs)
RECIPES.register("pgd_at", pgd_at)
RECIPES.register("dp_sgd", dp_sgd)
