"""DP-SGD (Abadi et al. 2016, "Deep Learning with Differential Privacy",
arXiv:1607.00133, Algorithm 1): per-example gradient clipping plus Gaussian noise.

The recipe asks the loop for per-example gradients (`Recipe.per_example`) and hands
them to optax's `contrib.differentially_private_aggregate` (`Recipe.gradient_transform`):
each example's whole gradient clipped to L2 norm C, the clipped gradients summed,
N(0, (sigma C)^2) noise added to each coordinate, the sum divided by the batch size b.
Adam then runs on the result (post-processing: the privacy cost is unchanged). The noise
key lives in the transform's state, seeded from the training spec's seed.
`Recipe.privacy` accounts the cost with `dfjax.training.accountant` (dp-accounting).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import optax

from dfjax.config import TrainSpec
from dfjax.losses import cross_entropy
from dfjax.training.accountant import ACCOUNTANTS, dp_sgd_epsilon
from dfjax.training.base import Recipe, RecipeEntry, apply_train, check_positive

# Folded into key(spec.seed) for the noise key, so the noise is a stream of its own.
NOISE_STREAM = 0xD9


def noise_key(spec: TrainSpec) -> jax.Array:
    """The DP noise's initial key: a function of the training spec's seed alone."""
    return jax.random.fold_in(jax.random.key(spec.seed), NOISE_STREAM)


def check_dp_sgd(options: dict[str, Any]) -> None:
    check_positive("clip_norm", options["clip_norm"])
    check_positive("noise_multiplier", options["noise_multiplier"], allow_zero=True)
    delta = options["delta"]
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    if options["accountant"] not in ACCOUNTANTS:
        raise ValueError(f"accountant must be one of {ACCOUNTANTS}, got "
                         f"{options['accountant']!r}")


def build_dp_sgd(model: nn.Module, spec: TrainSpec, options: dict[str, Any]) -> Recipe:
    """Cross-entropy, differentiated per example, clipped and noised (see the module).

    Options (see DP_SGD): clip_norm C, noise_multiplier sigma (noise std / C), delta,
    accountant ("rdp" or "pld"). Models with BatchNorm are refused when the loss is
    traced: BatchNorm mixes the examples of a batch, so per-example gradients (and the
    guarantee) do not exist.
    """
    clip_norm = float(options["clip_norm"])
    noise_multiplier = float(options["noise_multiplier"])
    delta = float(options["delta"])
    accountant = options["accountant"]

    def loss(variables, params, x, y, key, progress):
        del progress
        if "batch_stats" in variables:
            raise ValueError("dp_sgd needs per-example gradients, which a model with "
                             "BatchNorm does not have; choose a model without BatchNorm")
        logits, state = apply_train(model, variables, params, x, key)
        return cross_entropy(logits, y).mean(), (logits, state)

    def privacy(steps: int, num_examples: int) -> dict[str, Any]:
        epsilon = dp_sgd_epsilon(num_examples=num_examples, batch_size=spec.batch_size,
                                 noise_multiplier=noise_multiplier, steps=steps, delta=delta,
                                 accountant=accountant)
        return {"epsilon": epsilon, "delta": delta, "accountant": accountant}

    aggregate = optax.contrib.differentially_private_aggregate(
        l2_norm_clip=clip_norm, noise_multiplier=noise_multiplier, key=noise_key(spec))
    return Recipe(loss=loss, per_example=True, gradient_transform=aggregate, privacy=privacy)


DP_SGD = RecipeEntry(
    build=build_dp_sgd, check=check_dp_sgd,
    options={"clip_norm": 1.0, "noise_multiplier": 1.1, "delta": 1e-5, "accountant": "rdp"},
    description="DP-SGD (Abadi et al. 2016): per-example clipping and Gaussian noise "
                "(optax), epsilon from dp-accounting (rdp or pld)")
