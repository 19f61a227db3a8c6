"""attack_loop unrolls loops that take gradients and keeps forward-only ones rolled."""

import jax
import jax.numpy as jnp
import pytest

from dfjax.attacks import ATTACKS
from dfjax.attacks._loops import MAX_UNROLL, attack_loop
from dfjax.config import AttackSpec


def _while_loops(fn, *args) -> int:
    return jax.jit(fn).lower(*args).as_text().count("stablehlo.while")


def test_attack_loop_unrolls_only_gradient_loops_up_to_max_unroll():
    def body(i, c):
        return c * 1.5 + i

    x = jnp.ones(3)
    assert _while_loops(lambda x: attack_loop(5, body, x), x) == 0
    assert _while_loops(lambda x: attack_loop(5, body, x, uses_gradients=False), x) == 1
    assert _while_loops(lambda x: attack_loop(MAX_UNROLL + 1, body, x), x) == 1
    expected = jax.lax.fori_loop(0, 5, body, x)
    assert jnp.array_equal(attack_loop(5, body, x, uses_gradients=False), expected)


@pytest.mark.parametrize("name,norm,eps,count,rolled", [
    ("pgd", "linf", 8 / 255, "num_steps", False),
    ("square", "linf", 8 / 255, "num_queries", True),
    ("one_pixel", "l0", 1.0, "iterations", True),
])
def test_forward_only_attacks_run_a_rolled_loop(tiny_model, batch, name, norm, eps, count,
                                                rolled):
    """A rolled loop's compiled program does not grow with the iteration count; an
    unrolled one's grows with every step."""
    _, _, logits_fn = tiny_model
    x, y = batch

    def program_size(n):
        attack = ATTACKS.get(name).bind(
            AttackSpec(name=name, norm=norm, eps=eps, options={count: n}))
        def fn(x, y):
            return attack(logits_fn, x, y, jax.random.key(0), eps)

        return len(jax.jit(fn).lower(x, y).compile().as_text())

    growth = program_size(12) / program_size(4)
    assert (growth < 1.1) if rolled else (growth > 1.5), growth
