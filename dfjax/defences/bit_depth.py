"""Bit-depth reduction (feature squeezing; Xu, Evans & Qi 2018, arXiv:1704.01155): each
pixel rounded to 2^bits levels. Its gradient is zero almost everywhere, so it is
attacked by BPDA with the identity (Athalye et al. 2018)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dfjax.types import Images


def check_bits(bits) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
        raise ValueError(f"option bits must be an int in 1..8, got {bits!r}")


def bit_depth(x: Images, keys: jax.Array, *, bits: int) -> Images:
    """x in [0, 1] rounded to the levels k / (2^bits - 1)."""
    del keys
    levels = 2.0 ** bits - 1.0
    return jnp.round(x * levels) / levels
