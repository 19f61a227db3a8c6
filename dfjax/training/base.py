"""What a training recipe is: `RecipeEntry` (its options, checked without a model) and
`Recipe` (what it builds, once, for one model and training spec).

Recipe modules (`standard`, `adversarial`, `dp_sgd`) import only this module;
`dfjax.training.recipes` imports them and registers them, in one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import optax

from dfjax.config import TrainSpec
from dfjax.registry import Entry

# Options every recipe accepts, with their defaults: read outside the recipe's loss, by
# the runner (warm_start_epochs: fine-tune the `standard` N-epoch detector) or by the
# training loop (init_from: a pretrained weights file).
COMMON_OPTIONS: Mapping[str, Any] = {"warm_start_epochs": 0, "init_from": None}

# loss(variables, params, x [b, h, w, c] in [0, 1], y int [b], key, progress)
#   -> (scalar loss, (logits [b, k], new non-param state))
Loss = Callable[..., tuple[jax.Array, tuple[jax.Array, dict]]]


class Recipe(NamedTuple):
    """A training recipe for one (model, spec), built once.

    Attributes:
        loss: (variables, params, x, y, key, progress) -> (loss, (logits, new_state)).
            x: float32 [b, h, w, c] in [0, 1]; y: int [b]; key: the step's key;
            progress: float in [0, 1], the fraction of training done before the step
            (e.g. an eps warm-up; recipes that do not use it ignore it).
        per_example: the loop differentiates `loss` on each example alone (batches of
            one, vmapped) and hands `gradient_transform` gradients with a leading [b]
            axis; the batch loss and logits are those of the b single-example calls.
        gradient_transform: applied to the gradients before the loop's Adam (e.g.
            DP-SGD's clip-and-noise aggregation); None: Adam alone.
        privacy: (steps, num_examples) -> numbers (and names) added to each epoch's
            history record, e.g. {"epsilon": 2.6, "delta": 1e-5, "accountant": "rdp"};
            None: not a private recipe.
    """

    loss: Loss
    per_example: bool = False
    gradient_transform: optax.GradientTransformation | None = None
    privacy: Callable[[int, int], dict[str, Any]] | None = None


def _check_common(options: Mapping[str, Any]) -> None:
    epochs = options["warm_start_epochs"]
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"warm_start_epochs must be an integer >= 0, got {epochs!r}")
    init_from = options["init_from"]
    if init_from is not None and not isinstance(init_from, str):
        raise ValueError(f"init_from must be a weights file name or None, got {init_from!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecipeEntry(Entry):
    """A registered recipe: build(model, spec, options) -> Recipe.

    `options` are the recipe's own, with defaults; COMMON_OPTIONS are added to them.
    `check` sees the resolved options (defaults filled in) and needs no model, so
    `RECIPES.resolve(spec.recipe, spec.options)` validates a training spec before any
    data loads. `build` receives those resolved options.
    """

    build: Callable[[nn.Module, TrainSpec, dict[str, Any]], Recipe]

    def __post_init__(self):
        clash = sorted(set(self.options) & set(COMMON_OPTIONS))
        if clash:
            raise ValueError(f"recipe options {clash} are common to every recipe")
        object.__setattr__(self, "options", {**self.options, **COMMON_OPTIONS})

    def resolve_options(self, given: Mapping[str, Any] | tuple = ()) -> dict[str, Any]:
        options = super().resolve_options(given)
        _check_common(options)
        return options


def apply_train(model: nn.Module, variables: dict, params: Any, x: jax.Array, key: jax.Array):
    """Forward in training mode (dropout keyed by `key`, BatchNorm on batch statistics);
    returns (logits [b, k], the updated non-param state)."""
    state = {k: v for k, v in variables.items() if k != "params"}
    mutable = [k for k in state if k == "batch_stats"]
    out = model.apply({"params": params, **state}, x, train=True,
                      mutable=mutable or False, rngs={"dropout": key})
    if mutable:
        logits, new_state = out
        return logits, {**state, **new_state}
    return out, state


def check_fraction(name: str, value: Any, *, upper_open: bool = False) -> None:
    """ValueError unless `value` is a number in [0, 1] (or [0, 1) when upper_open)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
        0.0 <= value < 1.0 if upper_open else 0.0 <= value <= 1.0)
    if not ok:
        raise ValueError(f"{name} must be in [0, {'1)' if upper_open else '1]'}, got {value!r}")


def check_positive(name: str, value: Any, *, allow_zero: bool = False,
                   allow_none: bool = False) -> None:
    """ValueError unless `value` is a finite number > 0 (>= 0 with allow_zero; None
    with allow_none)."""
    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
        0.0 <= value < float("inf") if allow_zero else 0.0 < value < float("inf"))
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a number {bound}"
                         f"{' or None' if allow_none else ''}, got {value!r}")
