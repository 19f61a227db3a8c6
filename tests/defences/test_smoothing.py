"""Randomized smoothing (dfjax/defences/smoothing.py) against the closed form of a linear
detector.

For f(x) = [w . x + bias > 0] and delta ~ N(0, sigma^2 I), w . delta ~ N(0, sigma^2 ||w||^2),
so the top class has probability p_A = Phi(|w . x + bias| / (sigma ||w||)) exactly, and the
true certified radius sigma * Phi^-1(p_A) is the distance |w . x + bias| / ||w|| to the
decision boundary. The noise is unclipped, so this holds even where x + delta leaves [0, 1].
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from dfjax.defences.smoothing import (
    ABSTAIN,
    certified_accuracy,
    certify,
    clopper_pearson_lower,
    noise_counts,
    predict,
    smoothed_logits,
)

SHAPE = (4, 4, 1)  # d = 16 pixels
W = np.full(16, 0.25, np.float32)  # ||w|| = 1, so w . x + bias is the signed L2 distance
BIAS = -2.0  # the boundary passes through the grey image x = 0.5
SIGMA = 0.5
ALPHA = 0.001


def points(distances) -> jax.Array:
    """Images [b, 4, 4, 1] at the given signed L2 distances from the boundary."""
    t = np.asarray(distances, np.float32)[:, None]
    return jnp.asarray((0.5 + t * W[None, :]).reshape((-1, *SHAPE)))


def linear_logits(scale: float = 1.0, head: str = "sigmoid"):
    """The linear detector: a [b, 1] sigmoid logit scale * (w . x + bias), or [b, 2]."""

    def logits_fn(x):
        z = scale * (x.reshape((x.shape[0], -1)) @ jnp.asarray(W) + BIAS)[:, None]
        return z if head == "sigmoid" else jnp.concatenate([jnp.zeros_like(z), z], axis=-1)

    return logits_fn


def test_certified_radius_matches_the_closed_form():
    distances = np.array([-1.2, -0.5, 0.15, 0.4, 0.8, 1.0])
    n, key = 2000, jax.random.key(3)
    prediction, radius = certify(linear_logits(), points(distances), None, key, sigma=SIGMA,
                                 n0=100, n=n, alpha=ALPHA)

    # The radius is sigma * Phi^-1 of the Clopper-Pearson bound on the estimation votes
    # (drawn with fold_in(key, 1), as documented).
    counts = noise_counts(linear_logits(), points(distances), jax.random.fold_in(key, 1),
                          sigma=SIGMA, num_samples=n)
    true_class = (distances > 0).astype(int)
    np.testing.assert_array_equal(prediction, true_class)
    successes = counts[np.arange(len(distances)), true_class]
    p_lower = clopper_pearson_lower(successes, n, ALPHA)
    np.testing.assert_allclose(radius, SIGMA * stats.norm.ppf(p_lower), rtol=1e-12)

    # Bracketed by the closed form: below the true radius |distance| (fails with
    # probability <= alpha per point); above the radius the bound gives at the 1e-6 lower
    # binomial quantile of the votes (fails with probability <= 1e-6 per point).
    p_true = stats.norm.cdf(np.abs(distances) / SIGMA)
    unlucky = stats.binom.ppf(1e-6, n, p_true)
    floor = SIGMA * stats.norm.ppf(np.maximum(clopper_pearson_lower(unlucky, n, ALPHA), 0.5))
    for d, p, r, lo in zip(distances, p_true, radius, floor):
        print(f"distance {abs(d):.2f}  p_A {p:.4f}  floor {lo:.3f}  radius {r:.3f}")
    assert np.all(radius < np.abs(distances))
    assert np.all(radius > floor)


def test_boundary_point_abstains_and_far_point_certifies_close_to_its_distance():
    x = points([0.0, 1.0])  # a [b, 2] softmax head here, a [b, 1] sigmoid head elsewhere
    prediction, radius = certify(linear_logits(head="softmax"), x, jnp.array([1, 1]),
                                 jax.random.key(0), sigma=SIGMA, n=2000, alpha=ALPHA)
    assert prediction[0] == ABSTAIN and radius[0] == 0.0
    assert prediction[1] == 1
    assert 0.8 < radius[1] < 1.0


def test_noise_counts_one_trace_and_independent_of_batch_size_and_batch():
    traces = []

    def logits_fn(x):
        traces.append(x.shape)
        return linear_logits()(x)

    x, key = points([-0.2, 0.0, 0.3]), jax.random.key(2)
    counts = noise_counts(logits_fn, x, key, sigma=SIGMA, num_samples=50, batch_size=16)
    assert traces == [(16, *SHAPE)]  # 10 chunks, one compiled shape
    assert counts.shape == (3, 2) and np.all(counts.sum(axis=1) == 50)
    # Example 0's votes, alone and 7 copies per pass, are its votes in the batch above.
    alone = noise_counts(linear_logits(), x[:1], key, sigma=SIGMA, num_samples=50, batch_size=7)
    np.testing.assert_array_equal(counts[:1], alone)


def test_predict_abstains_on_the_boundary_and_agrees_far_from_it():
    prediction = predict(linear_logits(), points([-1.0, 0.0, 1.0]), jax.random.key(4),
                         sigma=SIGMA, n=1000, alpha=ALPHA)
    np.testing.assert_array_equal(prediction, [0, ABSTAIN, 1])


def test_certified_accuracy_on_a_constructed_case():
    prediction = np.array([1, 0, ABSTAIN, 1, 0, 1])
    radius = np.array([0.3, 0.6, 0.0, 1.2, 0.1, 0.5])
    y = np.array([1, 0, 1, 0, 1, 1])  # correct: 0 (0.3), 1 (0.6), 5 (0.5)
    scores = certified_accuracy(prediction, radius, y)
    assert scores == {
        "certified_accuracy_l2_0": 3 / 6,
        "certified_accuracy_l2_0.25": 3 / 6,
        "certified_accuracy_l2_0.5": 2 / 6,  # radius >= r: the 0.5 counts
        "certified_accuracy_l2_1": 0.0,
        "abstention_rate": 1 / 6,
    }
    assert list(certified_accuracy(prediction, radius, y, radii=(0.125,))) == [
        "certified_accuracy_l2_0.125", "abstention_rate"]


def test_eot_logits_are_deterministic_differentiable_and_approach_the_smoothed_probability():
    distances = np.array([-0.3, 0.1, 0.5])
    x = points(distances)

    def eot(x, key, scale, num_samples=8, head="sigmoid"):
        logits_fn = linear_logits(scale, head)
        return smoothed_logits(logits_fn, key, sigma=SIGMA, num_samples=num_samples)(x)

    def fake_log_probability(x, *args, **kwargs):  # (summed log p(fake), logits [b, 2])
        logits = eot(x, *args, **kwargs)
        return logits[:, 1].sum(), logits

    apply = jax.jit(jax.value_and_grad(fake_log_probability, has_aux=True),
                    static_argnames=("num_samples", "head"))  # one compile: value and grad
    (_, out), grad = apply(x, jax.random.key(5), 5.0)
    assert out.shape == (3, 2) and out.dtype == jnp.float32
    np.testing.assert_allclose(jax.nn.logsumexp(out, axis=-1), 0.0, atol=1e-5)
    np.testing.assert_array_equal(out, apply(x, jax.random.key(5), 5.0)[0][1])
    assert not np.allclose(out, apply(x, jax.random.key(6), 5.0)[0][1])
    assert np.all(np.isfinite(grad)) and np.all(grad != 0)

    # A near-hard base detector ([b, 2] head) and many draws: softmax -> Phi(distance / sigma).
    m = 20_000
    (_, sharp), _ = apply(x, jax.random.key(7), 200.0, num_samples=m, head="softmax")
    fake = np.asarray(jax.nn.softmax(sharp, axis=-1)[:, 1])
    expected = stats.norm.cdf(distances / SIGMA)
    print("EOT p(fake)", fake, "closed form", expected)
    np.testing.assert_allclose(fake, expected, atol=4 * math.sqrt(0.25 / m) + 0.005)


def _never_called(x):
    raise AssertionError("the checks must run before any work")


X = points([0.0])
KEY = jax.random.key(0)


@pytest.mark.parametrize(("call", "name"), [
    (lambda: noise_counts(_never_called, X, KEY, sigma=0.0, num_samples=10), "sigma"),
    (lambda: noise_counts(_never_called, X, KEY, sigma=-0.1, num_samples=10), "sigma"),
    (lambda: noise_counts(_never_called, X, KEY, sigma=float("nan"), num_samples=10), "sigma"),
    (lambda: noise_counts(_never_called, X, KEY, sigma=0.5, num_samples=0), "num_samples"),
    (lambda: noise_counts(_never_called, X, KEY, sigma=0.5, num_samples=True), "num_samples"),
    (lambda: noise_counts(_never_called, X, KEY, sigma=0.5, num_samples=10, batch_size=0),
     "batch_size"),
    (lambda: certify(_never_called, X, None, KEY, sigma=0.0), "sigma"),
    (lambda: certify(_never_called, X, None, KEY, sigma=0.5, n=0), "n"),
    (lambda: certify(_never_called, X, None, KEY, sigma=0.5, n0=0), "n0"),
    (lambda: certify(_never_called, X, None, KEY, sigma=0.5, alpha=0.0), "alpha"),
    (lambda: certify(_never_called, X, None, KEY, sigma=0.5, alpha=1.0), "alpha"),
    (lambda: certify(_never_called, X, None, KEY, sigma=0.5, batch_size=-1), "batch_size"),
    (lambda: certify(_never_called, X, jnp.array([0, 1]), KEY, sigma=0.5), "y"),
    (lambda: certify(_never_called, X[0], None, KEY, sigma=0.5), "x"),
    (lambda: predict(_never_called, X, KEY, sigma=0.5, n=0), "n"),
    (lambda: predict(_never_called, X, KEY, sigma=0.5, alpha=2.0), "alpha"),
    (lambda: smoothed_logits(_never_called, KEY, sigma=0.0, num_samples=4), "sigma"),
    (lambda: smoothed_logits(_never_called, KEY, sigma=0.5, num_samples=0), "num_samples"),
    (lambda: certified_accuracy([1], [0.5], [1], radii=(-0.1,)), "radii"),
    (lambda: certified_accuracy([1, 0], [0.5], [1, 0]), "radius"),
])
def test_bad_inputs_raise_naming_the_parameter(call, name):
    with pytest.raises(ValueError, match=rf"^{name} must"):
        call()
