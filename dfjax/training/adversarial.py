"""Adversarial training recipes: fast FGSM with random start and PGD-k (Madry).

Both attack the model in *eval* mode (BatchNorm on running statistics, no dropout),
through `dfjax.models.make_logits_fn`, with the current parameters and gradients
stopped; the weights are then trained, in train mode, on the adversarial batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dfjax.attacks._projections import project, random_in_ball
from dfjax.attacks.pgd import pgd
from dfjax.config import TrainSpec
from dfjax.losses import cross_entropy
from dfjax.models import make_logits_fn
from dfjax.training.base import (
    Recipe,
    RecipeEntry,
    apply_train,
    check_fraction,
    check_positive,
)

DEFAULT_EPS = 8 / 255


def _eval_logits_fn(model: nn.Module, variables: dict, params) -> Callable:
    return make_logits_fn(model, {**variables, "params": jax.lax.stop_gradient(params)})


def eps_schedule(eps: float, warmup: float) -> Callable:
    """progress in [0, 1] -> the budget at that point of training: eps * progress /
    warmup while progress < warmup, then eps (a linear warm-up, as in Gowal et al.
    2018, arXiv:1810.12715; warmup = 0: eps throughout)."""
    if warmup == 0.0:
        return lambda progress: eps
    return lambda progress: eps * jnp.minimum(1.0, (progress + 1e-6) / warmup)


def _adversarial_loss(model: nn.Module, make_adversarial: Callable,
                      clean_weight: float = 0.0) -> Callable:
    """Cross-entropy on adversarial inputs; with clean_weight w > 0, the mix
    w * CE(x) + (1 - w) * CE(x_adv) (Goodfellow et al. 2015, arXiv:1412.6572, Eq. 6).
    `make_adversarial(logits_fn, x, y, key, progress)`; progress in [0, 1] is the
    fraction of training done (for the eps warm-up)."""

    def loss(variables, params, x, y, key, progress):
        k_attack, k_train = jax.random.split(key)
        x_adv = jax.lax.stop_gradient(make_adversarial(
            _eval_logits_fn(model, variables, params), x, y, k_attack, progress))
        if clean_weight == 0.0:
            logits, state = apply_train(model, variables, params, x_adv, k_train)
            return cross_entropy(logits, y).mean(), (logits, state)
        both, state = apply_train(model, variables, params, jnp.concatenate([x, x_adv]),
                                  k_train)
        clean_logits, logits = both[: x.shape[0]], both[x.shape[0]:]
        value = (clean_weight * cross_entropy(clean_logits, y).mean()
                 + (1.0 - clean_weight) * cross_entropy(logits, y).mean())
        return value, (logits, state)

    return loss


def _check_adversarial(options: dict[str, Any], step_option: str) -> None:
    check_positive("eps", options["eps"], allow_zero=True)
    check_positive(step_option, options[step_option], allow_none=True)
    check_fraction("clean_weight", options["clean_weight"], upper_open=True)
    check_fraction("eps_warmup", options["eps_warmup"])


def check_fgsm_rs(options: dict[str, Any]) -> None:
    _check_adversarial(options, "alpha")


def check_pgd_at(options: dict[str, Any]) -> None:
    _check_adversarial(options, "step_size")
    steps = options["steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")


def build_fgsm_rs(model: nn.Module, spec: TrainSpec, options: dict[str, Any]) -> Recipe:
    """Fast adversarial training (Wong, Rice & Kolter 2020, arXiv:2001.03994).

    A uniform random start in the Linf eps-ball, one signed-gradient step of size
    alpha, projection back to the ball and [0, 1]; train on the result. Options (see
    FGSM_RS): eps, alpha (None: 1.25 * eps; scales with eps under the warm-up),
    clean_weight (see `_adversarial_loss`), eps_warmup (see `eps_schedule`).
    """
    del spec
    eps_max = float(options["eps"])
    alpha = options["alpha"]
    alpha_ratio = float(1.25 * eps_max if alpha is None else alpha) / max(eps_max, 1e-12)
    schedule = eps_schedule(eps_max, float(options["eps_warmup"]))

    def make_adversarial(logits_fn, x, y, key, progress):
        eps = schedule(progress)
        x0 = random_in_ball(key, x, eps, "linf")
        grad = jax.grad(lambda xa: cross_entropy(logits_fn(xa), y).sum())(x0)
        return project(x0 + alpha_ratio * eps * jnp.sign(grad), x, eps, "linf")

    return Recipe(loss=_adversarial_loss(model, make_adversarial,
                                         float(options["clean_weight"])))


def build_pgd_at(model: nn.Module, spec: TrainSpec, options: dict[str, Any]) -> Recipe:
    """PGD adversarial training (Madry et al. 2018, arXiv:1706.06083).

    Each batch is replaced by PGD-`steps` with a random start (`dfjax.attacks.pgd`, the
    model in eval mode). Options (see PGD_AT): eps, steps, step_size (None: 2.5 * eps /
    steps, as Madry et al.; scales with eps under the warm-up), clean_weight (0:
    Madry's pure adversarial loss), eps_warmup (see `eps_schedule`).

    The constant predictor (loss ln 2, clean = robust = 0.5) attracts PGD-AT on a
    detection task with few robust cues. Measured on an H100 (cnn7, 64x64, 6000 train
    images, eps 8/255, from scratch), on synthetic_faces with a swap exposure jump:
    without warm-up one run learned the cue and one collapsed; with the budget warmed
    up over 4 of 8 epochs it reached PGD-10 robust accuracy 0.64 (clean 0.67). On
    synthetic_faces 1.0.0 (no cue survives 2/255) every setting collapsed.
    """
    del spec
    eps_max = float(options["eps"])
    steps = int(options["steps"])
    step_size = options["step_size"]
    step_ratio = (float(2.5 * eps_max / steps if step_size is None else step_size)
                  / max(eps_max, 1e-12))
    schedule = eps_schedule(eps_max, float(options["eps_warmup"]))

    def make_adversarial(logits_fn, x, y, key, progress):
        eps = schedule(progress)
        return pgd(logits_fn, x, y, key, eps=eps, step_size=step_ratio * eps, num_steps=steps,
                   norm="linf", loss="ce", rand_init=True)

    return Recipe(loss=_adversarial_loss(model, make_adversarial,
                                         float(options["clean_weight"])))


FGSM_RS = RecipeEntry(
    build=build_fgsm_rs, check=check_fgsm_rs,
    options={"eps": DEFAULT_EPS, "alpha": None, "clean_weight": 0.0, "eps_warmup": 0.0},
    description="fast FGSM adversarial training with a random start (Wong et al. 2020); "
                "alpha None = 1.25 eps")
PGD_AT = RecipeEntry(
    build=build_pgd_at, check=check_pgd_at,
    options={"eps": DEFAULT_EPS, "steps": 3, "step_size": None, "clean_weight": 0.0,
             "eps_warmup": 0.0},
    description="PGD-k adversarial training (Madry et al. 2018); step_size None = "
                "2.5 eps / steps")
