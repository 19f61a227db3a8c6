"""One-pixel attack (Su et al. 2019, arXiv:1710.08864): differential evolution, black box."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dfjax.attacks._checks import check_batch, check_budget, check_steps
from dfjax.attacks._loops import attack_loop
from dfjax.losses import true_class_probability
from dfjax.types import Images, Labels, LogitsFn

DIFFERENTIAL_WEIGHT = 0.5  # F of DE/rand/1 (Su et al. Sec. 3.2)


def _apply(x, candidate, n_active):
    """x [h, w, c], candidate [k, 2 + c] = (row, col, values) -> x with the first
    n_active of the k pixels set to their values."""
    h, w, _ = x.shape
    k = candidate.shape[0]
    rows = jnp.clip(jnp.floor(candidate[:, 0]), 0, h - 1).astype(jnp.int32)
    cols = jnp.clip(jnp.floor(candidate[:, 1]), 0, w - 1).astype(jnp.int32)
    active = jnp.arange(k) < n_active
    # later pixels overwrite earlier ones at the same position: a plain scatter
    rows = jnp.where(active, rows, h)  # out of range: dropped
    return x.at[rows, cols].set(candidate[:, 2:], mode="drop")


def one_pixel(
    logits_fn: LogitsFn, x: Images, y: Labels, key: jax.Array, *, eps, norm: str = "l0",
    num_pixels: int = 1, population: int = 32, iterations: int = 16,
) -> Images:
    """Set up to k = min(num_pixels, eps) pixels to any colour, found by differential
    evolution (DE/rand/1, F = 0.5, no crossover; a child replaces its parent when it
    lowers the true-class probability, as in Su et al.).

    The budget is L0: eps is the number of (h, w) positions that may change (their
    values are unbounded in [0, 1]); `num_pixels` (static) is the most it can use, so
    an eps sweep up to num_pixels compiles once. x: float32 [b, h, w, c] in [0, 1].
    Costs population * (iterations + 1) model calls per example.

    Example:
        >>> x_adv = one_pixel(logits_fn, x, y, key, eps=1, num_pixels=1)
    """
    check_batch(x, y)
    check_budget(eps, norm)
    if norm != "l0":
        raise ValueError(f"one_pixel has an l0 budget (pixels), not {norm!r}")
    check_steps(num_pixels, "num_pixels")
    check_steps(iterations, "iterations")
    if not isinstance(population, int) or population < 4:
        raise ValueError(f"population must be an int >= 4, got {population!r}")
    b, h, w, c = x.shape
    n_active = jnp.minimum(num_pixels, jnp.floor(eps))
    low = jnp.zeros((2 + c,), x.dtype)
    high = jnp.concatenate([jnp.array([h, w], x.dtype) - 1e-3, jnp.ones((c,), x.dtype)])
    low, high = low.reshape(1, 1, 1, -1), high.reshape(1, 1, 1, -1)
    apply_all = jax.vmap(jax.vmap(_apply, (None, 0, None)), (0, 0, None))

    def fitness(pop):  # pop [b, P, k, 2 + c] -> p(y) [b, P]
        images = apply_all(x, pop, n_active).reshape(b * population, h, w, c)
        tcp = true_class_probability(logits_fn(images), jnp.repeat(y, population))
        return tcp.reshape(b, population)

    k_init, k_loop = jax.random.split(key)
    pop = jax.random.uniform(k_init, (b, population, num_pixels, 2 + c), x.dtype) * high
    fit = fitness(pop)

    def step(i, carry):
        pop, fit = carry
        keys = jax.random.split(jax.random.fold_in(k_loop, i), b)
        # three distinct members per child: the first three of a random permutation
        idx = jax.vmap(lambda k: jnp.argsort(
            jax.random.uniform(k, (population, population)), axis=-1)[:, :3])(keys)
        pick = jax.vmap(lambda p, j: p[j])(pop, idx)  # [b, P, 3, k, 2 + c]
        child = pick[:, :, 0] + DIFFERENTIAL_WEIGHT * (pick[:, :, 1] - pick[:, :, 2])
        child = jnp.clip(child, low, high)
        child_fit = fitness(child)
        better = child_fit < fit
        pop = jnp.where(better[:, :, None, None], child, pop)
        return pop, jnp.minimum(child_fit, fit)

    pop, fit = attack_loop(iterations, step, (pop, fit), uses_gradients=False)  # _loops.py
    best = jnp.take_along_axis(pop, jnp.argmin(fit, axis=1)[:, None, None, None], axis=1)[:, 0]
    return jax.vmap(_apply, (0, 0, None))(x, best, n_active)
