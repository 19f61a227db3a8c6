"""Speed is not bought with correctness: the optimised attack (fast layers, compiled with
dfjax.xla's options) gives the same x_adv as a plain jax.grad PGD on the plain layers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dfjax.attacks import fgsm, pgd
from dfjax.losses import cross_entropy
from dfjax.attacks._projections import random_in_ball
from dfjax.models import MODELS, make_logits_fn
from dfjax.xla import jit as dfjax_jit

EPS, STEP, STEPS = 8 / 255, 2 / 255, 10


def reference_pgd(logits_fn, x, y, key):
    """Linf PGD as in the paper's formula, a Python loop over plain jax.grad: random
    start, sign steps, clip to the eps-box and [0, 1]; returns the highest-loss iterate."""
    def losses(xa):
        return cross_entropy(logits_fn(xa), y)

    grad = jax.jit(jax.grad(lambda xa: losses(xa).sum()))
    x_cur = random_in_ball(jax.random.fold_in(key, 0), x, EPS, "linf")
    best_x, best_loss = x_cur, jnp.full(y.shape, -jnp.inf)
    for step in range(STEPS + 1):
        loss = losses(x_cur)
        better = (loss > best_loss)[:, None, None, None]
        best_x, best_loss = jnp.where(better, x_cur, best_x), jnp.maximum(loss, best_loss)
        if step == STEPS:
            break
        x_next = x_cur + STEP * jnp.sign(grad(x_cur))
        x_cur = jnp.clip(jnp.clip(x_next, x - EPS, x + EPS), 0.0, 1.0)
    return best_x


@pytest.mark.parametrize("name", ["cnn7_tiny", "meso4_tiny", "cnn7", "meso4"])
def test_optimised_pgd_equals_plain_jax_grad_pgd(name):
    x = jax.random.uniform(jax.random.key(1), (8, 32, 32, 3))
    y = jnp.arange(8) % 2
    plain = MODELS.get(name).module(fast=False)
    variables = plain.init(jax.random.key(0), x[:1], train=False)
    fast_fn = make_logits_fn(MODELS.get(name).module(), variables)
    key = jax.random.key(2)
    optimised = dfjax_jit(lambda x, y: pgd(fast_fn, x, y, key, eps=EPS, step_size=STEP,
                                           num_steps=STEPS))(x, y)
    expected = reference_pgd(make_logits_fn(plain, variables), x, y, key)
    # sign(grad) is discontinuous at 0, so the trajectories could part where a gradient
    # component is at rounding level; at these shapes they agree to the last bit.
    np.testing.assert_allclose(optimised, expected, rtol=0, atol=1e-6)
    assert float(jnp.abs(optimised - x).max()) > 0.9 * EPS  # a real attack

    optimised = dfjax_jit(lambda x, y: fgsm(fast_fn, x, y, key, eps=EPS))(x, y)
    g = jax.grad(lambda xa: cross_entropy(make_logits_fn(plain, variables)(xa), y).sum())(x)
    np.testing.assert_allclose(optimised, jnp.clip(x + EPS * jnp.sign(g), 0, 1),
                               rtol=0, atol=1e-6)
