"""Random restarts: keep, per example, the run that reached the highest loss."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def best_over_restarts(run: Callable[[jax.Array], tuple[jax.Array, jax.Array, jax.Array]],
                       key: jax.Array, num_restarts: int):
    """run(key) -> (x_adv [b, h, w, c], final loss [b], trace [steps, b]) for each of
    `num_restarts` (static) keys fold_in(key, r). Returns (x_adv, loss, trace) with the
    best restart per example and the trace's minimum over restarts."""
    best_x, best_loss, trace = run(jax.random.fold_in(key, 0))
    for r in range(1, num_restarts):  # static, few: each restart is its own unrolled loop
        x_r, loss_r, trace_r = run(jax.random.fold_in(key, r))
        better = loss_r > best_loss
        best_x = jnp.where(better[:, None, None, None], x_r, best_x)
        best_loss = jnp.where(better, loss_r, best_loss)
        trace = jnp.minimum(trace, trace_r)
    return best_x, best_loss, trace
