"""Gaussian blur as a defence: a differentiable low-pass filter, attacked through."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from dfjax.types import Images


def check_sigma(sigma) -> None:
    if (isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma)
            or not 0 < sigma <= 5):
        raise ValueError(f"option sigma must be a number in (0, 5], got {sigma!r}")


def gaussian_kernel(sigma: float) -> np.ndarray:
    """The normalised 1-D Gaussian, radius ceil(3 sigma)."""
    radius = max(1, math.ceil(3 * sigma))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def blur(x: Images, keys: jax.Array, *, sigma: float) -> Images:
    """x blurred with a separable Gaussian of std `sigma` pixels, edges reflected."""
    del keys
    k = gaussian_kernel(sigma)
    r = len(k) // 2
    padded = jnp.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode="reflect")
    h, w = x.shape[1], x.shape[2]
    rows = sum(float(k[i]) * padded[:, i:i + h] for i in range(len(k)))
    return sum(float(k[j]) * rows[:, :, j:j + w] for j in range(len(k)))
