"""Median smoothing (feature squeezing; Xu, Evans & Qi 2018, arXiv:1704.01155): each pixel
replaced, per channel, by the median of its size x size window (edges reflected; an
even size takes the window up and to the left of the pixel, as Xu et al.'s 2x2). The
median is piecewise linear, so it is attacked through."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dfjax.types import Images


def check_size(size) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or not 2 <= size <= 7:
        raise ValueError(f"option size must be an int in 2..7, got {size!r}")


def median(x: Images, keys: jax.Array, *, size: int) -> Images:
    """float32 [b, h, w, c] -> the median-filtered images (same shape)."""
    del keys
    before, after = (size - 1) // 2 + (size - 1) % 2, (size - 1) // 2
    padded = jnp.pad(x, ((0, 0), (before, after), (before, after), (0, 0)), mode="reflect")
    h, w = x.shape[1], x.shape[2]
    windows = jnp.stack([padded[:, i:i + h, j:j + w] for i in range(size) for j in range(size)])
    return jnp.median(windows, axis=0)
