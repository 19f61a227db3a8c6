"""Square Attack (Andriushchenko et al. 2020, arXiv:1912.00049): score-based black box."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from dfjax.attacks._checks import check_batch, check_budget, check_steps
from dfjax.attacks._loops import attack_loop
from dfjax.losses import margin, true_class_probability
from dfjax.attacks._projections import project
from dfjax.types import Images, Labels, LogitsFn

# Iterations (out of 10 000) after which the square's area fraction p halves (paper, App. A)
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_schedule(num_iterations: int, p_init: float) -> np.ndarray:
    """p_i for i = 0..num_iterations-1: p_init halved at the paper's milestones,
    rescaled from 10 000 iterations to num_iterations. Static (numpy)."""
    i = np.arange(num_iterations) * (10_000 / max(num_iterations, 1))
    halvings = (i[:, None] > np.asarray(_HALVINGS)[None, :]).sum(1)
    return (p_init / 2.0 ** halvings).astype(np.float32)


def square(
    logits_fn: LogitsFn, x: Images, y: Labels, key: jax.Array, *, eps, num_queries: int,
    norm: str = "linf", p_init: float = 0.05, return_trace: bool = False,
):
    """Random search with square-shaped Linf updates on the logit margin z_y - z_other.

    `num_queries` counts model calls per example; the clean image is not one of them
    (the evaluation scores it apart). Query 1 is vertical stripes of +-eps; each further
    query redraws one random square (side sqrt(p_i h w), per example position, +-eps per
    channel) and keeps it when the margin drops. Examples already misclassified stop
    improving (masked, not exited). Only logits are used: no gradient.
    x: float32 [b, h, w, c] in [0, 1]; y: int [b]. `num_queries` (model calls per example,
    >= 1) and `p_init` are static, eps traced.
    Returns x_adv with ||x_adv - x||_inf <= eps, or (x_adv, trace) with trace float32
    [num_queries, b] = p(y | current best) after each query (`queries_used` reads it).
    The square sizes follow p_schedule scaled to `num_queries`, as in the paper, so a run
    with more queries is not a continuation of one with fewer (with the same key only
    query 1 is shared); within a run the best margin never rises.

    Example:
        >>> x_adv = square(logits_fn, x, y, key, eps=8/255, num_queries=1000)
    """
    check_batch(x, y)
    check_budget(eps, norm)
    check_steps(num_queries, "num_queries")
    if norm != "linf":
        raise ValueError(f"square implements the linf ball only, not {norm!r}")
    b, h, w, c = x.shape
    k_init, k_loop = jax.random.split(key)
    stripes = jax.random.rademacher(k_init, (b, 1, w, c), x.dtype)
    x_best = project(x + eps * stripes, x, eps, norm)
    logits = logits_fn(x_best)
    loss_best = -margin(logits, y)  # z_y - z_other: < 0 <=> misclassified
    num_iterations = num_queries - 1
    trace = jnp.zeros((num_queries, b), jnp.float32).at[0].set(
        true_class_probability(logits, y))
    if num_iterations == 0:
        return (x_best, trace) if return_trace else x_best
    sides = np.clip(np.round(np.sqrt(p_schedule(num_iterations, p_init) * h * w)), 1, h - 1)
    sides = jnp.asarray(sides.astype(np.int32))
    rows = jnp.arange(h)[None, :, None, None]
    cols = jnp.arange(w)[None, None, :, None]

    def step(i, carry):
        x_best, loss_best, trace = carry
        s = sides[i]
        k_row, k_col, k_val = jax.random.split(jax.random.fold_in(k_loop, i), 3)
        r0 = jax.random.randint(k_row, (b, 1, 1, 1), 0, jnp.maximum(h - s + 1, 1))
        c0 = jax.random.randint(k_col, (b, 1, 1, 1), 0, jnp.maximum(w - s + 1, 1))
        window = (rows >= r0) & (rows < r0 + s) & (cols >= c0) & (cols < c0 + s)
        values = eps * jax.random.rademacher(k_val, (b, 1, 1, c), x.dtype)
        candidate = project(jnp.where(window, x + values, x_best), x, eps, norm)
        logits = logits_fn(candidate)
        loss = -margin(logits, y)
        accept = (loss < loss_best) & (loss_best > 0)  # fooled examples stop improving
        x_best = jnp.where(accept.reshape(b, 1, 1, 1), candidate, x_best)
        loss_best = jnp.where(accept, loss, loss_best)
        tcp = jnp.where(accept, true_class_probability(logits, y), trace[i])
        return x_best, loss_best, trace.at[i + 1].set(tcp)

    x_best, _, trace = attack_loop(num_iterations, step, (x_best, loss_best, trace),
                                   uses_gradients=False)  # forward only: rolled (_loops.py)
    return (x_best, trace) if return_trace else x_best


def queries_used(trace) -> np.ndarray:
    """Per example, the queries an attacker who stops at success spends: the first query
    after which the true class is no longer the more probable one (p(y | best) <= 1/2,
    Square's own stopping rule), else every query of the budget.

    trace: float [num_queries, b], `square(..., return_trace=True)`'s second output.
    Returns int64 [b] in [1, num_queries]; 1 also for a point the stripes alone fool
    (e.g. one the detector already got wrong).

    Example:
        >>> queries_used(np.array([[0.9, 0.9], [0.4, 0.8], [0.4, 0.7]]))  # array([2, 3])
    """
    fooled = np.asarray(trace) <= 0.5
    if fooled.ndim != 2 or fooled.shape[0] == 0:
        raise ValueError(f"queries_used: trace must be [num_queries >= 1, b], got shape "
                         f"{fooled.shape}")
    return np.where(fooled.any(axis=0), fooled.argmax(axis=0) + 1, fooled.shape[0])


def query_metrics(trace) -> dict[str, float]:
    """A Square cell's query counts, from its trace (float [num_queries, b]):
    queries_budget (num_queries), queries_mean and queries_median over every example
    (a point never fooled costs the whole budget) and queries_median_to_flip over the
    points fooled within the budget (NaN where none was: the Square paper's statistic)."""
    trace = np.asarray(trace)
    used = queries_used(trace)
    flipped = used[np.any(trace <= 0.5, axis=0)]
    return {"queries_budget": float(trace.shape[0]), "queries_mean": float(used.mean()),
            "queries_median": float(np.median(used)),
            "queries_median_to_flip": float(np.median(flipped)) if len(flipped) else math.nan}
