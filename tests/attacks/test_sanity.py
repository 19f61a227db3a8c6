"""The sanity checks (dfjax/attacks/sanity.py) fire on deliberately broken detectors and
stay quiet on a plain, trained cnn7 -- each broken detector is that same cnn7 behind one
broken layer."""


import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dfjax.attacks.evaluate import AttackEvaluator
from dfjax.runner import run_cell
from dfjax.training.detectors import Detector

pytestmark = pytest.mark.slow

FLAGS = ("sanity_nondeterministic", "sanity_probability_outputs", "sanity_zero_gradients",
         "sanity_unbounded_not_broken", "sanity_more_steps_help")


class Rounding(nn.Module):
    """The detector on x rounded to 1/255: its input gradient is zero everywhere."""

    inner: nn.Module

    def __call__(self, x, train=False):
        return self.inner(jnp.round(x * 255) / 255, train=train)


def _random_mask(shape):
    rng = np.random.default_rng()  # hidden randomness: what the check must catch
    return (rng.random(shape) > 0.1).astype(np.float32)


class RandomDrop(nn.Module):
    """The detector on x with 10% of its pixels dropped at random on every call, from a
    host RNG the evaluation knows nothing about."""

    inner: nn.Module

    def __call__(self, x, train=False):
        mask = jax.pure_callback(_random_mask, jax.ShapeDtypeStruct(x.shape, jnp.float32),
                                 x.shape, vmap_method="broadcast_all")
        return self.inner(x * jax.lax.stop_gradient(mask), train=train)


class Softmax(nn.Module):
    """The detector returning probabilities instead of logits."""

    inner: nn.Module

    def __call__(self, x, train=False):
        return jax.nn.softmax(self.inner(x, train=train), axis=-1)


def _run(trained, model, name="fgsm", **options):
    detector = Detector(model, {"params": {"inner": trained.variables["params"]}}
                        if model is not trained.model else trained.variables, [], 0.0, False)
    cell = trained.cell(name, 8 / 255, n_eval=64, **options)
    metrics, _, _ = run_cell(cell, detector, trained.test, AttackEvaluator(), 64)
    return {flag: metrics.get(flag) for flag in FLAGS}, metrics


def test_quiet_on_a_plain_trained_cnn7(trained_cnn7):
    flags, metrics = _run(trained_cnn7, trained_cnn7.model, "pgd", num_steps=20)
    assert metrics["clean_accuracy"] > 0.85
    assert flags == dict.fromkeys(FLAGS, 0.0), metrics


@pytest.mark.parametrize("wrapper,fires", [
    (Rounding, {"sanity_zero_gradients", "sanity_unbounded_not_broken"}),
    (RandomDrop, {"sanity_nondeterministic"}),
    (Softmax, {"sanity_probability_outputs"}),
])
def test_fires_on_a_broken_detector(trained_cnn7, wrapper, fires):
    flags, metrics = _run(trained_cnn7, wrapper(trained_cnn7.model))
    fired = {name for name, value in flags.items() if value == 1.0}
    assert fires <= fired, metrics
    if wrapper is Rounding:
        assert metrics["sanity_zero_gradient_fraction"] == 1.0


def test_rising_with_eps_is_flagged_across_cells():
    from dfjax.reporting.tables import add_rising_with_eps

    base = dict(status="ok", dataset="d", model="m", training="t", defence="none",
                norm="linf", n_examples=64)
    rows = [dict(base, attack="pgd", eps=e, robust_accuracy=r)
            for e, r in ((0.0, 0.9), (0.01, 0.5), (0.02, 0.6), (0.03, 0.51))]
    rows += [dict(base, attack="fgsm", eps=e, robust_accuracy=r)
             for e, r in ((0.0, 0.9), (0.01, 0.5), (0.02, 0.6))]
    add_rising_with_eps(rows)
    assert [r["sanity_rising_with_eps"] for r in rows[:4]] == [0.0, 0.0, 1.0, 0.0]
    assert all("sanity_rising_with_eps" not in r for r in rows[4:])  # one-step: no check
