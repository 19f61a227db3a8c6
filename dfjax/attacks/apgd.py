"""Auto-PGD (Croce & Hein 2020, arXiv:2003.01690): PGD without a step-size to tune."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from dfjax.attacks._checks import check_batch, check_budget, check_choice, check_steps
from dfjax.attacks._loops import attack_loop
from dfjax.losses import LOSSES, true_class_probability
from dfjax.attacks._projections import ascent_direction, project, random_in_ball
from dfjax.attacks._restarts import best_over_restarts
from dfjax.types import Images, Labels, LogitsFn

MOMENTUM = 0.75  # alpha of Eq. (2)
RHO = 0.75  # condition 1: fraction of steps since the last checkpoint that raised the loss


def checkpoints(num_steps: int) -> list[int]:
    """The iterations w_j at which APGD may halve its step (Sec. 3.2).

    p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06); w_j = ceil(p_j N).
    Computed in Python from the static num_steps, so the schedule is a constant under jit.
    """
    p = [0.0, 0.22]
    while p[-1] < 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    w = {math.ceil(round(pj * num_steps, 6)) for pj in p[1:]}  # round: 0.57 * 100 is 57.0000001
    return sorted(x for x in w if 0 < x < num_steps)


def apgd(
    logits_fn: LogitsFn, x: Images, y: Labels, key: jax.Array, *, eps, num_steps: int,
    norm: str = "linf", loss: str = "ce", num_restarts: int = 1, rand_init: bool = True,
    return_trace: bool = False,
):
    """APGD: momentum 0.75, step 2 eps halved at checkpoints, best point kept.

    At checkpoint w_j the step eta of an example is halved, and its iterate restarts
    from its best point, when (1) fewer than RHO of the steps since w_{j-1} raised the
    loss, or (2) eta was not halved at w_{j-1} and the best loss has not improved since.

    x: float32 [b, h, w, c] in [0, 1]; y: int [b]. `num_steps` (gradient evaluations,
    as for PGD), `norm`, `loss` ("ce" or "margin": the 2-class logit margin, see
    `apgd_margin`), `num_restarts`, `return_trace` are static; eps is traced.
    Returns x_adv [b, h, w, c] with ||x_adv - x|| <= eps, or (x_adv, trace) with trace
    float32 [num_steps + 1, b] = p(y | x_t), as for `pgd`.

    Example:
        >>> x_adv = apgd(logits_fn, x, y, key, eps=8/255, num_steps=20, loss="ce")
    """
    check_batch(x, y)
    check_budget(eps, norm)
    check_steps(num_steps)
    check_steps(num_restarts, "num_restarts")
    check_choice(loss, LOSSES, "loss")
    loss_fn = LOSSES[loss]
    best_x, _, trace = best_over_restarts(
        lambda k: _apgd_run(logits_fn, x, y, k, eps=eps, num_steps=num_steps, norm=norm,
                            loss_fn=loss_fn, rand_init=rand_init), key, num_restarts)
    return (best_x, trace) if return_trace else best_x


def _apgd_run(logits_fn, x, y, key, *, eps, num_steps, norm, loss_fn, rand_init):
    b = x.shape[0]
    bcast = (b, 1, 1, 1)
    w = checkpoints(num_steps)
    is_checkpoint = np.zeros(num_steps + 1, bool)
    is_checkpoint[w] = True
    since = np.zeros(num_steps + 1, np.float32)  # w_j - w_{j-1} at each checkpoint
    for prev, cur in zip([0] + w[:-1], w):
        since[cur] = cur - prev
    is_checkpoint, since = jnp.asarray(is_checkpoint), jnp.asarray(since)

    def value_and_grad(xa):
        def total(v):
            logits = logits_fn(v)
            losses = loss_fn(logits, y)
            return losses.sum(), (losses, logits)
        (_, (losses, logits)), grad = jax.value_and_grad(total, has_aux=True)(xa)
        return losses, logits, grad

    x0 = random_in_ball(key, x, eps, norm) if rand_init else x
    loss0, logits0, grad0 = value_and_grad(x0)
    eta = jnp.full((b,), 2.0, x.dtype) * eps
    x1 = project(x0 + eta.reshape(bcast) * ascent_direction(grad0, norm), x, eps, norm)
    trace = jnp.zeros((num_steps + 1, b), jnp.float32).at[0].set(
        true_class_probability(logits0, y))
    state = dict(
        x_prev=x0, x_cur=x1, loss_prev=loss0, x_best=x0, loss_best=loss0, grad_best=grad0,
        eta=eta, increases=jnp.zeros((b,), x.dtype), reduced_last=jnp.ones((b,), bool),
        loss_best_last=loss0, trace=trace)

    def step(k, s):  # evaluates x_k, k = 1 .. num_steps - 1, and moves to x_{k+1}
        losses, logits, grad = value_and_grad(s["x_cur"])
        trace = s["trace"].at[k].set(true_class_probability(logits, y))
        increases = s["increases"] + (losses > s["loss_prev"])
        better = losses > s["loss_best"]
        x_best = jnp.where(better.reshape(bcast), s["x_cur"], s["x_best"])
        grad_best = jnp.where(better.reshape(bcast), grad, s["grad_best"])
        loss_best = jnp.where(better, losses, s["loss_best"])
        # checkpoint: condition 1 or 2 halves eta and restarts from the best point
        ckpt = is_checkpoint[k]
        cond1 = increases < RHO * since[k]
        cond2 = ~s["reduced_last"] & (loss_best <= s["loss_best_last"])
        reduce = ckpt & (cond1 | cond2)
        eta = jnp.where(reduce, s["eta"] / 2, s["eta"])
        r4 = reduce.reshape(bcast)
        x_cur = jnp.where(r4, x_best, s["x_cur"])
        x_prev = jnp.where(r4, x_best, s["x_prev"])
        grad = jnp.where(r4, grad_best, grad)
        z = project(x_cur + eta.reshape(bcast) * ascent_direction(grad, norm), x, eps, norm)
        x_next = project(x_cur + MOMENTUM * (z - x_cur) + (1 - MOMENTUM) * (x_cur - x_prev),
                         x, eps, norm)
        return dict(
            x_prev=x_cur, x_cur=x_next, loss_prev=losses, x_best=x_best, loss_best=loss_best,
            grad_best=grad_best, eta=eta,
            increases=jnp.where(ckpt, jnp.zeros_like(increases), increases),
            reduced_last=jnp.where(ckpt, reduce, s["reduced_last"]),
            loss_best_last=jnp.where(ckpt, loss_best, s["loss_best_last"]), trace=trace)

    if num_steps > 1:
        state = attack_loop(num_steps - 1, lambda i, s: step(i + 1, s), state)
    logits = logits_fn(state["x_cur"])
    losses = loss_fn(logits, y)
    better = losses > state["loss_best"]
    x_best = jnp.where(better.reshape(bcast), state["x_cur"], state["x_best"])
    loss_best = jnp.where(better, losses, state["loss_best"])
    trace = state["trace"].at[num_steps].set(true_class_probability(logits, y))
    return x_best, loss_best, trace
