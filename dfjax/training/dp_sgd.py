"""DP-SGD (Abadi et al. 2016, "Deep Learning with Differential Privacy",
arXiv:1607.00133): per-example gradient clipping plus Gaussian noise.

The recipe's loss carries its own `value_and_grad` (the hook `make_train_step`
uses instead of `jax.value_and_grad`), and `privacy_epsilon(steps, num_examples)`
(the RDP accountant, `dfjax.training.accountant`). The noisy gradient is then fed
to the loop's optimiser (Adam: post-processing, so the privacy cost is unchanged).
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from dfjax.losses import cross_entropy
from dfjax.config import TrainSpec
from dfjax.training.accountant import dp_sgd_epsilon
from dfjax.training.recipes import apply_train, check_options


def clip_and_noise(per_example_grads, key: jax.Array, *, clip_norm: float,
                   noise_multiplier: float):
    """Per-example grads (every leaf [b, ...]) -> the DP mean gradient (leaves [...]).

    Each example's whole gradient is scaled to L2 norm <= clip_norm, the scaled
    gradients are summed, N(0, (noise_multiplier * clip_norm)^2) noise is added to each
    coordinate, and the sum is divided by b (Abadi et al., Algorithm 1).
    """
    leaves, treedef = jax.tree.flatten(per_example_grads)
    b = leaves[0].shape[0]
    sq = sum(jnp.sum(g.reshape(b, -1) ** 2, axis=1) for g in leaves)
    factor = jnp.minimum(1.0, clip_norm / jnp.maximum(jnp.sqrt(sq), 1e-12))
    out = []
    for i, g in enumerate(leaves):
        summed = jnp.tensordot(factor, g, axes=1)
        noise = jax.random.normal(jax.random.fold_in(key, i), summed.shape, summed.dtype)
        out.append((summed + noise_multiplier * clip_norm * noise) / b)
    return jax.tree.unflatten(treedef, out)


def dp_sgd(model: nn.Module, spec: TrainSpec) -> Callable:
    """Options: `clip_norm` (default 1.0), `noise_multiplier` sigma (default 1.1),
    `delta` (default 1e-5). Models with BatchNorm are refused: BatchNorm mixes the
    examples of a batch, so per-example gradients (and the guarantee) do not exist."""
    check_options(spec, {"clip_norm", "noise_multiplier", "delta"})
    clip_norm = float(spec.option("clip_norm", 1.0))
    noise_multiplier = float(spec.option("noise_multiplier", 1.1))
    delta = float(spec.option("delta", 1e-5))

    def loss(variables, params, x, y, key):
        logits, state = apply_train(model, variables, params, x, key)
        return cross_entropy(logits, y).mean(), (logits, state)

    def value_and_grad(variables, params, x, y, key):
        if "batch_stats" in variables:
            raise ValueError("dp_sgd needs per-example gradients; this model has BatchNorm")
        k_model, k_noise = jax.random.split(key)
        keys = jax.random.split(k_model, x.shape[0])

        def single(p, xi, yi, ki):
            logits, _ = apply_train(model, variables, p, xi[None], ki)
            return cross_entropy(logits, yi[None])[0], logits[0]

        (losses, logits), grads = jax.vmap(jax.value_and_grad(single, has_aux=True),
                                           in_axes=(None, 0, 0, 0))(params, x, y, keys)
        state = {k: v for k, v in variables.items() if k != "params"}
        noisy = clip_and_noise(grads, k_noise, clip_norm=clip_norm,
                               noise_multiplier=noise_multiplier)
        return (losses.mean(), (logits, state)), noisy

    def privacy_epsilon(steps: int, num_examples: int) -> float:
        return dp_sgd_epsilon(num_examples=num_examples, batch_size=spec.batch_size,
                              noise_multiplier=noise_multiplier, steps=steps, delta=delta)

    loss.value_and_grad = value_and_grad
    loss.privacy_epsilon = privacy_epsilon
    return loss
