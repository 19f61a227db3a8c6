"""NaN/Inf detection (dfjax.numerics) and where training raises it (dfjax.training.loop)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dfjax.config import ModelSpec, TrainSpec
from dfjax.data.base import Split
from dfjax.models import build_model
from dfjax.numerics import (
    NonFiniteError,
    all_finite,
    count_nonfinite,
    first_nonfinite_index,
    nonfinite_rows,
)
from dfjax.training.base import Recipe
from dfjax.training.loop import (
    NONFINITE_CHECK_STEPS,
    check_step_losses,
    make_train_step,
    train_detector,
)


def test_first_nonfinite_index_finds_the_first_bad_row():
    assert first_nonfinite_index(np.array([0.5, 1.0, np.inf, np.nan])) == 2
    trace = np.ones((5, 3), np.float32)
    trace[3, 2] = np.nan
    trace[4, 2] = np.inf
    assert first_nonfinite_index(trace) == 3
    assert first_nonfinite_index(trace, axis=1) == 2
    assert first_nonfinite_index(np.ones((4, 2))) is None
    assert first_nonfinite_index(np.zeros((0,))) is None


def test_counts_of_nonfinite_entries_and_rows():
    logits = np.array([[0.0, 1.0], [np.nan, np.nan], [-np.inf, 2.0], [3.0, 4.0]])
    assert count_nonfinite(logits) == 3
    assert nonfinite_rows(logits) == 2
    assert nonfinite_rows(np.arange(6).reshape(3, 2)) == 0  # ints are always finite


def test_all_finite_is_jittable_and_sees_one_bad_leaf():
    tree = {"a": jnp.ones((3, 2)), "b": {"c": jnp.array([1.0, 2.0])}}
    assert bool(jax.jit(all_finite)(tree))
    tree["b"]["c"] = jnp.array([1.0, jnp.inf])
    assert not bool(jax.jit(all_finite)(tree))


def test_check_step_losses_names_epoch_and_absolute_step():
    check_step_losses([jnp.float32(1.0), jnp.float32(0.5)], epoch=1, first_step=0,
                      recipe_name="standard")  # finite: no error
    losses = [jnp.float32(0.7), jnp.float32(0.6), jnp.float32(jnp.nan), jnp.float32(1.0)]
    with pytest.raises(NonFiniteError, match="epoch 3, step 34.*was 0.6") as error:
        check_step_losses(losses, epoch=3, first_step=32, recipe_name="standard")
    assert (error.value.epoch, error.value.step) == (3, 34)


class _SqrtOfZeroWeight(nn.Module):
    """A linear model plus 0 * sqrt(|w0|) with w0 = 0: a finite loss whose gradient is NaN."""

    num_logits: int = 2

    @nn.compact
    def __call__(self, x, train=False):
        w0 = self.param("w0", nn.initializers.zeros, ())
        logits = nn.Dense(self.num_logits)(x.reshape(len(x), -1))
        return logits + 0.0 * jnp.sqrt(jnp.abs(w0))


def test_train_step_reports_a_nan_loss_when_only_the_gradient_is_nan():
    model = _SqrtOfZeroWeight()
    x = np.full((4, 2, 2, 3), 128, np.uint8)
    y = np.array([0, 1, 0, 1], np.int32)
    variables = dict(model.init(jax.random.key(0), jnp.zeros((1, 2, 2, 3))))

    def loss(variables, params, x, y, key, progress):
        logits = model.apply({"params": params}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), (logits, {})

    optimizer = optax.adam(1e-3)
    step = make_train_step(Recipe(loss=loss), optimizer)
    plain_loss, _ = loss(variables, variables["params"], x / 255.0, y, None, 0.0)
    assert np.isfinite(float(plain_loss))  # the loss itself is finite ...
    _, _, reported, _ = step(variables, optimizer.init(variables["params"]), x, y,
                             jax.random.key(0), jnp.float32(0.0))
    assert np.isnan(float(reported))  # ... but its gradient is not, and the step says so


class _NanOnWhiteImages(nn.Module):
    """A linear detector whose logits are NaN on an all-white image (every pixel 255)."""

    num_logits: int = 2

    @nn.compact
    def __call__(self, x, train=False):
        logits = nn.Dense(self.num_logits)(x.reshape(len(x), -1))
        white = jnp.all(x == 1.0, axis=(1, 2, 3))
        return jnp.where(white[:, None], jnp.nan, logits)


def _split(images, labels):
    n = len(images)
    return Split(images, labels, np.arange(n), np.zeros(n, np.int32))


@pytest.mark.parametrize("n,bad_step", [(96, 5), (800, 70)])
def test_train_detector_stops_at_the_epoch_and_step_where_the_loss_turned_nan(n, bad_step):
    """One all-white training image makes its batch's loss NaN: the error names the step
    whose batch held it. The image is put where the loop's documented shuffle
    (permutation with fold_in(key, epoch + 1)) takes it at `bad_step` of epoch 1; 800
    examples in batches of 8 make 100 steps, so the losses are checked in several chunks
    of NONFINITE_CHECK_STEPS and the step must still be counted across them."""
    batch_size = 8
    key = jax.random.key(3)
    order = np.asarray(jax.random.permutation(jax.random.fold_in(key, 1), n))
    bad_index = int(order[bad_step * batch_size])
    rng = np.random.default_rng(0)
    images = rng.integers(0, 200, (n, 4, 4, 3), dtype=np.uint8)
    images[bad_index] = 255
    train = _split(images, rng.integers(0, 2, n).astype(np.int32))
    spec = TrainSpec(recipe="standard", epochs=2, batch_size=batch_size)
    if n == 800:
        assert bad_step > 2 * NONFINITE_CHECK_STEPS  # past the first chunks
    with pytest.raises(NonFiniteError, match=f"epoch 1, step {bad_step}\\b") as error:
        train_detector(_NanOnWhiteImages(), train, train, spec, key=key)
    assert (error.value.epoch, error.value.step) == (1, bad_step)
    assert error.value.what == "training loss or gradient"


def test_train_detector_raises_on_a_diverging_learning_rate():
    """cnn7_tiny with Adam at lr 1e8 overflows to NaN once its weights have moved; step 0's
    loss (at the initial weights) is finite, so the error names a later step of epoch 1."""
    rng = np.random.default_rng(1)
    train = _split(rng.integers(0, 256, (64, 8, 8, 3), dtype=np.uint8),
                   rng.integers(0, 2, 64).astype(np.int32))
    spec = TrainSpec(recipe="standard", epochs=1, batch_size=8, learning_rate=1e8)
    with pytest.raises(NonFiniteError, match="diverged.*epoch 1, step [1-7]\\b"):
        train_detector(build_model(ModelSpec(name="cnn7_tiny")), train, train, spec,
                       key=jax.random.key(0))


def test_validation_loss_that_is_not_finite_is_an_error():
    rng = np.random.default_rng(2)
    train = _split(rng.integers(0, 200, (16, 4, 4, 3), dtype=np.uint8),
                   rng.integers(0, 2, 16).astype(np.int32))
    validation = _split(np.full((4, 4, 4, 3), 255, np.uint8), np.zeros(4, np.int32))
    spec = TrainSpec(recipe="standard", epochs=2, batch_size=8)
    with pytest.raises(NonFiniteError, match="validation loss is nan after epoch 1"):
        train_detector(_NanOnWhiteImages(), train, validation, spec, key=jax.random.key(0))


def _batch_outputs(b=4, steps=3):
    """A finite evaluation output dict, as AttackEvaluator's compiled function returns."""
    return {"clean": np.zeros((b, 2), np.float32), "adv": np.ones((b, 2), np.float32),
            "trace": np.full((steps + 1, b), 0.5, np.float32), "linf": np.zeros(b, np.float32),
            "l2": np.zeros(b, np.float32), "l0": np.zeros(b, np.int32)}


@pytest.mark.parametrize("poison,what,step,message", [
    (lambda o: o["clean"].__setitem__((1, 0), np.nan), "clean logits", None,
     "clean logits are NaN/Inf on 1 of 4"),
    (lambda o: o["trace"].__setitem__((slice(2, None), 3), np.nan), "attack logits", 2,
     "went NaN/Inf at attack step 2 .* on 1 of 4"),
    (lambda o: o["adv"].__setitem__((slice(0, 2), 1), np.inf), "adversarial logits", None,
     "adversarial examples are NaN/Inf on 2 of 4"),
    (lambda o: o["linf"].__setitem__(0, np.nan), "adversarial examples", None,
     "adversarial examples are NaN/Inf on 1 of 4"),
])
def test_check_finite_outputs_names_what_went_nonfinite_and_the_step(poison, what, step,
                                                                     message):
    from dfjax.attacks.evaluate import check_finite_outputs

    check_finite_outputs(_batch_outputs(), "pgd", 0)  # finite: no error
    outputs = _batch_outputs()
    poison(outputs)
    with pytest.raises(NonFiniteError, match=f"attack pgd, batch 7: .*{message}") as error:
        check_finite_outputs(outputs, "pgd", 7)
    assert (error.value.what, error.value.step) == (what, step)
