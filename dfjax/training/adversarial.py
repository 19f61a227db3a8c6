"""Adversarial training recipes: fast FGSM with random start and PGD-k (Madry).

Both attack the model in *eval* mode (BatchNorm on running statistics, no dropout),
through `dfjax.models.make_logits_fn`, with the current parameters and gradients
stopped; the weights are then trained, in train mode, on the adversarial batch.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from dfjax.losses import cross_entropy
from dfjax.attacks._projections import project, random_in_ball
from dfjax.attacks.pgd import pgd
from dfjax.config import TrainSpec
from dfjax.models import make_logits_fn
from dfjax.training.recipes import apply_train, check_options

DEFAULT_EPS = 8 / 255


def _eval_logits_fn(model: nn.Module, variables: dict, params) -> Callable:
    return make_logits_fn(model, {**variables, "params": jax.lax.stop_gradient(params)})


def eps_schedule(eps: float, warmup: float) -> Callable:
    """progress in [0, 1] -> the budget at that point of training: eps * progress /
    warmup while progress < warmup, then eps (a linear warm-up, as in Gowal et al.
    2018, arXiv:1810.12715; warmup = 0: eps throughout)."""
    if not 0.0 <= warmup <= 1.0:
        raise ValueError(f"eps_warmup must be in [0, 1] (a fraction of training), got {warmup}")
    if warmup == 0.0:
        return lambda progress: eps
    return lambda progress: eps * jnp.minimum(1.0, (progress + 1e-6) / warmup)


def _adversarial_loss(model: nn.Module, make_adversarial: Callable,
                      clean_weight: float = 0.0) -> Callable:
    """Cross-entropy on adversarial inputs; with clean_weight w > 0, the mix
    w * CE(x) + (1 - w) * CE(x_adv) (Goodfellow et al. 2015, arXiv:1412.6572, Eq. 6).
    `make_adversarial(logits_fn, x, y, key, progress)`; progress in [0, 1] is the
    fraction of training done (for the eps warm-up)."""
    if not 0.0 <= clean_weight < 1.0:
        raise ValueError(f"clean_weight must be in [0, 1), got {clean_weight}")

    def loss(variables, params, x, y, key, progress=1.0):
        k_attack, k_train = jax.random.split(key)
        x_adv = jax.lax.stop_gradient(make_adversarial(
            _eval_logits_fn(model, variables, params), x, y, k_attack, progress))
        if clean_weight == 0.0:
            logits, state = apply_train(model, variables, params, x_adv, k_train)
            return cross_entropy(logits, y).mean(), (logits, state)
        both, state = apply_train(model, variables, params,
                                  jax.numpy.concatenate([x, x_adv]), k_train)
        clean_logits, logits = both[: x.shape[0]], both[x.shape[0]:]
        value = (clean_weight * cross_entropy(clean_logits, y).mean()
                 + (1.0 - clean_weight) * cross_entropy(logits, y).mean())
        return value, (logits, state)

    loss.uses_progress = True
    return loss


def fgsm_rs(model: nn.Module, spec: TrainSpec) -> Callable:
    """Fast adversarial training (Wong, Rice & Kolter 2020, arXiv:2001.03994).

    Options: `eps` (Linf, default 8/255), `alpha` (step, default 1.25 * eps),
    `clean_weight` (default 0: adversarial inputs only; see `_adversarial_loss`),
    `eps_warmup` (default 0; see `eps_schedule`; alpha scales with eps). A uniform
    random start in the eps-ball, one signed-gradient step of size alpha, projection
    back to the ball and [0, 1]; train on the result.
    """
    check_options(spec, {"eps", "alpha", "clean_weight", "eps_warmup"})
    eps_max = float(spec.option("eps", DEFAULT_EPS))
    alpha_ratio = float(spec.option("alpha", 1.25 * eps_max)) / max(eps_max, 1e-12)
    schedule = eps_schedule(eps_max, float(spec.option("eps_warmup", 0.0)))

    def make_adversarial(logits_fn, x, y, key, progress):
        eps = schedule(progress)
        x0 = random_in_ball(key, x, eps, "linf")
        grad = jax.grad(lambda xa: cross_entropy(logits_fn(xa), y).sum())(x0)
        return project(x0 + alpha_ratio * eps * jnp.sign(grad), x, eps, "linf")

    return _adversarial_loss(model, make_adversarial, float(spec.option("clean_weight", 0.0)))


def pgd_at(model: nn.Module, spec: TrainSpec) -> Callable:
    """PGD adversarial training (Madry et al. 2018, arXiv:1706.06083).

    Options: `eps` (Linf, default 8/255), `steps` (default 3), `step_size` (default
    2.5 * eps / steps, as Madry et al.), `clean_weight` (default 0, Madry's pure
    adversarial loss), `eps_warmup` (default 0; see `eps_schedule`; the step size
    scales with eps). Each batch is replaced by PGD-`steps` with a random start
    (`dfjax.attacks.pgd`, the model in eval mode).

    The constant predictor (loss ln 2, clean = robust = 0.5) attracts PGD-AT on a
    detection task with few robust cues. Measured on an H100 (cnn7, 64x64, 6000 train
    images, eps 8/255, from scratch), on synthetic_faces with a swap exposure jump:
    without warm-up one run learned the cue and one collapsed; with the budget warmed
    up over 4 of 8 epochs it reached PGD-10 robust accuracy 0.64 (clean 0.67). On
    synthetic_faces 1.0.0 (no cue survives 2/255) every setting collapsed.
    """
    check_options(spec, {"eps", "steps", "step_size", "clean_weight", "eps_warmup"})
    eps_max = float(spec.option("eps", DEFAULT_EPS))
    steps = int(spec.option("steps", 3))
    step_ratio = float(spec.option("step_size", 2.5 * eps_max / steps)) / max(eps_max, 1e-12)
    schedule = eps_schedule(eps_max, float(spec.option("eps_warmup", 0.0)))

    def make_adversarial(logits_fn, x, y, key, progress):
        eps = schedule(progress)
        return pgd(logits_fn, x, y, key, eps=eps, step_size=step_ratio * eps, num_steps=steps,
                   norm="linf", loss="ce", rand_init=True)

    return _adversarial_loss(model, make_adversarial, float(spec.option("clean_weight", 0.0)))
