"""The defence axis: each transform does what it says, options are checked before anything
runs, and the attack form (BPDA, EOT, non-adaptive) is the one each defence declares."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from dfjax.config import DefenceSpec
from dfjax.defences import DEFENCES, defended_logits
from dfjax.defences._adaptive import example_keys
from dfjax.defences.bit_depth import bit_depth
from dfjax.defences.blur import blur, gaussian_kernel
from dfjax.defences.jpeg import differentiable_jpeg, jpeg, jpeg_round_trip, soft_round
from dfjax.defences.median import median
from dfjax.defences.random_resize_pad import random_resize_pad
from dfjax.registry import OptionError


@pytest.fixture()
def images():
    rng = np.random.default_rng(0)
    return rng.random((4, 16, 16, 3)).astype(np.float32)


def test_jpeg_is_a_real_opencv_round_trip(images):
    out = np.asarray(jax.jit(lambda x: jpeg(x, None, quality=75))(jnp.asarray(images)))
    np.testing.assert_array_equal(out, jpeg_round_trip(images, 75))
    assert 0 < np.abs(out - images).mean() < 0.2
    assert np.all(np.abs(out * 255 - np.round(out * 255)) < 1e-4)  # decoded 8-bit pixels


def test_bit_depth_rounds_to_the_levels(images):
    out = np.asarray(bit_depth(jnp.asarray(images), None, bits=3))
    np.testing.assert_allclose(out * 7, np.round(out * 7), atol=1e-5)
    assert np.abs(out - images).max() <= 0.5 / 7 + 1e-6


def test_median_matches_scipy_for_odd_windows(images):
    out = np.asarray(median(jnp.asarray(images), None, size=3))
    want = ndimage.median_filter(images, size=(1, 3, 3, 1), mode="mirror")
    np.testing.assert_allclose(out, want, atol=1e-6)


def test_blur_matches_scipy(images):
    out = np.asarray(blur(jnp.asarray(images), None, sigma=1.0))
    want = ndimage.correlate1d(images, gaussian_kernel(1.0), axis=1, mode="mirror")
    want = ndimage.correlate1d(want, gaussian_kernel(1.0), axis=2, mode="mirror")
    np.testing.assert_allclose(out, want, atol=1e-5)


def test_random_resize_pad_draws_per_key_and_pads_with_zeros(images):
    x = jnp.asarray(images)
    keys = jax.random.split(jax.random.key(0), 4)
    a, b = random_resize_pad(x, keys, min_scale=0.8), random_resize_pad(x, keys, min_scale=0.8)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    other = random_resize_pad(x, jax.random.split(jax.random.key(1), 4), min_scale=0.8)
    assert not np.array_equal(np.asarray(a), np.asarray(other))
    assert a.shape == x.shape and float(a.min()) >= 0.0


def test_example_keys_follow_the_content(images):
    x = jnp.asarray(images)
    keys = example_keys(jax.random.key(0), x)
    again = example_keys(jax.random.key(0), x)
    moved = example_keys(jax.random.key(0), x.at[0, 0, 0, 0].add(1 / 255))
    data = [jax.random.key_data(k) for k in (keys, again, moved)]
    np.testing.assert_array_equal(data[0], data[1])
    assert not np.array_equal(data[0][0], data[2][0])
    np.testing.assert_array_equal(data[0][1:], data[2][1:])


@pytest.mark.parametrize("name,options,match", [
    ("jpeg", {"quality": 0}, "quality must be an int in 1..100"),
    ("jpeg", {"quality": 101}, "quality"),
    ("bit_depth", {"bits": 9}, "bits must be an int in 1..8"),
    ("bit_depth", {"bits": 0}, "bits"),
    ("median", {"size": 1}, "size"),
    ("blur", {"sigma": 0.0}, "sigma"),
    ("smoothing", {"sigma": 0.0}, "sigma must be a finite number > 0"),
    ("smoothing", {"sigma": -1.0}, "sigma"),
    ("smoothing", {"certify_n": 0}, "certify_n must be an int >= 1"),
    ("smoothing", {"certify_n0": 0}, "certify_n0 must be an int >= 1"),
    ("smoothing", {"certify_alpha": 1.0}, "alpha"),
    ("smoothing", {"certify_alpha": 0.0}, "alpha"),
    ("smoothing", {"eot_samples": 0}, "eot_samples must be an int >= 1"),
    ("random_resize_pad", {"eot_samples": 0}, "eot_samples"),
    ("random_resize_pad", {"min_scale": 1.0}, "min_scale"),
    ("jpeg", {"adaptive": "no"}, "adaptive must be True or False"),
    ("jpeg", {"qualty": 50}, r"has no option\(s\) \['qualty'\]"),
])
def test_bad_options_rejected_before_anything_runs(name, options, match):
    with pytest.raises(OptionError, match=match):
        DEFENCES.resolve(name, options)


def _linear_detector():
    w = jax.random.normal(jax.random.key(3), (16 * 16 * 3,)) / 30

    class Linear:
        def apply(self, variables, x, train=False):
            z = x.reshape(x.shape[0], -1) @ (variables["w"] * 1.0)
            return jnp.stack([jnp.zeros_like(z), z], axis=-1)

    return Linear(), {"w": w}


def _bpda_loss_and_gradients(name, surrogate, images):
    """(attacked(x), bare(t(x)), grad of the attacked form, the BPDA gradient wanted:
    the bare detector's gradient at t(x) pulled back through `surrogate` at x)."""
    model, variables = _linear_detector()
    x, y = jnp.asarray(images), jnp.array([0, 1, 0, 1])
    defended = defended_logits(model, DefenceSpec(name=name))(variables, jax.random.key(0))
    bare = lambda z: model.apply(variables, z)  # noqa: E731
    transformed = (jnp.asarray(jpeg_round_trip(images, 75)) if name == "jpeg"
                   else bit_depth(x, None, bits=3))

    def loss_at(z):
        return jax.nn.log_softmax(bare(z))[jnp.arange(4), y].sum()

    g = jax.grad(lambda z: jax.nn.log_softmax(defended.attacked(z))[jnp.arange(4), y].sum())(x)
    _, pull_back = jax.vjp(surrogate, x)
    want = pull_back(jax.grad(loss_at)(transformed))[0]
    np.testing.assert_allclose(defended.scored(x), defended.attacked(x), atol=1e-6)
    return defended.attacked(x), bare(transformed), g, want


def test_bit_depth_bpda_differentiates_the_identity_at_the_transformed_point(images):
    """bit_depth's attacked form: the forward pass is the squeezed detector, the gradient
    that of the bare detector taken at the squeezed input (BPDA with the identity)."""
    attacked, forward, g, want = _bpda_loss_and_gradients("bit_depth", lambda z: z, images)
    np.testing.assert_allclose(attacked, forward, atol=1e-5)
    np.testing.assert_allclose(g, want, atol=1e-5)


def test_jpeg_bpda_runs_the_codec_forward_and_the_differentiable_jpeg_backward(images):
    """jpeg's attacked form: the forward pass is the real OpenCV round trip; the gradient
    is the bare detector's at the JPEG'd input, pulled back through differentiable_jpeg
    at x (not the identity: that gradient differs)."""
    attacked, forward, g, want = _bpda_loss_and_gradients(
        "jpeg", lambda z: differentiable_jpeg(z, None, quality=75), images)
    np.testing.assert_allclose(attacked, forward, atol=1e-5)
    np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-6)
    _, _, _, identity_gradient = _bpda_loss_and_gradients("jpeg", lambda z: z, images)
    assert not np.allclose(g, identity_gradient, atol=1e-3)


@pytest.mark.parametrize("quality", [10, 50, 75, 95])
@pytest.mark.parametrize("shape", [(3, 32, 32, 3), (2, 20, 28, 3), (2, 24, 16, 1)])
def test_differentiable_jpeg_is_close_to_the_codec(quality, shape):
    """On smooth images (where JPEG is used), the surrogate's forward pass is within 3/255
    mean absolute error of OpenCV's round trip and within half the input's distance
    to it (measured: 0.4 to 2.5 / 255, against 1.6 to 16.5 / 255); odd sizes
    (edge-padded to whole blocks) and grey images included."""
    rng = np.random.default_rng(quality)
    coarse = rng.uniform(0, 1, (shape[0], 4, 4, shape[3])).astype(np.float32)
    x = np.asarray(jax.image.resize(coarse, shape, "cubic")).clip(0, 1)
    x = np.round((x + rng.normal(0, 4 / 255, shape)).clip(0, 1) * 255) / 255
    x = x.astype(np.float32)
    real = jpeg_round_trip(x, quality)
    approx = np.asarray(differentiable_jpeg(jnp.asarray(x), None, quality=quality))
    assert approx.shape == x.shape
    assert np.abs(approx - real).mean() < 3 / 255
    assert np.abs(approx - real).mean() < np.abs(x - real).mean() / 2


def test_soft_round_equals_rounding_at_integers_and_has_a_gradient_between():
    z = jnp.array([-2.0, 0.0, 3.0, 0.25, 1.75])
    np.testing.assert_allclose(soft_round(z)[:3], jnp.round(z)[:3])
    gradient = jax.vmap(jax.grad(soft_round))(z)
    np.testing.assert_allclose(gradient, 3 * (z - jnp.round(z)) ** 2, atol=1e-6)
    assert float(gradient[3]) > 0


def test_non_adaptive_attacks_the_bare_detector_and_scores_the_defence(images):
    model, variables = _linear_detector()
    x = jnp.asarray(images)
    spec = DefenceSpec(name="bit_depth", options={"adaptive": False})
    defended = defended_logits(model, spec)(variables, jax.random.key(0))
    np.testing.assert_allclose(defended.attacked(x), model.apply(variables, x), atol=1e-6)
    np.testing.assert_allclose(defended.scored(x), model.apply(variables, bit_depth(x, None, bits=3)),
                               atol=1e-6)
    assert DEFENCES.get("bit_depth").attack_form(DEFENCES.resolve("bit_depth", spec.options)) == {
        "adaptive": False, "surrogate": "none (attack ignores the defence)", "eot_samples": 1}


def test_eot_averages_independent_draws_from_the_scored_one(images):
    model, variables = _linear_detector()
    x = jnp.asarray(images)
    spec = DefenceSpec(name="random_resize_pad", options={"eot_samples": 4})
    defended = defended_logits(model, spec)(variables, jax.random.key(0))
    a, b = defended.attacked(x), defended.attacked(x)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # keyed: reproducible
    assert not np.allclose(np.asarray(a), np.asarray(defended.scored(x)))
    probabilities = np.exp(np.asarray(a))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(np.isfinite(jax.grad(lambda z: defended.attacked(z)[:, 1].sum())(x)))


@pytest.mark.slow
def test_squeeze_detect_cell_reports_both_attacks_and_needs_validation():
    """A squeeze_detect cell through run_cell: the detector's own predictions unchanged
    (its robust accuracy is the bare detector's), detection numbers for the cell's attack
    and the squeeze-aware one, and a clear error without validation examples."""
    from dfjax.attacks.evaluate import AttackEvaluator
    from dfjax.config import AttackSpec, Cell, DatasetSpec, ModelSpec, TrainSpec
    from dfjax.data.base import Split
    from dfjax.models import build_model
    from dfjax.runner import run_cell
    from dfjax.training.detectors import Detector

    model = build_model(ModelSpec(name="cnn7_tiny"))
    variables = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    rng = np.random.default_rng(0)

    def split(n):
        return Split((rng.random((n, 16, 16, 3)) * 255).astype(np.uint8),
                     (np.arange(n) % 2).astype(np.int32), np.arange(n), np.zeros(n, np.int32))

    test, validation = split(16), split(32)
    detector = Detector(model, variables, [], 0.0, False)

    def cell(defence):
        return Cell(dataset=DatasetSpec(name="random"), model=ModelSpec(name="cnn7_tiny"),
                    training=TrainSpec(), defence=DefenceSpec(name=defence),
                    attack=AttackSpec(name="fgsm", eps=8 / 255), n_eval=16, seed=0)

    evaluator = AttackEvaluator()
    guarded, _, _ = run_cell(cell("squeeze_detect"), detector, test, evaluator, 16,
                             validation=validation)
    bare, _, _ = run_cell(cell("none"), detector, test, evaluator, 16)
    assert guarded["robust_accuracy"] == bare["robust_accuracy"]
    for prefix in ("", "adaptive_"):
        for name in ("detection_rate", "false_positive_rate", "robust_accuracy_with_detection"):
            assert f"{prefix}{name}" in guarded
        assert guarded[f"{prefix}robust_accuracy_with_detection"] >= 0.0
    assert guarded["robust_accuracy_with_detection"] >= guarded["robust_accuracy"]
    with pytest.raises(ValueError, match="needs `validation`"):
        run_cell(cell("squeeze_detect"), detector, test, evaluator, 16)
