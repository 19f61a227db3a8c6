"""Fast gradient sign method (Goodfellow et al. 2015, arXiv:1412.6572)."""

from __future__ import annotations

import jax

from dfjax.attacks._checks import check_batch, check_budget
from dfjax.losses import LOSSES
from dfjax.attacks._projections import ascent_direction, project
from dfjax.types import Images, Labels, LogitsFn


def fgsm(
    logits_fn: LogitsFn, x: Images, y: Labels, key: jax.Array, *, eps, norm: str = "linf",
    loss: str = "ce",
) -> Images:
    """One step of size eps along the loss gradient's sign (Linf) or direction (L2).

    x: float32 [b, h, w, c] in [0, 1]; y: int [b]. Returns x_adv with
    ||x_adv - x|| <= eps and 0 <= x_adv <= 1. `key` is unused (FGSM is deterministic).
    """
    del key
    check_batch(x, y)
    check_budget(eps, norm)
    loss_fn = LOSSES[loss]
    grad = jax.grad(lambda xa: loss_fn(logits_fn(xa), y).sum())(x)
    return project(x + eps * ascent_direction(grad, norm), x, eps, norm)
