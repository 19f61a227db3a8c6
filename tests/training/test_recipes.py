"""Recipes: entries declare and check their options; adversarial training; DP-SGD (optax's
aggregation, the loop's per-example gradients); the standard step is unchanged."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dfjax.config import ModelSpec, TrainSpec
from dfjax.data.base import Split
from dfjax.losses import cross_entropy
from dfjax.models import build_model
from dfjax.registry import OptionError
from dfjax.training import RECIPES, Recipe, RecipeEntry, build_recipe, train_detector
from dfjax.training.accountant import dp_sgd_epsilon
from dfjax.training.base import apply_train
from dfjax.training.dp_sgd import noise_key
from dfjax.training.loop import (
    _per_example_value_and_grad,
    create_variables,
    make_optimizer,
    make_train_step,
)
from dfjax.xla import jit as dfjax_jit

ALL = ["standard", "fgsm_rs", "pgd_at", "dp_sgd"]


def _split(n, seed, size=16):
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(np.int32)
    images = (rng.integers(0, 150, (n, size, size, 3)) + 100 * y[:, None, None, None])
    return Split(images.astype(np.uint8), y, np.arange(n), np.zeros(n, np.int32))


def test_registered_as_recipe_entries():
    assert set(ALL) <= set(RECIPES.names())
    for name, entry in RECIPES.items():
        assert isinstance(entry, RecipeEntry), name
        assert {"warm_start_epochs", "init_from"} <= set(entry.options), name


def test_defaults_are_declared():
    assert RECIPES.resolve("pgd_at", {}) == {
        "eps": 8 / 255, "steps": 3, "step_size": None, "clean_weight": 0.0,
        "eps_warmup": 0.0, "warm_start_epochs": 0, "init_from": None}
    assert RECIPES.resolve("dp_sgd", {"noise_multiplier": 2.0})["noise_multiplier"] == 2.0
    assert RECIPES.resolve("dp_sgd", {})["accountant"] == "rdp"


def test_build_gives_a_recipe_value(tiny_model):
    model, _, _ = tiny_model
    standard = build_recipe(model, TrainSpec())
    assert isinstance(standard, Recipe)
    assert not standard.per_example and standard.gradient_transform is None
    assert standard.privacy is None
    dp = build_recipe(model, TrainSpec(recipe="dp_sgd"))
    assert dp.per_example and isinstance(dp.gradient_transform, optax.GradientTransformation)
    assert dp.privacy is not None


def test_standard_step_is_bit_identical_to_plain_value_and_grad(batch):
    model = build_model(ModelSpec(name="cnn7_tiny"))
    spec = TrainSpec()
    v = create_variables(model, (16, 16, 3), jax.random.key(0))
    images = np.asarray(batch[0] * 255, np.uint8)
    y = batch[1]

    def plain_loss(variables, params, x, y, key):  # the paper's Eq. 4, written out
        logits, state = apply_train(model, variables, params, x, key)
        return cross_entropy(logits, y).mean(), (logits, state)

    opt = optax.adam(1e-3)

    @dfjax_jit  # the train step compiles with dfjax.xla's options too
    def reference_step(variables, opt_state, images_u8, y, key):
        x = images_u8.astype(jnp.float32) / 255.0
        (loss, (_logits, state)), grads = jax.value_and_grad(
            lambda p: plain_loss(variables, p, x, y, key), has_aux=True)(variables["params"])
        updates, opt_state = opt.update(grads, opt_state, variables["params"])
        return {**state, "params": optax.apply_updates(variables["params"], updates)}, \
            opt_state, loss

    recipe = build_recipe(model, spec)
    optimizer = make_optimizer(spec, recipe)
    step = make_train_step(recipe, optimizer)
    a, sa = v, optimizer.init(v["params"])
    b, sb = v, opt.init(v["params"])
    for i in range(3):
        a, sa, la, _ = step(a, sa, images, y, jax.random.key(i), jnp.float32(i / 3))
        b, sb, lb = reference_step(b, sb, images, y, jax.random.key(i))
        assert float(la) == float(lb)
    for x1, x2 in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x1), np.asarray(x2))


@pytest.mark.parametrize("recipe", ["fgsm_rs", "pgd_at"])
def test_adversarial_loss_exceeds_clean_loss(recipe, tiny_model, batch):
    model, variables, _ = tiny_model
    x, y = batch
    options = {"eps": 16 / 255, **({"steps": 3} if recipe == "pgd_at" else {})}
    clean, _ = build_recipe(model, TrainSpec()).loss(variables, variables["params"], x, y,
                                                     jax.random.key(0), 1.0)
    adv, (adv_logits, _) = jax.jit(build_recipe(model, TrainSpec(recipe=recipe,
                                                                 options=options)).loss)(
        variables, variables["params"], x, y, jax.random.key(0), 1.0)
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
        build_recipe(model, TrainSpec(recipe=recipe, options={"eps": eps})).loss(
            variables, variables["params"], x, y, jax.random.key(0), 1.0)
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
    loss = build_recipe(model, TrainSpec(recipe=recipe,
                                         options={"eps": eps, "eps_warmup": 0.5})).loss
    moved = {}
    for progress in (0.1, 0.5, 0.9):
        loss(variables, variables["params"], x, y, jax.random.key(0), progress)
        moved[progress] = float(np.abs(np.asarray(seen["x"]) - np.asarray(x)).max())
    assert moved[0.1] <= 0.2 * eps + 1e-6 and moved[0.1] > 0.1 * eps
    assert moved[0.5] > 0.9 * eps and moved[0.9] > 0.9 * eps
    assert max(moved.values()) <= eps + 1e-6


@pytest.mark.parametrize("recipe", ALL)
def test_unknown_recipe_option_is_named(recipe):
    with pytest.raises(OptionError, match="eps_warmpu"):
        RECIPES.resolve(recipe, {"eps_warmpu": 0.5})
    model = build_model(ModelSpec(name="cnn7_tiny"))
    with pytest.raises(OptionError, match=f"training '{recipe}'.*eps_warmpu"):
        build_recipe(model, TrainSpec(recipe=recipe, options={"eps_warmpu": 0.5}))


@pytest.mark.parametrize("recipe, options, match", [
    ("pgd_at", {"eps_warmup": 1.5}, "eps_warmup"),
    ("pgd_at", {"clean_weight": 1.0}, "clean_weight"),
    ("pgd_at", {"steps": 0}, "steps"),
    ("pgd_at", {"step_size": -0.1}, "step_size"),
    ("fgsm_rs", {"eps": -1.0}, "eps"),
    ("fgsm_rs", {"alpha": 0.0}, "alpha"),
    ("fgsm_rs", {"eps_warmup": -0.1}, "eps_warmup"),
    ("dp_sgd", {"delta": 0.0}, "delta"),
    ("dp_sgd", {"clip_norm": 0.0}, "clip_norm"),
    ("dp_sgd", {"noise_multiplier": -1.0}, "noise_multiplier"),
    ("dp_sgd", {"accountant": "moments"}, "accountant"),
    ("standard", {"warm_start_epochs": -1}, "warm_start_epochs"),
    ("standard", {"init_from": 3}, "init_from"),
])
def test_bad_values_are_refused_without_a_model(recipe, options, match):
    with pytest.raises(OptionError, match=match):
        RECIPES.resolve(recipe, options)


@pytest.mark.parametrize("recipe", ALL)
def test_options_read_outside_the_recipe_are_accepted(recipe):
    """warm_start_epochs (the runner) and init_from (the loop) apply to every recipe."""
    given = {"warm_start_epochs": 2, "init_from": "weights.msgpack"}
    assert RECIPES.resolve(recipe, given).items() >= given.items()
    model = build_model(ModelSpec(name="cnn7_tiny"))
    build_recipe(model, TrainSpec(recipe=recipe, options=given))


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
        assert h1[1]["epsilon"] == dp_sgd_epsilon(num_examples=64, batch_size=16,
                                                  noise_multiplier=1.1, steps=8, delta=1e-5)
        assert h1[0]["accountant"] == "rdp" and h1[0]["delta"] == 1e-5
    else:
        assert "epsilon" not in h1[0]


def test_dp_sgd_privacy_names_its_accountant(tiny_model):
    model, _, _ = tiny_model
    for accountant in ("rdp", "pld"):
        spec = TrainSpec(recipe="dp_sgd", batch_size=32,
                         options={"accountant": accountant, "noise_multiplier": 1.3})
        record = build_recipe(model, spec).privacy(100, 600)
        assert record == {"epsilon": dp_sgd_epsilon(
            num_examples=600, batch_size=32, noise_multiplier=1.3, steps=100, delta=1e-5,
            accountant=accountant), "delta": 1e-5, "accountant": accountant}


def _dp_gradient(recipe, per_example_grads, params):
    """What the DP optimizer's first stage (optax's aggregation) makes of the gradients."""
    transform = recipe.gradient_transform
    out, _ = transform.update(per_example_grads, transform.init(params), params)
    return out


def test_dp_sgd_without_noise_and_clipping_is_the_mean_gradient(tiny_model, batch):
    model, variables, _ = tiny_model
    x, y = batch
    recipe = build_recipe(model, TrainSpec(recipe="dp_sgd", options={
        "clip_norm": 1e6, "noise_multiplier": 0.0}))
    (_, (logits, _)), per_example = jax.jit(
        lambda p: _per_example_value_and_grad(recipe.loss, variables, p, x, y,
                                              jax.random.key(0), 0.0))(variables["params"])
    assert logits.shape == (8, 2)
    grads = _dp_gradient(recipe, per_example, variables["params"])
    expected = jax.jit(jax.grad(lambda p: cross_entropy(
        apply_train(model, variables, p, x, jax.random.key(0))[0], y).mean()))(
        variables["params"])
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_dp_aggregation_without_noise_is_the_clipped_mean_by_hand(tiny_model):
    """Abadi et al., Algorithm 1: each example's whole gradient clipped to C, summed, / b."""
    model, _, _ = tiny_model
    clip = 0.5
    recipe = build_recipe(model, TrainSpec(recipe="dp_sgd", options={
        "clip_norm": clip, "noise_multiplier": 0.0}))
    rng = np.random.default_rng(0)
    per_example = {"w": rng.normal(size=(6, 3, 4)).astype(np.float32),
                   "b": rng.normal(size=(6, 4)).astype(np.float32)}
    per_example["w"][0] *= 1e-3  # one example already inside the ball
    norms = np.sqrt((per_example["w"] ** 2).sum((1, 2)) + (per_example["b"] ** 2).sum(1))
    scale = np.minimum(1.0, clip / norms)
    expected = {k: np.tensordot(scale, g, axes=1) / 6 for k, g in per_example.items()}
    params = {k: jnp.zeros(g.shape[1:]) for k, g in per_example.items()}
    out = _dp_gradient(recipe, jax.tree.map(jnp.asarray, per_example), params)
    for k in expected:
        np.testing.assert_allclose(np.asarray(out[k]), expected[k], rtol=1e-6, atol=1e-7)


def test_dp_noise_has_std_sigma_c_over_b(tiny_model):
    model, _, _ = tiny_model
    sigma, clip, b = 1.5, 2.0, 4
    spec = TrainSpec(recipe="dp_sgd", options={"clip_norm": clip, "noise_multiplier": sigma})
    recipe = build_recipe(model, spec)
    params = {"w": jnp.zeros(20000)}
    noisy = _dp_gradient(recipe, {"w": jnp.zeros((b, 20000))}, params)["w"]
    assert np.std(np.asarray(noisy)) == pytest.approx(sigma * clip / b, rel=0.03)
    assert abs(float(np.mean(np.asarray(noisy)))) < 0.05 * sigma * clip / b
    # the noise key is the spec's seed's: same seed, same noise; another seed, other noise
    again = _dp_gradient(build_recipe(model, spec), {"w": jnp.zeros((b, 20000))}, params)["w"]
    np.testing.assert_array_equal(np.asarray(noisy), np.asarray(again))
    other = _dp_gradient(build_recipe(model, TrainSpec(recipe="dp_sgd", seed=1, options={
        "clip_norm": clip, "noise_multiplier": sigma})), {"w": jnp.zeros((b, 20000))},
        params)["w"]
    assert not np.array_equal(np.asarray(noisy), np.asarray(other))
    assert not jnp.array_equal(jax.random.key_data(noise_key(spec)),
                               jax.random.key_data(noise_key(TrainSpec(seed=1))))


def test_dp_sgd_refuses_batchnorm():
    model = build_model(ModelSpec(name="resnet18_tiny"))
    v = create_variables(model, (32, 32, 3), jax.random.key(0))
    spec = TrainSpec(recipe="dp_sgd")
    recipe = build_recipe(model, spec)
    optimizer = make_optimizer(spec, recipe)
    step = make_train_step(recipe, optimizer)
    with pytest.raises(ValueError, match="BatchNorm"):
        step(v, optimizer.init(v["params"]), np.zeros((2, 32, 32, 3), np.uint8),
             np.zeros(2, np.int32), jax.random.key(0), jnp.float32(0.0))
