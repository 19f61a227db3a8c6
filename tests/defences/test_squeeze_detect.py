"""Feature-squeezing detection (dfjax/defences/squeeze_detect.py): the threshold's
false-positive rate, the score's fixed points and gradient, the metrics on a constructed
case, and the adaptive attack against a detector whose adversarial examples squeezing
undoes."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dfjax.attacks import pgd
from dfjax.config import ModelSpec
from dfjax.defences.squeeze_detect import (
    detection_metrics,
    fit_threshold,
    squeeze_aware_pgd,
    squeeze_score,
    threshold_rank,
)
from dfjax.losses import predicted_class
from dfjax.models import build_model, make_logits_fn

RATE = 0.05
SIDE = 16


def smooth_images(seed, n):
    """float32 [n, 16, 16, 3] in [0, 1]: 4x4 random grids upsampled bilinearly, the low
    frequencies of natural images (the median filter changes them little). Drawn with
    numpy: each new shape of a jax.random draw compiles a sampler (seconds on 2 cores)."""
    coarse = jnp.asarray(np.random.default_rng(seed).random((n, 4, 4, 3), np.float32))
    return jnp.clip(jax.image.resize(coarse, (n, SIDE, SIDE, 3), "linear"), 0.0, 1.0)


@pytest.fixture(scope="module")
def random_cnn7_tiny():
    """logits_fn of cnn7_tiny (2 logits) with random LeCun-normal kernels and zero biases,
    drawn with numpy: the shapes come from jax.eval_shape, so nothing compiles for the
    init (flax's jitted init compiles one normal sampler per shape: ~25 s on 2 busy cores)."""
    model = build_model(ModelSpec(name="cnn7_tiny"))
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, SIDE, SIDE, 3)))
    rng = np.random.default_rng(0)

    def draw(path, leaf):
        if jax.tree_util.keystr(path).endswith("['kernel']"):
            fan_in = math.prod(leaf.shape[:-1])
            return jnp.asarray(rng.standard_normal(leaf.shape, np.float32) / math.sqrt(fan_in))
        return jnp.zeros(leaf.shape, leaf.dtype)

    return make_logits_fn(model, jax.tree_util.tree_map_with_path(draw, shapes))


def linear_detector(scale=10.0):
    """A [b, 1] sigmoid detector scale * w . (x - 0.5) with random dense w, ||w||_2 ~ 1.

    Linf PGD against it adds eps * sign(w), a pixel-by-pixel random sign pattern that a
    2x2 median undoes: plain PGD's adversarial inputs score high, so an adaptive attack
    has something to gain.
    """
    d = SIDE * SIDE * 3
    w = jnp.asarray(np.random.default_rng(7).standard_normal(d, np.float32) / math.sqrt(d))

    def logits_fn(x):
        return scale * ((x.reshape((x.shape[0], -1)) - 0.5) @ w)[:, None]

    return logits_fn


def test_threshold_false_positive_rate_on_clean_test_inputs(random_cnn7_tiny):
    """Real scores of a real detector (random-init cnn7_tiny) on random images: fitted on
    validation at 5%, the rate on an independent clean test set is 5% within error.

    Given the threshold t, test false positives ~ Binomial(n_test, q) with
    q = P(score > t); q itself is random (it is Beta(n_val + 1 - k, k)-distributed for the
    k-th order statistic), with mean (n_val + 1 - k) / (n_val + 1) in
    [RATE - 1/(n_val+1), RATE] and variance ~ RATE (1 - RATE) / n_val. The two are
    independent, so the measured rate has standard deviation
    sqrt(RATE (1 - RATE) (1/n_test + 1/n_val)); the tolerance is 3 of those plus the
    quantile rule's bias bound 1/(n_val + 1).
    """
    logits_fn = random_cnn7_tiny
    n_val = n_test = 1500
    x = np.random.default_rng(11).random((n_val + n_test, SIDE, SIDE, 3), np.float32)
    scores = np.asarray(jax.jit(lambda z: squeeze_score(logits_fn, z))(jnp.asarray(x)))
    threshold = fit_threshold(scores[:n_val], RATE)
    assert threshold > 0 and np.sum(scores == threshold) == 1  # no ties at the threshold
    rate = float((scores[n_val:] > threshold).mean())
    tolerance = 3 * math.sqrt(RATE * (1 - RATE) * (1 / n_test + 1 / n_val)) + 1 / (n_val + 1)
    print(f"clean test false-positive rate {rate:.4f}, tolerance {tolerance:.4f}")
    assert abs(rate - RATE) <= tolerance


def test_threshold_rule_is_the_documented_order_statistic():
    scores = np.random.default_rng(0).permutation(np.arange(1.0, 101.0))
    assert fit_threshold(scores, 0.05) == 96.0  # k = ceil(0.95 * 101) = 96
    assert fit_threshold(scores[:19], 0.05) == scores[:19].max()  # k = 19: the maximum
    assert fit_threshold([3.0], 0.5) == 3.0
    assert threshold_rank(39, 0.05) == 38 and threshold_rank(10, 0.05) == 10
    assert threshold_rank(19, 0.05) == 19 and threshold_rank(99, 0.1) == 90

    # For exchangeable continuous scores the expected rate is (n + 1 - k) / (n + 1)
    # exactly: n = 39 -> k = 38 -> 2 / 40 = 5%. 20,000 fits, 50 test scores each.
    rng = np.random.default_rng(1)
    draws = rng.standard_exponential((20_000, 39 + 50))
    thresholds = np.sort(draws[:, :39], axis=1)[:, 38 - 1]
    rates = (draws[:, 39:] > thresholds[:, None]).mean(axis=1)
    assert fit_threshold(draws[0, :39]) == thresholds[0]
    assert abs(rates.mean() - 0.05) <= 4 * rates.std() / math.sqrt(rates.size)


def test_score_is_zero_where_the_squeezers_change_nothing_and_positive_elsewhere():
    logits_fn = linear_detector()
    levels = jnp.asarray([[0, 7, 31], [16, 16, 3], [30, 1, 12]], jnp.float32) / 31.0
    fixed = jnp.broadcast_to(levels[:, None, None, :], (3, SIDE, SIDE, 3))  # 5-bit, constant
    # The squeezed copies equal the inputs bit for bit; the detector runs on all three in
    # one batch, where XLA's matmul may round one row differently (measured 6e-8).
    np.testing.assert_allclose(squeeze_score(logits_fn, fixed), 0.0, rtol=0, atol=1e-6)

    x = smooth_images(0, 8)
    scores = squeeze_score(logits_fn, x)
    assert scores.shape == (8,) and scores.dtype == jnp.float32
    assert np.all(np.asarray(scores) > 0) and np.all(np.asarray(scores) <= 2)
    np.testing.assert_allclose(jax.jit(lambda z: squeeze_score(logits_fn, z))(x), scores,
                               rtol=1e-5, atol=1e-7)


def test_adaptive_score_has_the_same_values_and_a_bpda_gradient(random_cnn7_tiny):
    logits_fn = random_cnn7_tiny

    def gradient(adaptive):
        return jax.grad(lambda z: squeeze_score(logits_fn, z, adaptive=adaptive).sum())

    # Row 0-1: smooth images (both squeezers act). Row 2: a constant image off the 5-bit
    # levels: the median changes nothing, so its score is the bit-depth term alone, whose
    # gradient without BPDA only sees p(x) (round has no gradient) and with BPDA also flows
    # through p(bit_depth(x)).
    x = jnp.concatenate([smooth_images(1, 2),
                         jnp.full((1, SIDE, SIDE, 3), 0.3, jnp.float32)])
    np.testing.assert_array_equal(squeeze_score(logits_fn, x, adaptive=True),
                                  squeeze_score(logits_fn, x))
    plain, adaptive = jax.jit(lambda z: (gradient(False)(z), gradient(True)(z)))(x)
    assert np.all(np.isfinite(adaptive))
    assert np.all(np.abs(np.asarray(adaptive)).reshape(3, -1).max(axis=1) > 0)
    assert not np.allclose(plain[2], adaptive[2])


def test_detection_metrics_on_a_constructed_case():
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1])
    # clean prediction: all correct but example 9; adversarial: 0-5 and 9 misclassified.
    clean_pred = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 0])
    adv_pred = np.array([1, 0, 1, 0, 1, 0, 0, 1, 0, 0])
    clean_scores = np.array([0.1, 0.2, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    adv_scores = np.array([0.9, 0.9, 0.9, 0.1, 0.1, 0.5, 0.9, 0.1, 0.1, 0.1])
    threshold = 0.5  # flagged iff > 0.5: adversarial 0, 1, 2, 6; clean 2
    two_logit = lambda pred: np.stack([1.0 - 2.0 * pred, 2.0 * pred - 1.0], axis=1)  # noqa
    one_logit = lambda pred: (2.0 * pred - 1.0)[:, None]  # noqa: E731
    expected = {
        "detection_rate": 3 / 6,  # successful: 0-5 (9 was wrong already); detected 0, 1, 2
        "adversarial_flagged_rate": 4 / 10,
        "false_positive_rate": 1 / 10,
        "robust_accuracy": 3 / 10,  # 6, 7, 8
        "robust_accuracy_with_detection": 6 / 10,  # defeated: 3, 4, 5 (5's 0.5 is not > 0.5), 9
        "clean_accuracy": 9 / 10,
        "clean_accuracy_with_detection": 8 / 10,
        "n": 10, "n_successful": 6, "n_detected": 3, "n_adversarial_flagged": 4,
        "n_clean_flagged": 1, "n_defeated": 4,
    }
    for head in (two_logit, one_logit):
        metrics = detection_metrics(y, head(clean_pred), head(adv_pred), clean_scores,
                                    adv_scores, threshold)
        assert metrics == pytest.approx(expected)
        assert all(type(v) is (int if k.startswith("n") else float) for k, v in metrics.items())

    nothing = detection_metrics(y, two_logit(y), two_logit(y), clean_scores, adv_scores, 0.5)
    assert math.isnan(nothing["detection_rate"]) and nothing["n_successful"] == 0


def test_squeeze_aware_pgd_keeps_the_budget_and_beats_plain_pgd_on_the_detector():
    logits_fn = linear_detector()
    score = jax.jit(lambda z: squeeze_score(logits_fn, z))
    threshold = fit_threshold(score(smooth_images(1, 1000)))
    x = smooth_images(2, 64)
    x = x.at[0].set(0.0).at[1].set(1.0)  # pixels at the bounds
    y = predicted_class(logits_fn(x))
    eps = 8 / 255  # eps, step size and threshold traced: a sweep would compile once
    x_plain = jax.jit(lambda x, y, eps: pgd(
        logits_fn, x, y, jax.random.key(3), eps=eps, step_size=eps / 4, num_steps=10))(x, y, eps)
    x_aware = jax.jit(lambda x, y, eps, threshold: squeeze_aware_pgd(
        logits_fn, x, y, jax.random.key(3), eps=eps, step_size=eps / 4, num_steps=10,
        threshold=threshold))(x, y, eps, threshold)

    assert x_aware.shape == x.shape and x_aware.dtype == jnp.float32
    assert float(jnp.abs(x_aware - x).max()) <= eps + 1e-6
    assert float(x_aware.min()) >= 0.0 and float(x_aware.max()) <= 1.0

    clean_scores = score(x)
    results = {}
    for name, x_adv in (("plain", x_plain), ("aware", x_aware)):
        scores = score(x_adv)
        results[name] = (float(scores.mean()), detection_metrics(
            y, logits_fn(x), logits_fn(x_adv), clean_scores, scores, threshold))
        print(name, f"mean score {results[name][0]:.3f}", results[name][1])
    (plain_score, plain), (aware_score, aware) = results["plain"], results["aware"]
    # Squeezing undoes plain PGD (caught almost always); the adaptive attack keeps its
    # scores low and gets past the detector on most inputs.
    assert plain["robust_accuracy_with_detection"] >= 0.8
    assert aware_score <= 0.5 * plain_score
    assert aware["robust_accuracy_with_detection"] <= plain["robust_accuracy_with_detection"] - 0.5


@pytest.mark.parametrize("kwargs", [dict(bits=0), dict(bits=9), dict(bits=5.0), dict(bits=True),
                                    dict(median_size=1), dict(median_size=8),
                                    dict(median_size=2.0)])
def test_bad_squeezers_raise(kwargs):
    x = jnp.zeros((1, 4, 4, 3))
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        squeeze_score(linear_detector(), x, **kwargs)
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        squeeze_aware_pgd(linear_detector(), x, jnp.zeros((1,), jnp.int32), jax.random.key(0),
                          eps=0.1, step_size=0.01, num_steps=1, threshold=0.1, **kwargs)


@pytest.mark.parametrize("rate", [0, 1, -0.1, 1.5, float("nan"), True, "0.05"])
def test_bad_false_positive_rate_raises(rate):
    with pytest.raises(ValueError, match="false_positive_rate"):
        fit_threshold([0.1, 0.2], rate)


def test_bad_validation_scores_and_thresholds_raise():
    with pytest.raises(ValueError, match="no validation scores"):
        fit_threshold([])
    with pytest.raises(ValueError, match="finite"):
        fit_threshold([0.1, float("nan")])
    with pytest.raises(ValueError, match="1-D"):
        fit_threshold(np.zeros((2, 2)))
    y = np.zeros(2, np.int32)
    with pytest.raises(ValueError, match="threshold"):
        detection_metrics(y, np.zeros((2, 2)), np.zeros((2, 2)), np.zeros(2), np.zeros(2),
                          float("inf"))
    with pytest.raises(ValueError, match="adv_scores"):
        detection_metrics(y, np.zeros((2, 2)), np.zeros((2, 2)), np.zeros(2), np.zeros(3), 0.1)
    with pytest.raises(ValueError, match="weight"):
        squeeze_aware_pgd(linear_detector(), jnp.zeros((1, 4, 4, 3)), y[:1], jax.random.key(0),
                          eps=0.1, step_size=0.01, num_steps=1, threshold=0.1, weight=-1.0)
