"""Carlini-Wagner L2 (Carlini & Wagner 2017, arXiv:1608.04644): a minimal-norm attack."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from dfjax.attacks._checks import check_batch, check_budget, check_steps
from dfjax.attacks._loops import attack_loop
from dfjax.losses import margin
from dfjax.types import Images, Labels, LogitsFn


def _l2(a, b):
    d = (a - b).reshape(a.shape[0], -1)
    return jnp.sqrt(jnp.sum(d * d, axis=1))


def cw_l2_minimal(
    logits_fn: LogitsFn, x: Images, y: Labels, *, num_steps: int, binary_search_steps: int,
    learning_rate: float = 0.01, initial_const: float = 0.1, kappa: float = 0.0,
) -> tuple[Images, jax.Array]:
    """The smallest-L2 misclassified point found, and its distance.

    Minimises ||x' - x||_2^2 + c * max(z_y - z_other, -kappa) over x' = (tanh(w) + 1) / 2
    with Adam (`optax.adam(learning_rate)`, `num_steps` steps; w and Adam's state
    restarted for each c), and a per-example binary search over c
    (`binary_search_steps` rounds: c x10 until a success, then bisection).
    Returns (x_min [b, h, w, c] in [0, 1], l2 [b]); l2 = inf (and x_min = x) where no
    misclassified point was found; l2 = 0 for examples misclassified already.
    """
    b = x.shape[0]
    bcast = (b, 1, 1, 1)
    w0 = jnp.arctanh(jnp.clip(2 * x - 1, -1 + 1e-6, 1 - 1e-6))
    fooled0 = margin(logits_fn(x), y) > 0
    best_l2 = jnp.where(fooled0, 0.0, jnp.inf).astype(x.dtype)
    best_x = x

    def objective(w, const):
        x_adv = (jnp.tanh(w) + 1) / 2
        logits = logits_fn(x_adv)
        m = margin(logits, y)
        dist2 = jnp.sum(((x_adv - x) ** 2).reshape(b, -1), axis=1)
        total = dist2 + const * jnp.maximum(-m, -kappa)
        return total.sum(), (x_adv, m)

    grad_fn = jax.grad(objective, has_aux=True)
    adam = optax.adam(learning_rate)
    const = jnp.full((b,), initial_const, x.dtype)
    lower, upper = jnp.zeros_like(const), jnp.full_like(const, jnp.inf)
    for _ in range(binary_search_steps):  # static, few
        def step(t, carry):
            del t
            w, adam_state, best_x, best_l2, success = carry
            grad, (x_adv, m) = grad_fn(w, const)
            # x_adv, m belong to the current w: record it before moving
            l2 = _l2(x_adv, x)
            improved = (m > 0) & (l2 < best_l2)
            best_x = jnp.where(improved.reshape(bcast), x_adv, best_x)
            best_l2 = jnp.where(improved, l2, best_l2)
            success = success | (m > 0)
            updates, adam_state = adam.update(grad, adam_state)
            w = optax.apply_updates(w, updates)
            return w, adam_state, best_x, best_l2, success

        w, _, best_x, best_l2, success = attack_loop(
            num_steps, step, (w0, adam.init(w0), best_x, best_l2, jnp.zeros((b,), bool)))
        x_last = (jnp.tanh(w) + 1) / 2  # the last Adam step's point
        m_last, l2_last = margin(logits_fn(x_last), y), _l2(x_last, x)
        improved = (m_last > 0) & (l2_last < best_l2)
        best_x = jnp.where(improved.reshape(bcast), x_last, best_x)
        best_l2 = jnp.where(improved, l2_last, best_l2)
        success = success | (m_last > 0)
        upper = jnp.where(success, jnp.minimum(upper, const), upper)
        lower = jnp.where(success, lower, jnp.maximum(lower, const))
        const = jnp.where(jnp.isinf(upper), const * 10, (lower + upper) / 2)
    return jnp.clip(best_x, 0.0, 1.0), best_l2


def cw_l2(
    logits_fn: LogitsFn, x: Images, y: Labels, key: jax.Array, *, eps, norm: str = "l2",
    num_steps: int = 100, binary_search_steps: int = 5, learning_rate: float = 0.01,
    initial_const: float = 0.1, kappa: float = 0.0, return_distance: bool = False,
):
    """C&W L2 judged at budget eps: an example counts as flipped iff the minimal
    adversarial found has ||x_adv - x||_2 <= eps; then x_adv is returned, else x
    itself (projecting a larger minimal perturbation onto the ball would test a
    different, non-minimal point). So the budget always holds exactly.

    x: float32 [b, h, w, c] in [0, 1]; y: int [b]; `key` unused (deterministic).
    return_distance=True returns (x_adv, l2_to_flip [b]): the minimal distance found,
    inf where none. eps is traced; the optimisation does not depend on it.

    Example:
        >>> x_adv = cw_l2(logits_fn, x, y, key, eps=0.5, num_steps=100, binary_search_steps=5)
    """
    del key
    check_batch(x, y)
    check_budget(eps, norm)
    if norm != "l2":
        raise ValueError(f"cw_l2 is an l2 attack, not {norm!r}")
    check_steps(num_steps)
    check_steps(binary_search_steps, "binary_search_steps")
    x_min, l2 = cw_l2_minimal(logits_fn, x, y, num_steps=num_steps,
                              binary_search_steps=binary_search_steps,
                              learning_rate=learning_rate, initial_const=initial_const,
                              kappa=kappa)
    within = _l2(x_min, x) <= eps
    x_adv = jnp.where(within.reshape(x.shape[0], 1, 1, 1), x_min, x)
    return (x_adv, l2) if return_distance else x_adv
