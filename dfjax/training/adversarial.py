"""Adversarial training recipes: fast FGSM with random start and PGD-k (Madry).

Both attack the model in *eval* mode (BatchNorm on running statistics, no dropout),
through `dfjax.models.make_logits_fn`, with the current parameters and gradients
stopped; the weights are then trained, in train mode, on the adversarial batch.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax

from dfjax.attacks._losses import cross_entropy
from dfjax.attacks._projections import project, random_in_ball
from dfjax.attacks.pgd import pgd
from dfjax.config import TrainSpec
from dfjax.models import make_logits_fn
from dfjax.training.recipes import apply_train

DEFAULT_EPS = 8 / 255


def _eval_logits_fn(model: nn.Module, variables: dict, params) -> Callable:
    return make_logits_fn(model, {**variables, "params": jax.lax.stop_gradient(params)})


def _adversarial_loss(model: nn.Module, make_adversarial: Callable,
                      clean_weight: float = 0.0) -> Callable:
    """Cross-entropy on adversarial inputs; with clean_weight w > 0, the mix
    w * CE(x) + (1 - w) * CE(x_adv) (Goodfellow et al. 2015, arXiv:1412.6572, Eq. 6)."""
    if not 0.0 <= clean_weight < 1.0:
        raise ValueError(f"clean_weight must be in [0, 1), got {clean_weight}")

    def loss(variables, params, x, y, key):
        k_attack, k_train = jax.random.split(key)
        x_adv = jax.lax.stop_gradient(
            make_adversarial(_eval_logits_fn(model, variables, params), x, y, k_attack))
        if clean_weight == 0.0:
            logits, state = apply_train(model, variables, params, x_adv, k_train)
            return cross_entropy(logits, y).mean(), (logits, state)
        both, state = apply_train(model, variables, params,
                                  jax.numpy.concatenate([x, x_adv]), k_train)
        clean_logits, logits = both[: x.shape[0]], both[x.shape[0]:]
        value = (clean_weight * cross_entropy(clean_logits, y).mean()
                 + (1.0 - clean_weight) * cross_entropy(logits, y).mean())
        return value, (logits, state)

    return loss


def fgsm_rs(model: nn.Module, spec: TrainSpec) -> Callable:
    """Fast adversarial training (Wong, Rice & Kolter 2020, arXiv:2001.03994).

    Options: `eps` (Linf, default 8/255), `alpha` (step, default 1.25 * eps),
    `clean_weight` (default 0: adversarial inputs only; see `_adversarial_loss`). A
    uniform random start in the eps-ball, one signed-gradient step of size alpha,
    projection back to the ball and [0, 1]; train on the result.
    """
    eps = float(spec.option("eps", DEFAULT_EPS))
    alpha = float(spec.option("alpha", 1.25 * eps))

    def make_adversarial(logits_fn, x, y, key):
        x0 = random_in_ball(key, x, eps, "linf")
        grad = jax.grad(lambda xa: cross_entropy(logits_fn(xa), y).sum())(x0)
        return project(x0 + alpha * jax.numpy.sign(grad), x, eps, "linf")

    return _adversarial_loss(model, make_adversarial, float(spec.option("clean_weight", 0.0)))


def pgd_at(model: nn.Module, spec: TrainSpec) -> Callable:
    """PGD adversarial training (Madry et al. 2018, arXiv:1706.06083).

    Options: `eps` (Linf, default 8/255), `steps` (default 3), `step_size` (default
    2.5 * eps / steps, as Madry et al.), `clean_weight` (default 0, Madry's pure
    adversarial loss). Each batch is replaced by PGD-`steps` with a random start
    (`dfjax.attacks.pgd`, the model in eval mode).
    """
    eps = float(spec.option("eps", DEFAULT_EPS))
    steps = int(spec.option("steps", 3))
    step_size = float(spec.option("step_size", 2.5 * eps / steps))

    def make_adversarial(logits_fn, x, y, key):
        return pgd(logits_fn, x, y, key, eps=eps, step_size=step_size, num_steps=steps,
                   norm="linf", loss="ce", rand_init=True)

    return _adversarial_loss(model, make_adversarial, float(spec.option("clean_weight", 0.0)))
