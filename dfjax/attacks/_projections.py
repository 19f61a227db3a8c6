"""Budget projections and steepest-ascent directions for the Linf and L2 balls."""

from __future__ import annotations

import jax
import jax.numpy as jnp

NORMS = ("linf", "l2")


def _per_example_l2(v: jax.Array) -> jax.Array:
    """||v_i||_2 with shape [b, 1, 1, 1] for broadcasting."""
    return jnp.sqrt(jnp.sum(v * v, axis=tuple(range(1, v.ndim)), keepdims=True))


def project(x_adv: jax.Array, x: jax.Array, eps, norm: str) -> jax.Array:
    """Nearest point to x_adv inside {||d|| <= eps} around x and inside [0, 1]."""
    delta = x_adv - x
    if norm == "linf":
        delta = jnp.clip(delta, -eps, eps)
    elif norm == "l2":
        n = _per_example_l2(delta)
        delta = delta * jnp.minimum(1.0, eps / jnp.maximum(n, 1e-12))
    else:
        raise ValueError(f"unknown norm {norm!r}; known: {', '.join(NORMS)}")
    x_out = jnp.clip(x + delta, 0.0, 1.0)
    if norm == "linf":  # the clip to [0, 1] cannot leave the box; make float rounding safe
        x_out = jnp.clip(x_out, x - eps, x + eps)
    return x_out


def ascent_direction(grad: jax.Array, norm: str) -> jax.Array:
    """Steepest ascent unit step: sign(g) for Linf, g / ||g||_2 for L2."""
    if norm == "linf":
        return jnp.sign(grad)
    if norm == "l2":
        return grad / jnp.maximum(_per_example_l2(grad), 1e-12)
    raise ValueError(f"unknown norm {norm!r}; known: {', '.join(NORMS)}")


def random_in_ball(key: jax.Array, x: jax.Array, eps, norm: str) -> jax.Array:
    """A uniform-ish random start inside the eps-ball around x (and [0, 1])."""
    if norm == "linf":
        delta = jax.random.uniform(key, x.shape, x.dtype, -1.0, 1.0) * eps
    else:
        k_dir, k_rad = jax.random.split(key)
        direction = jax.random.normal(k_dir, x.shape, x.dtype)
        direction = direction / jnp.maximum(_per_example_l2(direction), 1e-12)
        radius = jax.random.uniform(k_rad, (x.shape[0],) + (1,) * (x.ndim - 1), x.dtype)
        delta = direction * radius * eps
    return project(x + delta, x, eps, norm)


def perturbation_norms(x_adv: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Realised per-example (Linf, L2) norms of x_adv - x, each [b]."""
    delta = (x_adv - x).reshape(x.shape[0], -1)
    return jnp.abs(delta).max(axis=1), jnp.sqrt(jnp.sum(delta * delta, axis=1))


def changed_pixels(x_adv: jax.Array, x: jax.Array) -> jax.Array:
    """Per-example L0 norm [b]: how many (h, w) pixels differ in any channel."""
    return jnp.any(x_adv != x, axis=-1).reshape(x.shape[0], -1).sum(axis=1)
