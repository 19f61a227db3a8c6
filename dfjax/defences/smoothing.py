"""Randomized smoothing with L2 certificates (Cohen, Rosenfeld & Kolter 2019, arXiv:1902.02918).

The smoothed detector g answers, for an input x, the class the base detector f returns
most often under Gaussian noise:

    g(x) = argmax_c P(f(x + delta) = c),   delta ~ N(0, sigma^2 I).

If the top class has probability p_A >= 1/2 (and the runner-up p_B <= 1 - p_A, always so
with two classes), g is constant on the L2 ball of radius sigma * Phi^-1(p_A) around x
(Theorem 1 with p_B = 1 - p_A). `certify` estimates a lower confidence bound on p_A by
Monte Carlo and returns that radius (CERTIFY, Sec. 3.2); `predict` returns g(x) or
abstains (PREDICT); `certified_accuracy` scores both; `smoothed_logits` is the
differentiable Monte Carlo form an empirical attack sees (EOT).

The noise is added to the input as is and NOT clipped to [0, 1], as in Cohen et al.:
clipping would change the noise distribution and void the Gaussian certificate. The base
detector therefore sees pixels outside [0, 1]; a detector meant to be smoothed should be
trained with the same noise.

Keys: noisy copy j of example i is drawn with ``fold_in(fold_in(key, i), j)``, so the
votes do not depend on `batch_size` (a memory setting) or on how the copies are chunked.
`certify` draws its selection samples with ``fold_in(key, 0)`` and its estimation samples
with ``fold_in(key, 1)``, as the algorithm needs independent draws for the two.

`noise_counts`, `certify` and `predict` run a host loop over fixed-shape chunks (one
compiled chunk function per call) and finish with scipy, so they are not themselves
jittable; they return numpy arrays. `smoothed_logits` returns a pure, jittable function.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from dfjax.losses import two_class_logits
from dfjax.types import Images, Labels, Logits, LogitsFn
from dfjax.xla import jit

ABSTAIN = -1
"""The class `certify` and `predict` return where the smoothed detector abstains."""

DEFAULT_N = 1_000
"""Estimation samples per example in `certify`. The paper uses 100,000; 1,000 forward
passes per example keep certifying a benchmark subset practical on a 2-core CPU. n caps the
certifiable radius: with every vote for c_A, p_lower = alpha^(1/n), so at alpha = 0.001 the
largest radius is 2.46 sigma for n = 1,000, 3.20 sigma for 10,000, 3.81 sigma for 100,000."""

DEFAULT_N0 = 100
"""Selection samples per example in `certify` (the paper's n0)."""

DEFAULT_ALPHA = 0.001
"""Failure probability of a certificate (the paper's alpha)."""

DEFAULT_BATCH_SIZE = 256
"""Noisy images per forward pass of the base detector (bounds memory, not the result)."""

DEFAULT_RADII = (0.0, 0.25, 0.5, 1.0)
"""L2 radii (pixel units, images in [0, 1]) at which `certified_accuracy` reports."""


# ----------------------------------------------------------------------------- input checks


def _check_positive_int(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def _check_sigma(sigma) -> None:
    if (isinstance(sigma, bool) or not isinstance(sigma, numbers.Real)
            or not math.isfinite(sigma) or sigma <= 0):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")


def _check_alpha(alpha) -> None:
    if (isinstance(alpha, bool) or not isinstance(alpha, numbers.Real)
            or not 0 < alpha < 1):
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")


def _check_images(x) -> None:
    if x.ndim != 4:
        raise ValueError(f"x must be [b, h, w, c], got shape {x.shape}")


def _check_labels(y, b: int, name: str = "y") -> None:
    if y.ndim != 1 or y.shape[0] != b:
        raise ValueError(f"{name} must be [b] with b = {b}, got shape {y.shape}")


# ------------------------------------------------------------------------------ the votes


def _chunk_counter(logits_fn: LogitsFn) -> Callable:
    """The jitted function counting one chunk of votes, built once per call.

    count(x, key, start, total, sigma, chunk=...) -> int32 [b, k]: the votes of noisy
    copies number start .. start + chunk - 1 (those < total) of the flattened
    (copy j, example i) pairs, pair p = j * b + i. `chunk` is static; the rest is traced,
    so every chunk, and every sample count, reuses one compiled function per chunk size.
    Compiled with dfjax's compiler options (`dfjax.xla.jit`).
    """

    @functools.partial(jit, static_argnames=("chunk",))
    def count(x, key, start, total, sigma, *, chunk: int):
        b = x.shape[0]
        pair = start + jnp.arange(chunk)
        example, copy = pair % b, pair // b
        keys = jax.vmap(lambda i, j: jax.random.fold_in(jax.random.fold_in(key, i), j))(
            example, copy)
        noise = jax.vmap(lambda k: jax.random.normal(k, x.shape[1:], x.dtype))(keys)
        logits = two_class_logits(logits_fn(x[example] + sigma * noise))
        num_classes = logits.shape[-1]
        votes = jax.nn.one_hot(jnp.argmax(logits, axis=-1), num_classes, dtype=jnp.int32)
        votes = votes * (pair < total)[:, None].astype(jnp.int32)
        return jnp.zeros((b, num_classes), jnp.int32).at[example].add(votes)

    return count


def _counts(count, x, key, sigma: float, num_samples: int, chunk: int) -> np.ndarray:
    """int64 [b, k] votes of num_samples copies per example, `chunk` copies per call."""
    total = x.shape[0] * num_samples
    counts = None
    for start in range(0, total, chunk):  # dispatch is asynchronous; one transfer at the end
        votes = count(x, key, start, total, sigma, chunk=chunk)
        counts = votes if counts is None else counts + votes
    return np.asarray(counts, dtype=np.int64)


def noise_counts(
    logits_fn: LogitsFn, x: Images, key: jax.Array, *, sigma: float, num_samples: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> np.ndarray:
    """Class votes of the base detector under Gaussian noise (the paper's SAMPLEUNDERNOISE).

    Each example gets `num_samples` copies x + delta, delta ~ N(0, sigma^2 I), NOT clipped
    to [0, 1] (see the module docstring); each copy votes for the class the detector
    predicts. Copies are pushed through `logits_fn` `batch_size` at a time, through one
    jitted function of one shape, so memory stays bounded for any `num_samples`.

    Args:
        logits_fn: the base detector, float32 [m, h, w, c] -> logits [m, 2] (softmax,
            label 1 = fake) or [m, 1] (sigmoid logit for "fake").
        x: float32 [b, h, w, c] in [0, 1].
        key: copy j of example i uses noise from fold_in(fold_in(key, i), j).
        sigma: noise standard deviation in pixel units (> 0).
        num_samples: noisy copies per example (>= 1).
        batch_size: noisy images per forward pass (>= 1); does not change the counts.

    Returns:
        int64 numpy [b, 2]: votes per class; each row sums to `num_samples`.

    Example:
        >>> counts = noise_counts(logits_fn, x, jax.random.key(0), sigma=0.25,
        ...                       num_samples=100)
    """
    _check_sigma(sigma)
    _check_positive_int(num_samples, "num_samples")
    _check_positive_int(batch_size, "batch_size")
    x = jnp.asarray(x)
    _check_images(x)
    chunk = min(batch_size, x.shape[0] * num_samples)
    return _counts(_chunk_counter(logits_fn), x, key, sigma, num_samples, chunk)


# ---------------------------------------------------------------------- CERTIFY / PREDICT


def clopper_pearson_lower(successes, trials: int, alpha: float) -> np.ndarray:
    """One-sided (1 - alpha) Clopper-Pearson lower confidence bound on a binomial p.

    The bound is the alpha quantile of Beta(k, n - k + 1), and 0 where k = 0.

    Args:
        successes: int array-like k, 0 <= k <= trials.
        trials: n >= 1.
        alpha: in (0, 1).

    Returns:
        float64 numpy, the shape of `successes`, in [0, 1).
    """
    k = np.asarray(successes, dtype=np.float64)
    bound = stats.beta.ppf(alpha, np.maximum(k, 1), trials - k + 1)
    return np.where(k > 0, bound, 0.0)


def certify(
    logits_fn: LogitsFn, x: Images, y: Labels | None, key: jax.Array, *, sigma: float,
    n0: int = DEFAULT_N0, n: int = DEFAULT_N, alpha: float = DEFAULT_ALPHA,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """Certified prediction and L2 radius of the smoothed detector (CERTIFY, Cohen et al.
    2019, arXiv:1902.02918, Sec. 3.2).

    1. counts0 from n0 noisy copies (key fold_in(key, 0)); c_A = argmax counts0.
    2. counts from n fresh copies (key fold_in(key, 1)); k = counts[c_A].
    3. p_lower = one-sided (1 - alpha) Clopper-Pearson lower bound on p_A from (k, n).
    4. p_lower < 1/2: ABSTAIN; otherwise predict c_A with radius sigma * Phi^-1(p_lower).

    With two classes p_B = 1 - p_A, so Theorem 1's radius sigma/2 (Phi^-1(p_A) -
    Phi^-1(p_B)) is exactly sigma * Phi^-1(p_A). With probability at least 1 - alpha
    (per example, over the noise) a returned class is g(x) and g is constant on the L2
    ball of the returned radius.

    Args:
        logits_fn: the base detector, float32 [m, h, w, c] -> logits [m, 2] or [m, 1].
        x: float32 [b, h, w, c] in [0, 1].
        y: int [b] labels (0 = real, 1 = fake) or None. The certificate does not depend
            on the labels: `y` is kept so that certify is called like an attack
            (logits_fn, x, y, key); where given, only its shape is checked. Score the
            output with `certified_accuracy(prediction, radius, y)`.
        key: a JAX PRNG key.
        sigma: noise standard deviation in pixel units (> 0); the certified radius is in
            the same L2 pixel units.
        n0: selection samples per example (>= 1); the paper's 100.
        n: estimation samples per example (>= 1); default `DEFAULT_N` = 1,000 (sized for
            a 2-core CPU; the paper's 100,000 certifies radii up to 3.8 sigma instead of
            2.5 sigma at alpha = 0.001).
        alpha: failure probability in (0, 1); the paper's 0.001.
        batch_size: noisy images per forward pass (>= 1); does not change the result.

    Returns:
        (prediction, radius): int64 numpy [b], the certified class or ABSTAIN (-1);
        float64 numpy [b] >= 0, the certified L2 radius, 0 where abstained.

    Example:
        >>> prediction, radius = certify(logits_fn, x, y, jax.random.key(0), sigma=0.25)
        >>> certified_accuracy(prediction, radius, y)["certified_accuracy_l2_0.25"]
    """
    _check_sigma(sigma)
    _check_positive_int(n0, "n0")
    _check_positive_int(n, "n")
    _check_alpha(alpha)
    _check_positive_int(batch_size, "batch_size")
    x = jnp.asarray(x)
    _check_images(x)
    if y is not None:
        _check_labels(np.asarray(y), x.shape[0])

    count = _chunk_counter(logits_fn)
    chunk = min(batch_size, x.shape[0] * max(n0, n))  # one compiled shape for both passes
    selection = _counts(count, x, jax.random.fold_in(key, 0), sigma, n0, chunk)
    top = selection.argmax(axis=-1)
    estimation = _counts(count, x, jax.random.fold_in(key, 1), sigma, n, chunk)
    successes = np.take_along_axis(estimation, top[:, None], axis=-1)[:, 0]
    p_lower = clopper_pearson_lower(successes, n, alpha)
    certified = p_lower >= 0.5
    prediction = np.where(certified, top, ABSTAIN).astype(np.int64)
    radius = np.where(certified, sigma * stats.norm.ppf(np.maximum(p_lower, 0.5)), 0.0)
    return prediction, radius


def predict(
    logits_fn: LogitsFn, x: Images, key: jax.Array, *, sigma: float, n: int = DEFAULT_N,
    alpha: float = DEFAULT_ALPHA, batch_size: int = DEFAULT_BATCH_SIZE,
) -> np.ndarray:
    """The smoothed detector's class, or ABSTAIN (PREDICT, Cohen et al. 2019, Sec. 3.1).

    Counts n noisy copies per example; with n_A, n_B the top two counts, abstains where
    the two-sided binomial test of n_A ~ Binomial(n_A + n_B, 1/2) has p-value > alpha.
    A returned class differs from g(x) with probability at most alpha (Theorem 2).

    Args:
        logits_fn: the base detector, float32 [m, h, w, c] -> logits [m, 2] or [m, 1].
        x: float32 [b, h, w, c] in [0, 1].
        key: a JAX PRNG key; noise as in `noise_counts`.
        sigma: noise standard deviation in pixel units (> 0).
        n: noisy copies per example (>= 1).
        alpha: in (0, 1).
        batch_size: noisy images per forward pass (>= 1); does not change the result.

    Returns:
        int64 numpy [b]: the class (0 = real, 1 = fake) or ABSTAIN (-1).

    Example:
        >>> prediction = predict(logits_fn, x, jax.random.key(0), sigma=0.25, n=1000)
    """
    _check_sigma(sigma)
    _check_positive_int(n, "n")
    _check_alpha(alpha)
    _check_positive_int(batch_size, "batch_size")
    x = jnp.asarray(x)
    _check_images(x)
    counts = noise_counts(logits_fn, x, key, sigma=sigma, num_samples=n, batch_size=batch_size)
    order = np.argsort(-counts, axis=-1, kind="stable")
    n_a = np.take_along_axis(counts, order[:, :1], axis=-1)[:, 0]
    n_b = np.take_along_axis(counts, order[:, 1:2], axis=-1)[:, 0]
    p_values = np.array([stats.binomtest(int(a), int(a + b), 0.5).pvalue
                         for a, b in zip(n_a, n_b)])
    return np.where(p_values > alpha, ABSTAIN, order[:, 0]).astype(np.int64)


# ---------------------------------------------------------------------------- the scores


def certified_accuracy_name(radius: float) -> str:
    """The metric name of certified accuracy at an L2 radius (pixel units):
    0.25 -> 'certified_accuracy_l2_0.25', 1.0 -> 'certified_accuracy_l2_1'."""
    return f"certified_accuracy_l2_{float(radius):g}"


def certified_accuracy(
    prediction, radius, y, radii: Sequence[float] = DEFAULT_RADII,
) -> dict[str, float]:
    """Certified accuracy at each L2 radius, and the abstention rate.

    An example counts at radius r when it is certified (prediction != ABSTAIN), correct
    (prediction == y) and its certified radius is >= r; at r = 0 that is every certified
    correct example.

    Args:
        prediction: int [b], a class or ABSTAIN (-1), from `certify`.
        radius: float [b] >= 0, from `certify`.
        y: int [b] labels.
        radii: L2 radii >= 0 in pixel units.

    Returns:
        {certified_accuracy_name(r): fraction in [0, 1] for r in radii,
         "abstention_rate": fraction of ABSTAIN}, as Python floats.

    Example:
        >>> scores = certified_accuracy(np.array([1, -1]), np.array([0.3, 0.0]),
        ...                             np.array([1, 1]))
        >>> scores["certified_accuracy_l2_0.25"], scores["abstention_rate"]
        (0.5, 0.5)
    """
    prediction, radius, y = np.asarray(prediction), np.asarray(radius), np.asarray(y)
    if prediction.ndim != 1 or prediction.shape[0] == 0:
        raise ValueError(f"prediction must be [b] with b >= 1, got shape {prediction.shape}")
    _check_labels(radius, prediction.shape[0], "radius")
    _check_labels(y, prediction.shape[0], "y")
    for r in radii:
        if not isinstance(r, numbers.Real) or not math.isfinite(r) or r < 0:
            raise ValueError(f"radii must be finite numbers >= 0, got {r!r}")
    correct = (prediction != ABSTAIN) & (prediction == y)
    out = {certified_accuracy_name(r): float(np.mean(correct & (radius >= r))) for r in radii}
    out["abstention_rate"] = float(np.mean(prediction == ABSTAIN))
    return out


# ------------------------------------------------------------------- the attacked surface


def smoothed_logits(
    logits_fn: LogitsFn, key: jax.Array, *, sigma: float, num_samples: int,
) -> LogitsFn:
    """A differentiable Monte Carlo estimate of the smoothed detector, for empirical attacks.

    This is the expectation over transformations (EOT, Athalye et al. 2018,
    arXiv:1802.00420) that an attack on the smoothed detector differentiates: the log of
    the mean softmax of the base detector over `num_samples` noisy copies,

        f(x) = log (1/m) sum_j softmax(logits_fn(x + sigma z_j)),  z_j ~ N(0, I),

    computed as a logsumexp of log-softmaxes. The soft votes make it differentiable
    where the hard votes of `certify` are not; softmax(f(x)) tends to the smoothed
    class probabilities as the base detector's softmax sharpens and m grows. The noise
    is not clipped (see the module docstring). The draws z_j are fixed by `key` (the same
    for every call of f with inputs of one shape), so f is a pure, jittable function;
    draw fresh noise per attack step by building f with fold_in(key, step).

    Args:
        logits_fn: the base detector, float32 [m, h, w, c] -> logits [m, 2] or [m, 1].
        key: a JAX PRNG key.
        sigma: noise standard deviation in pixel units (> 0).
        num_samples: noisy copies per example (>= 1); f pushes num_samples * b images
            through logits_fn in one call.

    Returns:
        f: float32 [b, h, w, c] -> float32 [b, 2] log-probabilities (valid softmax logits).

    Example:
        >>> f = smoothed_logits(logits_fn, jax.random.key(0), sigma=0.25, num_samples=16)
        >>> x_adv = pgd(f, x, y, key, eps=8/255, step_size=2/255, num_steps=10)
    """
    _check_sigma(sigma)
    _check_positive_int(num_samples, "num_samples")

    def smoothed(x: Images) -> Logits:
        noise = jax.random.normal(key, (num_samples, *x.shape), x.dtype)
        noisy = (x[None] + sigma * noise).reshape((-1, *x.shape[1:]))
        log_probs = jax.nn.log_softmax(two_class_logits(logits_fn(noisy)), axis=-1)
        log_probs = log_probs.reshape((num_samples, x.shape[0], -1))
        return jax.nn.logsumexp(log_probs, axis=0) - math.log(num_samples)

    return smoothed


__all__ = [
    "ABSTAIN",
    "DEFAULT_ALPHA",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_N",
    "DEFAULT_N0",
    "DEFAULT_RADII",
    "certified_accuracy",
    "certified_accuracy_name",
    "certify",
    "clopper_pearson_lower",
    "noise_counts",
    "predict",
    "smoothed_logits",
]


# ------------------------------------------------------------------ the defence's transform


def gaussian_noise(x: Images, keys: jax.Array, *, sigma: float) -> Images:
    """x + N(0, sigma^2 I), example i's noise drawn with keys[i] (not clipped: see above)."""
    noise = jax.vmap(lambda k: jax.random.normal(k, x.shape[1:], x.dtype))(keys)
    return x + sigma * noise


def check_noise_sigma(options) -> None:
    """Options of the `smoothing` defence: sigma > 0, samples, certify_n0, certify_n >= 1,
    certify_alpha in (0, 1)."""
    _check_sigma(options["sigma"])
    for name in ("samples", "certify_n0", "certify_n"):
        _check_positive_int(options[name], name)
    _check_alpha(options["certify_alpha"])


def certified_metrics(logits_fn: LogitsFn, x, y, key: jax.Array, options) -> dict[str, float]:
    """The `smoothing` defence's certified numbers on (x [n, h, w, c], y [n]): CERTIFY with
    the defence's sigma, certify_n0, certify_n and certify_alpha, scored by
    `certified_accuracy` at DEFAULT_RADII; every name starts with `certified_` (never mixed
    with empirical robust accuracy): certified_accuracy_l2_<r>, certified_abstention_rate,
    certified_n (the estimation samples)."""
    prediction, radius = certify(logits_fn, x, y, key, sigma=options["sigma"],
                                 n0=options["certify_n0"], n=options["certify_n"],
                                 alpha=options["certify_alpha"])
    scores = certified_accuracy(prediction, radius, y)
    return {**{k: v for k, v in scores.items() if k.startswith("certified_")},
            "certified_abstention_rate": scores["abstention_rate"],
            "certified_n": float(options["certify_n"])}
