"""Pieces every detector shares: in-model normalisation, the plain 2x2 max pool and
the logits closure. The fast layers some detectors use under attack are in
models/_cpu_kernels.py."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dfjax.types import Images, Logits


class Normalize(nn.Module):
    """(x - mean) / std inside the model, so attack budgets stay in [0, 1] pixel space."""

    mean: float | tuple[float, ...] = 0.5
    std: float | tuple[float, ...] = 0.25

    def __call__(self, x: Images) -> Images:
        shape = (1,) * (x.ndim - 1) + (-1,)  # per-channel tuples broadcast over [b, h, w, c]
        mean = jnp.asarray(self.mean, x.dtype).reshape(shape)
        std = jnp.asarray(self.std, x.dtype).reshape(shape)
        return (x - mean) / std


def windows_2x2(x: jnp.ndarray) -> tuple[jnp.ndarray, tuple[int, int]]:
    """[b, h, w, c] -> ([b, h/2, 2, w/2, 2, c], (2, 4)): 2x2 windows as axes (a free
    reshape); odd trailing rows/columns are dropped."""
    b, h, w, c = x.shape
    x = x[:, : h - h % 2, : w - w % 2, :]
    return x.reshape(b, h // 2, 2, w // 2, 2, c), (2, 4)


def max_pool_2x2(x: jnp.ndarray) -> jnp.ndarray:
    """2x2 max pooling, stride 2, as a reshape + max (cheaper than reduce_window,
    forward and backward, on XLA:CPU). Odd trailing rows/columns are dropped."""
    windows, axes = windows_2x2(x)
    return windows.max(axis=axes)


def make_logits_fn(model: nn.Module, variables: Any) -> Callable[[Images], Logits]:
    """Close over the weights: x float32 [b, h, w, c] in [0, 1] -> logits [b, k].

    BatchNorm (where a model has it) runs in eval mode, so each logit depends only
    on its own input -- never on the rest of the batch.
    """

    def logits_fn(x: Images) -> Logits:
        return model.apply(variables, x, train=False)

    return logits_fn


def count_parameters(variables: Any) -> int:
    """The trainable numbers of a Flax variables tree: its `params` collection's leaves,
    else every leaf (arrays or `jax.ShapeDtypeStruct`s from `jax.eval_shape`)."""
    tree = variables.get("params", variables) if isinstance(variables, Mapping) else variables
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))
