"""Random resizing and padding (Xie et al. 2018, "Mitigating Adversarial Effects Through
Randomization", arXiv:1711.01991): each forward pass shrinks the image by a random factor
and places it at a random offset on a zero canvas of the original size (the detector's
input size is fixed, so the canvas is not enlarged as in the paper). Differentiable for a
given draw, random across draws: attacked with EOT (Athalye et al. 2018)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from dfjax.types import Images


def check_min_scale(min_scale) -> None:
    if (isinstance(min_scale, bool) or not isinstance(min_scale, (int, float))
            or not math.isfinite(min_scale) or not 0.5 <= min_scale < 1):
        raise ValueError(f"option min_scale must be a number in [0.5, 1), got {min_scale!r}")


def random_resize_pad(x: Images, keys: jax.Array, *, min_scale: float) -> Images:
    """Per example i (key keys[i]): scale s ~ U[min_scale, 1], bilinear resize to s times
    the size, placed at an offset ~ U[0, (1 - s) * size] per axis; zeros elsewhere."""
    h, w = x.shape[1], x.shape[2]

    def one(image, key):
        k_scale, k_y, k_x = jax.random.split(key, 3)
        scale = jax.random.uniform(k_scale, (), minval=min_scale, maxval=1.0)
        offset = jnp.stack([jax.random.uniform(k_y, ()) * (1 - scale) * h,
                            jax.random.uniform(k_x, ()) * (1 - scale) * w])
        resized = jax.image.scale_and_translate(
            image, image.shape, (0, 1), jnp.stack([scale, scale]), offset, method="linear",
            antialias=False)
        return resized

    return jax.vmap(one)(x, keys)
