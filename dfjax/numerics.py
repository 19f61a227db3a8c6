"""Numerical faults: NaN or Inf in logits, gradients or a training loss.

A non-finite number must never become a stored result. Training (`dfjax.training.loop`)
and attack evaluation (`dfjax.attacks.evaluate`) check what they compute and raise
`NonFiniteError`, naming what went non-finite and the step where it first did; the
runner stores the cell (or every cell of the detector) as failed with that message and
goes on with the rest of the matrix.

The checks read values the compiled code returns anyway (a training step's loss, an
attack's outputs and true-class-probability trace), so they cost a host-side pass over
small arrays, not a slower compiled loop.

Example:
    >>> import numpy as np
    >>> first_nonfinite_index(np.array([0.1, 0.2, np.nan, np.nan]))
    2
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


class NonFiniteError(ValueError):
    """A NaN or Inf where a finite number was needed.

    Attributes:
        what: what went non-finite, e.g. "training loss or gradient", "adversarial logits".
        step: the step where it first appeared (training: the step within `epoch`;
            an attack: the iteration of its loop), None where it cannot be known.
        epoch: the training epoch (1-based), None outside training.
    """

    def __init__(self, message: str, *, what: str, step: int | None = None,
                 epoch: int | None = None):
        super().__init__(message)
        self.what, self.step, self.epoch = what, step, epoch


def first_nonfinite_index(values: np.ndarray, axis: int = 0) -> int | None:
    """The first index along `axis` whose slice holds a NaN or Inf, or None if all are
    finite. values: any numeric array (e.g. per-step losses [steps], a trace [steps, b])."""
    values = np.asarray(values)
    if values.size == 0:
        return None
    bad = ~np.isfinite(values)
    if values.ndim > 1:
        bad = np.moveaxis(bad, axis, 0).reshape(bad.shape[axis], -1).any(axis=1)
    hits = np.flatnonzero(bad)
    return int(hits[0]) if len(hits) else None


def count_nonfinite(values: np.ndarray) -> int:
    """How many entries of `values` are NaN or Inf."""
    return int(np.size(values) - np.count_nonzero(np.isfinite(values)))


def nonfinite_rows(values: np.ndarray) -> int:
    """How many rows (entries along axis 0) of `values` hold a NaN or Inf, e.g. examples
    of logits [b, k]."""
    values = np.asarray(values)
    if values.size == 0:
        return 0
    return int(np.count_nonzero((~np.isfinite(values)).reshape(len(values), -1).any(axis=1)))


def all_finite(tree) -> jax.Array:
    """Jittable: a bool scalar, True when every entry of every array leaf of `tree` is
    finite (one reduction per leaf, e.g. over a gradient pytree)."""
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)
