"""Random perturbation baseline: the paper's "delta" added as noise, no gradient."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dfjax.attacks._checks import check_batch, check_budget
from dfjax.attacks._projections import project, random_in_ball
from dfjax.types import Images, Labels, LogitsFn


def noise(
    logits_fn: LogitsFn, x: Images, y: Labels, key: jax.Array, *, eps, norm: str = "linf",
    distribution: str = "sign",
) -> Images:
    """x + random noise of size eps, clipped to [0, 1].

    distribution "sign": each pixel moves by +-eps (the paper's random +-delta);
    "uniform": uniform in the eps-ball; "gaussian": N(0, (eps/2)^2) per pixel for Linf
    (clipped to +-eps), or a Gaussian direction scaled to L2 norm eps (projected) for L2.
    x: float32 [b, h, w, c] in [0, 1].
    """
    del logits_fn  # a baseline: the model is never queried
    check_batch(x, y)
    check_budget(eps, norm)
    if distribution == "uniform":
        return random_in_ball(key, x, eps, norm)
    if distribution == "gaussian":
        g = jax.random.normal(key, x.shape, x.dtype)
        if norm == "l2":
            n = jnp.sqrt(jnp.sum(g * g, axis=(1, 2, 3), keepdims=True))
            return project(x + eps * g / jnp.maximum(n, 1e-12), x, eps, norm)
        return project(x + 0.5 * eps * g, x, eps, norm)
    if distribution != "sign":
        raise ValueError(f"unknown distribution {distribution!r}; known: sign, uniform, gaussian")
    signs = jax.random.rademacher(key, x.shape, x.dtype)
    if norm == "l2":
        signs = signs / jnp.sqrt(jnp.asarray(x[0].size, x.dtype))
    return project(x + eps * signs, x, eps, norm)
