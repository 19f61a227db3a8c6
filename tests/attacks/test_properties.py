"""Properties every registered attack must have -- new attacks are checked automatically."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dfjax.attacks import ATTACKS
from dfjax.config import AttackSpec

# Every pure attack; the ensemble (`auto`, no fn) is checked in test_ensemble_and_traces.py.
SINGLE = [name for name in ATTACKS.names() if ATTACKS.get(name).fn is not None]
CASES = [(name, norm) for name in SINGLE for norm in ATTACKS.get(name).norms]
EPS = {"linf": 8 / 255, "l2": 0.5, "l0": 2.0}
SWEEP = {"linf": (1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255), "l2": (0.1, 0.25, 0.5, 1.0),
         "l0": (1.0, 2.0, 3.0)}
# Test-sized static options: at most 3 iterations of anything (for whichever an attack has).
TINY = {"num_steps": 3, "num_queries": 4, "iterations": 2, "population": 4,
        "binary_search_steps": 2, "num_pixels": 3}


def bound(name, norm, eps, **extra_static):
    """The attack with test-sized options."""
    entry = ATTACKS.get(name)
    options = {k: v for k, v in TINY.items() if k in entry.options}
    return entry.bind(AttackSpec(name=name, norm=norm, eps=eps, options=options), **extra_static)


def realised(x_adv, x, norm):
    d = np.asarray(x_adv - x)
    if norm == "l0":
        return np.any(d != 0, axis=-1).reshape(x.shape[0], -1).sum(1)
    d = d.reshape(x.shape[0], -1)
    return np.abs(d).max(1) if norm == "linf" else np.sqrt((d.astype(np.float64) ** 2).sum(1))


@pytest.mark.parametrize("name,norm", CASES)
@pytest.mark.parametrize("logits", ["tiny_model", "tiny_model_1logit"])
def test_budget_and_pixel_range(name, norm, logits, batch, request):
    _, _, logits_fn = request.getfixturevalue(logits)
    x, y = batch
    eps = EPS[norm]
    x_adv = jax.jit(lambda x, y, k: bound(name, norm, eps)(logits_fn, x, y, k, eps))(
        x, y, jax.random.key(1))
    assert x_adv.shape == x.shape and x_adv.dtype == jnp.float32
    assert realised(x_adv, x, norm).max() <= eps + 1e-6
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0


@pytest.mark.parametrize("name,norm", CASES)
def test_same_key_same_output_and_jit_equals_eager(name, norm, tiny_model, batch):
    _, _, logits_fn = tiny_model
    x, y = batch
    eps = EPS[norm]
    attack = bound(name, norm, eps)
    key = jax.random.key(3)
    jitted = jax.jit(lambda x, y, k: attack(logits_fn, x, y, k, eps))
    a, b = jitted(x, y, key), jitted(x, y, key)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    eager = attack(logits_fn, x, y, key, eps)
    np.testing.assert_allclose(np.asarray(eager), np.asarray(a), atol=1e-5)


@pytest.mark.parametrize("name,norm", CASES)
def test_eps_zero_leaves_inputs_unchanged(name, norm, tiny_model, batch):
    _, _, logits_fn = tiny_model
    x, y = batch
    x_adv = bound(name, norm, 0.0)(logits_fn, x, y, jax.random.key(0), 0.0)
    np.testing.assert_array_equal(np.asarray(x_adv), np.asarray(x))


@pytest.mark.parametrize("name", SINGLE)
def test_eps_sweep_compiles_once(name, tiny_model, batch):
    _, variables, _ = tiny_model
    model = tiny_model[0]
    x, y = batch
    norm = ATTACKS.get(name).norms[0]
    attack = bound(name, norm, 0.0)
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(variables, x, y, key, eps):
        return attack(lambda v: model.apply(variables, v, train=False), x, y, key, eps)

    for eps in SWEEP[norm]:
        x_adv = run(variables, x, y, jax.random.key(0), jnp.float32(eps))
        assert realised(x_adv, x, norm).max() <= eps + 1e-6
    assert run._cache_size() == 1


def test_pgd_moves_loss_up(tiny_model, batch):
    """A sanity check that PGD actually ascends the loss on a random model."""
    from dfjax.losses import cross_entropy

    _, _, logits_fn = tiny_model
    x, y = batch
    x_adv = bound("pgd", "linf", 16 / 255)(logits_fn, x, y, jax.random.key(0), 16 / 255)
    assert float(cross_entropy(logits_fn(x_adv), y).mean()) > float(
        cross_entropy(logits_fn(x), y).mean())


@pytest.mark.parametrize("bad", [
    dict(eps=-0.1), dict(eps=2.0), dict(norm="l7"),
])
def test_bad_budget_rejected(bad, tiny_model, batch):
    _, _, logits_fn = tiny_model
    x, y = batch
    kw = dict(eps=0.1, norm="linf") | bad
    with pytest.raises(ValueError):
        ATTACKS.get("fgsm").fn(logits_fn, x, y, jax.random.key(0), **kw)


def test_bad_steps_and_shapes_rejected(tiny_model, batch):
    _, _, logits_fn = tiny_model
    x, y = batch
    pgd = ATTACKS.get("pgd").fn
    with pytest.raises(ValueError, match="num_steps"):
        pgd(logits_fn, x, y, jax.random.key(0), eps=0.1, step_size=0.01, num_steps=0)
    with pytest.raises(ValueError, match="y must be"):
        pgd(logits_fn, x, y[:3], jax.random.key(0), eps=0.1, step_size=0.01, num_steps=2)
    with pytest.raises(ValueError, match="no option"):
        ATTACKS.get("pgd").bind(AttackSpec(name="pgd", eps=0.1, options={"stepz": 3}))
