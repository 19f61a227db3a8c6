"""The model zoo beyond tests/models/test_models.py: full sizes at 64x64 (shapes
only, via eval_shape), tiny ones at 64x64, and a few training steps lower the loss."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dfjax.config import ModelSpec, TrainSpec
from dfjax.models import MODELS, build_model
from dfjax.training.loop import create_variables
from dfjax.training.recipes import build_recipe

TINY = [n for n in MODELS.names() if n.endswith("_tiny")]
FULL = [n for n in MODELS.names() if not n.endswith("_tiny")]


def test_zoo_has_every_model_and_a_tiny_variant_of_each():
    for name in ("cnn7", "cnn6", "meso4", "mesoinception4", "xception", "xception_small",
                 "resnet18", "resnet50", "gan_disc"):
        assert name in MODELS
    for name in ("cnn7", "cnn6", "meso4", "mesoinception4", "xception", "resnet18", "resnet50",
                 "gan_disc"):
        assert f"{name}_tiny" in MODELS


@pytest.mark.parametrize("name", FULL + TINY)
@pytest.mark.parametrize("num_logits", [1])  # both heads are run for real in test_models.py
def test_every_model_at_64_shapes(name, num_logits):
    model = build_model(ModelSpec(name=name, num_logits=num_logits))
    x = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
    assert out.shape == (2, num_logits) and out.dtype == jnp.float32


@pytest.mark.parametrize("name", ["meso4_tiny"])
def test_tiny_models_run_at_64(name):
    model = build_model(ModelSpec(name=name))
    x = jnp.full((2, 64, 64, 3), 0.5)
    variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(x)
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
    assert logits.shape == (2, 2) and bool(jnp.all(jnp.isfinite(logits)))


def _resnet18_tiny_and_batch():
    model = build_model(ModelSpec(name="resnet18_tiny"))
    x = jnp.asarray(np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32))
    return model, create_variables(model, x.shape[1:], jax.random.key(0)), x


def test_batchnorm_models_update_batch_stats_in_train_mode():
    model, v, x = _resnet18_tiny_and_batch()
    assert "batch_stats" in v
    _, state = model.apply(v, x, train=True, mutable=["batch_stats"])
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), v["batch_stats"],
                           state["batch_stats"])
    assert any(jax.tree.leaves(changed))  # train mode updates running statistics


def test_batchnorm_models_eval_mode_is_pure():
    """train=False (how attacks see the model): with every collection mutable, nothing is
    written back; the same input gives the same logits twice; and each example's logits
    do not depend on the rest of the batch (running statistics, not batch statistics)."""
    model, v, x = _resnet18_tiny_and_batch()
    logits, state = model.apply(v, x, train=False, mutable=True)
    assert jax.tree.structure(state) == jax.tree.structure(v)
    unchanged = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), v, state)
    assert all(jax.tree.leaves(unchanged)), unchanged
    np.testing.assert_array_equal(logits, model.apply(v, x, train=False))
    np.testing.assert_array_equal(model.apply(v, x, train=False),
                                  model.apply(v, x, train=False))
    alone = jnp.concatenate([model.apply(v, x[i:i + 1], train=False) for i in range(len(x))])
    np.testing.assert_allclose(alone, logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", TINY)
def test_tiny_model_few_steps_lower_loss(name):
    model = build_model(ModelSpec(name=name))
    rng = np.random.default_rng(0)
    y = jnp.asarray(np.arange(16) % 2, jnp.int32)
    x = jnp.asarray(np.clip(rng.random((16, 32, 32, 3)) * 0.6 + 0.4 * y[:, None, None, None],
                            0, 1).astype(np.float32))
    variables = create_variables(model, x.shape[1:], jax.random.key(0))
    loss_fn = build_recipe(model, TrainSpec()).loss
    opt = optax.adam(3e-3)
    opt_state = opt.init(variables["params"])
    key = jax.random.key(1)  # one dropout key, so losses before/after are comparable

    @jax.jit
    def step(variables, opt_state):
        (loss, (_, state)), g = jax.value_and_grad(
            lambda p: loss_fn(variables, p, x, y, key, 0.0), has_aux=True)(variables["params"])
        updates, opt_state = opt.update(g, opt_state, variables["params"])
        return {**state, "params": optax.apply_updates(variables["params"], updates)}, \
            opt_state, loss

    losses = []
    for _ in range(6):
        variables, opt_state, loss = step(variables, opt_state)
        losses.append(float(loss))
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0]
