"""Projected gradient descent (Madry et al. 2018, arXiv:1706.06083)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dfjax.attacks._checks import check_batch, check_budget, check_choice, check_steps
from dfjax.attacks._loops import attack_loop
from dfjax.losses import LOSSES, true_class_probability
from dfjax.attacks._projections import ascent_direction, project, random_in_ball
from dfjax.attacks._restarts import best_over_restarts
from dfjax.types import Images, Labels, LogitsFn


def _pgd_run(logits_fn, x, y, key, *, eps, step_size, num_steps, norm, loss_fn, rand_init,
             attacked):
    """One PGD trajectory: (x_best, best_loss [b], trace [num_steps + 1, b])."""
    def per_example_loss(xa):
        logits = logits_fn(xa)
        losses = loss_fn(logits, y)
        return losses.sum(), (losses, logits)

    value_and_grad = jax.value_and_grad(per_example_loss, has_aux=True)
    x0 = random_in_ball(key, x, eps, norm) if rand_init else x
    x0 = jnp.where(attacked[:, None, None, None], x0, x)
    best_loss = jnp.full((x.shape[0],), -jnp.inf, x.dtype)
    trace = jnp.zeros((num_steps + 1, x.shape[0]), jnp.float32)

    def keep_best(x_cur, losses, x_best, best_loss):
        better = losses > best_loss
        x_best = jnp.where(better[:, None, None, None], x_cur, x_best)
        return x_best, jnp.where(better, losses, best_loss)

    def step(i, carry):
        x_cur, x_best, best_loss, trace = carry
        (_, (losses, logits)), grad = value_and_grad(x_cur)
        trace = trace.at[i].set(true_class_probability(logits, y))
        x_best, best_loss = keep_best(x_cur, losses, x_best, best_loss)
        x_next = project(x_cur + step_size * ascent_direction(grad, norm), x, eps, norm)
        x_next = jnp.where(attacked[:, None, None, None], x_next, x)
        return x_next, x_best, best_loss, trace

    x_last, x_best, best_loss, trace = attack_loop(
        num_steps, step, (x0, x0, best_loss, trace))
    logits = logits_fn(x_last)
    trace = trace.at[num_steps].set(true_class_probability(logits, y))
    x_best, best_loss = keep_best(x_last, loss_fn(logits, y), x_best, best_loss)
    return x_best, best_loss, trace


def pgd(
    logits_fn: LogitsFn, x: Images, y: Labels, key: jax.Array, *, eps, step_size, num_steps: int,
    norm: str = "linf", loss: str = "ce", rand_init: bool = True, num_restarts: int = 1,
    targeted: bool = False, target_class: int = 0, return_trace: bool = False,
):
    """Iterated gradient ascent on `loss`, projected onto the eps-ball and [0, 1].

    x: float32 [b, h, w, c] in [0, 1]; y: int [b]. `num_steps`, `norm`, `loss`,
    `rand_init`, `num_restarts`, `targeted`, `target_class`, `return_trace` are static;
    `eps` and `step_size` may be traced (a budget sweep compiles once); the loop is
    `attack_loop` (a lax loop, unrolled: see _loops.py).

    Returns, per example, the iterate with the highest loss seen over all steps and
    restarts (restart r starts from a random point drawn with fold_in(key, r)), so
    more steps or restarts never weaken the attack on a given trajectory.

    targeted=True minimises the loss towards `target_class` (default 0 = "real": make a
    fake look real); examples whose label already is the target are returned unchanged.

    return_trace=True returns (x_adv, trace): trace float32 [num_steps + 1, b] is the
    true-class probability p(y | x_t) after t = 0..num_steps steps (row 0: the start),
    read from logits the attack computes anyway; with restarts, the minimum over
    restarts at each t (the strongest restart so far).

    Example:
        >>> x_adv = pgd(logits_fn, x, y, key, eps=8/255, step_size=2/255, num_steps=10)
    """
    check_batch(x, y)
    check_budget(eps, norm)
    check_steps(num_steps)
    check_steps(num_restarts, "num_restarts")
    check_choice(loss, LOSSES, "loss")
    base_loss = LOSSES[loss]
    if targeted:
        target = jnp.full_like(y, target_class)
        attacked = y != target_class

        def loss_fn(logits, _):
            return -base_loss(logits, target)
    else:
        attacked = jnp.ones(y.shape, bool)
        loss_fn = base_loss

    best_x, _, trace = best_over_restarts(
        lambda k: _pgd_run(logits_fn, x, y, k, eps=eps, step_size=step_size,
                           num_steps=num_steps, norm=norm, loss_fn=loss_fn,
                           rand_init=rand_init, attacked=attacked), key, num_restarts)
    best_x = jnp.where(attacked[:, None, None, None], best_x, x)
    return (best_x, trace) if return_trace else best_x
