"""Recipes: adversarial training, DP-SGD (and its hook in the loop), and that the
standard step is unchanged by the hook."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dfjax.losses import cross_entropy
from dfjax.config import ModelSpec, TrainSpec
from dfjax.data.base import Split
from dfjax.models import build_model
from dfjax.training import RECIPES, train_detector
from dfjax.training.dp_sgd import clip_and_noise
from dfjax.training.loop import create_variables, make_train_step
from dfjax.training.recipes import apply_train
from dfjax.xla import jit as dfjax_jit


def _split(n, seed, size=16):
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(np.int32)
    images = (rng.integers(0, 150, (n, size, size, 3)) + 100 * y[:, None, None, None])
    return Split(images.astype(np.uint8), y, np.arange(n), np.zeros(n, np.int32))


def test_registered():
    assert {"standard", "fgsm_rs", "pgd_at", "dp_sgd"} <= set(RECIPES.names())


def test_standard_step_is_bit_identical_to_plain_value_and_grad(batch):
    model = build_model(ModelSpec(name="cnn7_tiny"))
    spec = TrainSpec()
    opt = optax.adam(1e-3)
    v = create_variables(model, (16, 16, 3), jax.random.key(0))
    images = np.asarray(batch[0] * 255, np.uint8)
    y = batch[1]
    loss_fn = RECIPES.get("standard")(model, spec)

    @dfjax_jit  # the train step compiles with dfjax.xla's options too
    def reference_step(variables, opt_state, images_u8, y, key):  # the loop before the hook
        x = images_u8.astype(jnp.float32) / 255.0
        (loss, (_logits, state)), grads = jax.value_and_grad(
            lambda p: loss_fn(variables, p, x, y, key), has_aux=True)(variables["params"])
        updates, opt_state = opt.update(grads, opt_state, variables["params"])
        return {**state, "params": optax.apply_updates(variables["params"], updates)}, \
            opt_state, loss

    step = make_train_step(model, spec, opt)
    a, sa = v, opt.init(v["params"])
    b, sb = v, opt.init(v["params"])
    for i in range(3):
        a, sa, la, _ = step(a, sa, images, y, jax.random.key(i))
        b, sb, lb = reference_step(b, sb, images, y, jax.random.key(i))
        assert float(la) == float(lb)
    for x1, x2 in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x1), np.asarray(x2))


@pytest.mark.parametrize("recipe", ["fgsm_rs", "pgd_at"])
def test_adversarial_loss_exceeds_clean_loss(recipe, tiny_model, batch):
    model, variables, _ = tiny_model
    x, y = batch
    options = {"eps": 16 / 255, **({"steps": 3} if recipe == "pgd_at" else {})}
    spec = TrainSpec(recipe=recipe, options=options)
    clean, _ = RECIPES.get("standard")(model, TrainSpec())(variables, variables["params"], x, y,
                                                    jax.random.key(0))
    adv, (adv_logits, _) = jax.jit(RECIPES.get(recipe)(model, spec))(
        variables, variables["params"], x, y, jax.random.key(0))
    assert float(adv) > float(clean)
    assert adv_logits.shape == (8, 2)


def test_adversarial_examples_stay_in_budget(tiny_model, batch, monkeypatch):
    """Capture what pgd_at trains on: within eps of x and in [0, 1]."""
    import dfjax.training.adversarial as adv

    model, variables, _ = tiny_model
    x, y = batch
    seen = {}
    real_apply = adv.apply_train

    def spy(model_, variables_, params, xa, key):
        seen["x"] = xa
        return real_apply(model_, variables_, params, xa, key)

    monkeypatch.setattr(adv, "apply_train", spy)
    eps = 8 / 255
    for recipe in ("pgd_at", "fgsm_rs"):
        RECIPES.get(recipe)(model, TrainSpec(recipe=recipe, options={"eps": eps}))(
            variables, variables["params"], x, y, jax.random.key(0))
        xa = np.asarray(seen["x"])
        assert np.abs(xa - np.asarray(x)).max() <= eps + 1e-6
        assert xa.min() >= 0 and xa.max() <= 1
        assert np.abs(xa - np.asarray(x)).max() > eps / 2  # it did move


@pytest.mark.parametrize("recipe", ["fgsm_rs", "pgd_at"])
def test_eps_warmup_grows_the_budget_with_progress(recipe, tiny_model, batch, monkeypatch):
    """eps_warmup = 0.5: at 10% of training the budget is 0.2 eps, from 50% on all of it."""
    import dfjax.training.adversarial as adv

    model, variables, _ = tiny_model
    x, y = batch
    seen = {}
    real_apply = adv.apply_train
    monkeypatch.setattr(adv, "apply_train", lambda m, v, p, xa, k: (
        seen.__setitem__("x", xa), real_apply(m, v, p, xa, k))[1])
    eps = 16 / 255
    loss = RECIPES.get(recipe)(model, TrainSpec(recipe=recipe,
                                                options={"eps": eps, "eps_warmup": 0.5}))
    assert loss.uses_progress
    moved = {}
    for progress in (0.1, 0.5, 0.9):
        loss(variables, variables["params"], x, y, jax.random.key(0), progress)
        moved[progress] = float(np.abs(np.asarray(seen["x"]) - np.asarray(x)).max())
    assert moved[0.1] <= 0.2 * eps + 1e-6 and moved[0.1] > 0.1 * eps
    assert moved[0.5] > 0.9 * eps and moved[0.9] > 0.9 * eps
    assert max(moved.values()) <= eps + 1e-6


@pytest.mark.parametrize("recipe", ["standard", "fgsm_rs", "pgd_at", "dp_sgd"])
def test_unknown_recipe_option_is_named(recipe):
    model = build_model(ModelSpec(name="cnn7_tiny"))
    with pytest.raises(ValueError, match="eps_warmpu"):
        RECIPES.get(recipe)(model, TrainSpec(recipe=recipe, options={"eps_warmpu": 0.5}))


@pytest.mark.parametrize("recipe", ["standard", "fgsm_rs", "pgd_at", "dp_sgd"])
def test_options_read_outside_the_recipe_are_accepted(recipe):
    """warm_start_epochs (the runner) and init_from (the loop) apply to every recipe."""
    model = build_model(ModelSpec(name="cnn7_tiny"))
    RECIPES.get(recipe)(model, TrainSpec(recipe=recipe, options={
        "warm_start_epochs": 2, "init_from": "weights.msgpack"}))


@pytest.mark.parametrize("recipe", ["fgsm_rs", "pgd_at", "dp_sgd"])
def test_recipe_trains_deterministically(recipe):
    model = build_model(ModelSpec(name="cnn7_tiny"))
    spec = TrainSpec(recipe=recipe, epochs=2 if recipe == "dp_sgd" else 1, batch_size=16,
                     learning_rate=3e-3,
                     options={"steps": 2, "eps_warmup": 0.5} if recipe == "pgd_at" else {})
    train, val = _split(64, 0, size=8), _split(32, 1, size=8)
    v1, h1 = train_detector(model, train, val, spec, key=jax.random.key(0))
    v2, h2 = train_detector(model, train, val, spec, key=jax.random.key(0))
    assert all(np.isfinite(r["train_loss"]) for r in h1)
    assert [r["train_loss"] for r in h1] == [r["train_loss"] for r in h2]
    for a, b in zip(jax.tree.leaves(v1), jax.tree.leaves(v2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    if recipe == "dp_sgd":
        assert 0 < h1[0]["epsilon"] < h1[1]["epsilon"] < np.inf
    else:
        assert "epsilon" not in h1[0]


def test_dp_sgd_without_noise_and_clipping_is_the_mean_gradient(tiny_model, batch):
    model, variables, _ = tiny_model
    x, y = batch
    spec = TrainSpec(recipe="dp_sgd", options={"clip_norm": 1e6, "noise_multiplier": 0.0})
    loss_fn = RECIPES.get("dp_sgd")(model, spec)
    _, grads = jax.jit(loss_fn.value_and_grad)(variables, variables["params"], x, y,
                                               jax.random.key(0))
    expected = jax.jit(jax.grad(lambda p: cross_entropy(
        apply_train(model, variables, p, x, jax.random.key(0))[0], y).mean()))(
        variables["params"])
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_clip_and_noise_clips_each_example():
    g = {"w": jnp.array([[3.0, 4.0], [0.3, 0.4]]), "b": jnp.zeros((2, 1))}  # norms 5 and 0.5
    out = clip_and_noise(g, jax.random.key(0), clip_norm=1.0, noise_multiplier=0.0)
    np.testing.assert_allclose(out["w"], ([0.6, 0.8] + np.array([0.3, 0.4])) / 2, rtol=1e-6)
    noisy = clip_and_noise({"w": jnp.zeros((4, 20000))}, jax.random.key(0), clip_norm=2.0,
                           noise_multiplier=1.5)
    assert np.std(np.asarray(noisy["w"])) == pytest.approx(1.5 * 2.0 / 4, rel=0.05)


def test_dp_sgd_refuses_batchnorm():
    model = build_model(ModelSpec(name="resnet18_tiny"))
    v = create_variables(model, (32, 32, 3), jax.random.key(0))
    loss_fn = RECIPES.get("dp_sgd")(model, TrainSpec(recipe="dp_sgd"))
    with pytest.raises(ValueError, match="BatchNorm"):
        loss_fn.value_and_grad(v, v["params"], jnp.zeros((2, 32, 32, 3)),
                               jnp.zeros(2, jnp.int32), jax.random.key(0))
