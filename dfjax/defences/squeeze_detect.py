"""Detecting adversarial inputs by feature squeezing (Xu, Evans & Qi 2018, arXiv:1704.01155),
and the adaptive attack on the detector and its squeezers together.

A squeezer s maps an image to a coarser one (here bit-depth reduction and a median
filter). An adversarial perturbation usually moves the detector's prediction more than
squeezing the clean image does, so the squeeze score

    score(x) = max_s || p(x) - p(s(x)) ||_1,     p = softmax of the detector's logits,

is larger on adversarial inputs than on clean ones (Xu et al.'s joint detection score:
the L1 distance, the maximum over squeezers; it lies in [0, 2]). An input is *flagged*
when its score exceeds a threshold fitted on clean validation inputs only, at a chosen
false-positive rate (Xu et al. use 5%). The squeezers are two of Xu et al.'s (their
CIFAR-10 and ImageNet settings): bit depth 5 (`dfjax.defences.bit_depth`) and a 2x2 median
filter (`dfjax.defences.median`); their third, non-local means, is left out.

A detection defence is only as good as its adaptive evaluation (Carlini & Wagner 2017,
"Adversarial Examples Are Not Easily Detected", arXiv:1705.07263; Tramer, Carlini, Brendel
& Madry 2020, "On Adaptive Attacks to Adversarial Example Defenses", arXiv:2002.08347; He,
Wei, Chen, Carlini & Song 2017, arXiv:1706.04701, broke feature squeezing adaptively).
`squeeze_aware_pgd` attacks the classifier and the detector at once: it differentiates
the score itself, through the median filter (piecewise linear) and through bit-depth
reduction by BPDA with the identity (Athalye et al. 2018, `dfjax.defences._adaptive`).

Typical use:

    >>> val_scores = squeeze_score(logits_fn, x_val)                   # clean validation
    >>> threshold = fit_threshold(val_scores, false_positive_rate=0.05)
    >>> x_adv = squeeze_aware_pgd(logits_fn, x, y, key, eps=8/255, step_size=2/255,
    ...                           num_steps=20, threshold=threshold)
    >>> detection_metrics(y, logits_fn(x), logits_fn(x_adv), squeeze_score(logits_fn, x),
    ...                   squeeze_score(logits_fn, x_adv), threshold)

`squeeze_score` and `squeeze_aware_pgd` are pure and jittable (their options are static,
`eps`, `step_size` and `threshold` may be traced); `fit_threshold` and `detection_metrics`
work on concrete arrays and return Python numbers.
"""

from __future__ import annotations

import functools
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from dfjax.attacks._checks import check_batch, check_budget, check_steps
from dfjax.attacks._loops import attack_loop
from dfjax.attacks._projections import ascent_direction, project, random_in_ball
from dfjax.defences._adaptive import bpda, identity
from dfjax.defences.bit_depth import bit_depth, check_bits
from dfjax.defences.median import check_size, median
from dfjax.losses import predicted_class, two_class_logits
from dfjax.types import Images, Labels, Logits, LogitsFn
from dfjax.xla import jit

DEFAULT_BITS = 5
"""Xu et al.'s bit depth for colour images (CIFAR-10 and ImageNet: 5 bits)."""

DEFAULT_MEDIAN_SIZE = 2
"""Xu et al.'s median window for colour images (2x2)."""

DEFAULT_FALSE_POSITIVE_RATE = 0.05
"""Xu et al.'s target false-positive rate on clean inputs."""

DEFAULT_WEIGHT = 1.0
"""Weight of the detector term in `squeeze_aware_pgd`'s loss (both terms are in
probability units, so 1 weighs them equally)."""

DEFAULT_CONFIDENCE = 0.5
"""The probability margin p_wrong - p_true past which `squeeze_aware_pgd` stops pushing the
label and only lowers the score (p_true <= 0.25 with two classes). Headroom past the
boundary lets the score term pull the input back a little without un-flipping the label;
on the linear detector of tests/defences/test_squeeze_detect.py (eps 2-8/255) 0.5 left
fewer adversarial inputs caught than 0.2 and no more than 1.0."""


# ----------------------------------------------------------------------------- input checks


def _check_squeezers(bits, median_size) -> None:
    check_bits(bits)
    try:
        check_size(median_size)
    except ValueError:
        raise ValueError(f"median_size must be an int in 2..7, got {median_size!r}") from None


def _check_false_positive_rate(rate) -> None:
    if (isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not math.isfinite(rate)
            or not 0 < rate < 1):
        raise ValueError(f"false_positive_rate must be a number in (0, 1), got {rate!r}")


def _check_finite_number(value, name: str, *, minimum: float | None = None) -> None:
    """A concrete value must be a finite real (>= minimum); a traced one passes."""
    if isinstance(value, jax.core.Tracer):
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


# ----------------------------------------------------------------------------- the score


def _squeezed_probabilities(logits_fn: LogitsFn, x: Images, *, bits: int, median_size: int,
                            adaptive: bool) -> tuple[Logits, jax.Array, jax.Array]:
    """One forward pass over [x; bit_depth(x); median(x)] (batch 3b).

    Returns (logits of x [b, k], probabilities of x [b, 2], probabilities of the squeezed
    copies [2, b, 2]).
    """
    depth = functools.partial(bit_depth, bits=bits)
    if adaptive:
        depth = bpda(depth, identity)
    squeezed = [depth(x, None), median(x, None, size=median_size)]
    b = x.shape[0]
    logits = logits_fn(jnp.concatenate([x] + squeezed, axis=0))
    probs = jax.nn.softmax(two_class_logits(logits).astype(jnp.float32), axis=-1)
    return logits[:b], probs[:b], probs[b:].reshape((len(squeezed), b, -1))


def _score(probs: jax.Array, squeezed_probs: jax.Array) -> jax.Array:
    """max over squeezers of the L1 distance [b]."""
    return jnp.abs(squeezed_probs - probs[None]).sum(axis=-1).max(axis=0)


def squeeze_score(logits_fn: LogitsFn, x: Images, *, bits: int = DEFAULT_BITS,
                  median_size: int = DEFAULT_MEDIAN_SIZE, adaptive: bool = False) -> jax.Array:
    """The feature-squeezing score (Xu et al. 2018): the largest L1 change of the prediction.

        score(x) = max( ||p(x) - p(bit_depth(x))||_1, ||p(x) - p(median(x))||_1 ),

    with p the detector's softmax probabilities ([b, 1] sigmoid logits are read as the
    two-class softmax [0, z]). The detector runs once, on the batch of the inputs and
    their two squeezed copies (3b images); an input the squeezers leave unchanged scores 0
    up to the rounding of that batched forward pass (~1e-7).

    Args:
        logits_fn: the detector, x float32 [b, h, w, c] in [0, 1] -> logits [b, 2] or [b, 1].
        x: float32 [b, h, w, c] in [0, 1].
        bits: bit depth of the first squeezer, an int in 1..8 (static).
        median_size: window of the median squeezer, an int in 2..7 (static; 2 = Xu et al.'s
            2x2, taking the window up and to the left of each pixel).
        adaptive: False: the score exactly as the detector computes it (its gradient
            through bit-depth reduction is zero almost everywhere). True: the same values,
            differentiable for an attack -- bit-depth reduction by BPDA with the identity
            in the backward pass, the median filter differentiated as it is.

    Returns:
        float32 [b] in [0, 2]: the score of each input.

    Example:
        >>> scores = squeeze_score(logits_fn, x)          # [b]
    """
    _check_squeezers(bits, median_size)
    if x.ndim != 4:
        raise ValueError(f"x must be [b, h, w, c], got shape {x.shape}")
    _, probs, squeezed = _squeezed_probabilities(logits_fn, x, bits=bits,
                                                 median_size=median_size, adaptive=adaptive)
    return _score(probs, squeezed)


# ----------------------------------------------------------------------------- the threshold


def threshold_rank(n: int, false_positive_rate: float) -> int:
    """The 1-based rank k of the fitted threshold among n sorted clean scores:
    k = min(n, ceil((1 - false_positive_rate) * (n + 1)))."""
    return min(n, math.ceil((1.0 - false_positive_rate) * (n + 1) - 1e-9))


def fit_threshold(scores_clean_validation, false_positive_rate: float =
                  DEFAULT_FALSE_POSITIVE_RATE) -> float:
    """The detection threshold: an input is flagged iff its score > threshold.

    Rule (the split-conformal quantile): with the n clean validation scores sorted,
    s_(1) <= ... <= s_(n), the threshold is s_(k) with

        k = min(n, ceil((1 - false_positive_rate) * (n + 1))),

    the 95th percentile of the clean scores at the default rate, as in Xu et al. For a
    fresh clean input drawn from the same distribution as the validation inputs (and
    continuous scores), P(score > s_(k)) = (n + 1 - k) / (n + 1) exactly, which lies in
    [false_positive_rate - 1/(n+1), false_positive_rate] whenever k < n + 1 is not
    clipped, i.e. n >= (1 - rate) / rate (19 at 5%); with fewer scores k is clipped to n
    and the expected rate is 1 / (n + 1) > false_positive_rate. The rate realised on a
    finite test set scatters around that value (binomially, plus the threshold's own
    sampling error, of variance about rate * (1 - rate) / n).

    Fit on clean *validation* inputs only: never on the test inputs whose false-positive
    rate is reported, and never on adversarial inputs.

    Args:
        scores_clean_validation: float [n], n >= 1, finite (array-like).
        false_positive_rate: the target rate, in (0, 1).

    Returns:
        The threshold, a Python float.

    Example:
        >>> threshold = fit_threshold(squeeze_score(logits_fn, x_val))
    """
    _check_false_positive_rate(false_positive_rate)
    scores = np.asarray(scores_clean_validation, np.float64)
    if scores.ndim != 1:
        raise ValueError(f"validation scores must be 1-D [n], got shape {scores.shape}")
    if scores.size == 0:
        raise ValueError("no validation scores: the threshold is fitted on clean validation "
                         "inputs, at least one")
    if not np.all(np.isfinite(scores)):
        raise ValueError("validation scores must be finite")
    k = threshold_rank(scores.size, false_positive_rate)
    return float(np.sort(scores)[k - 1])


# ----------------------------------------------------------------------------- the metrics


def detection_metrics(y, clean_logits, adv_logits, clean_scores, adv_scores,
                      threshold: float) -> dict[str, float | int]:
    """Detection and robustness of a detector guarded by feature squeezing.

    All arrays describe the same n test inputs: example i's clean input and the attack's
    output for it. An input is flagged iff its score > threshold; an adversarial input is
    *defeated* (the attack wins) only if it is misclassified and not flagged.

    Args:
        y: int [n], true labels (0 = real, 1 = fake).
        clean_logits: [n, 2] or [n, 1], the detector's logits on the clean test inputs.
        adv_logits: [n, 2] or [n, 1], its logits on the attacked inputs.
        clean_scores: float [n], squeeze scores of the clean test inputs.
        adv_scores: float [n], squeeze scores of the attacked inputs.
        threshold: from `fit_threshold` (on clean validation scores).

    Returns:
        A dict of Python floats and ints:

        - ``detection_rate``: flagged among the *successful* adversarial examples, those
          whose clean input is classified correctly and whose adversarial input is not
          (Xu et al. report on successful adversarial examples of correctly classified
          seeds): n_detected / n_successful; nan when no attack succeeded.
        - ``adversarial_flagged_rate``: flagged among all n attacked inputs.
        - ``false_positive_rate``: flagged among all n clean test inputs.
        - ``robust_accuracy``: the attacked inputs classified correctly (no detection).
        - ``robust_accuracy_with_detection``: the attacked inputs classified correctly OR
          flagged, 1 - n_defeated / n.
        - ``clean_accuracy``: the clean inputs classified correctly.
        - ``clean_accuracy_with_detection``: the clean inputs classified correctly AND not
          flagged (a flagged clean input is rejected, so it is lost).
        - counts ``n``, ``n_successful``, ``n_detected``, ``n_adversarial_flagged``,
          ``n_clean_flagged``, ``n_defeated``.

    Example:
        >>> detection_metrics(y, logits_fn(x), logits_fn(x_adv), squeeze_score(logits_fn, x),
        ...                   squeeze_score(logits_fn, x_adv), threshold)["detection_rate"]
    """
    _check_finite_number(threshold, "threshold")
    y = np.asarray(y)
    n = y.shape[0] if y.ndim == 1 else -1
    arrays = {"clean_logits": clean_logits, "adv_logits": adv_logits,
              "clean_scores": clean_scores, "adv_scores": adv_scores}
    arrays = {name: np.asarray(value) for name, value in arrays.items()}
    if y.ndim != 1 or n == 0:
        raise ValueError(f"y must be a non-empty [n], got shape {y.shape}")
    for name, value in arrays.items():
        expected_ndim = 2 if name.endswith("logits") else 1
        if value.ndim != expected_ndim or value.shape[0] != n:
            raise ValueError(f"{name} must have {expected_ndim} dimensions and n = {n} rows, "
                             f"got shape {value.shape}")

    clean_correct = np.asarray(predicted_class(jnp.asarray(arrays["clean_logits"]))) == y
    adv_correct = np.asarray(predicted_class(jnp.asarray(arrays["adv_logits"]))) == y
    clean_flagged = arrays["clean_scores"] > threshold
    adv_flagged = arrays["adv_scores"] > threshold
    successful = clean_correct & ~adv_correct
    n_successful = int(successful.sum())
    n_detected = int((successful & adv_flagged).sum())
    n_defeated = int((~adv_correct & ~adv_flagged).sum())
    return {
        "detection_rate": n_detected / n_successful if n_successful else math.nan,
        "adversarial_flagged_rate": float(adv_flagged.mean()),
        "false_positive_rate": float(clean_flagged.mean()),
        "robust_accuracy": float(adv_correct.mean()),
        "robust_accuracy_with_detection": 1.0 - n_defeated / n,
        "clean_accuracy": float(clean_correct.mean()),
        "clean_accuracy_with_detection": float((clean_correct & ~clean_flagged).mean()),
        "n": n,
        "n_successful": n_successful,
        "n_detected": n_detected,
        "n_adversarial_flagged": int(adv_flagged.sum()),
        "n_clean_flagged": int(clean_flagged.sum()),
        "n_defeated": n_defeated,
    }


# ----------------------------------------------------------------------------- the attack


def squeeze_aware_pgd(
    logits_fn: LogitsFn, x: Images, y: Labels, key: jax.Array, *, eps, step_size,
    num_steps: int, threshold, bits: int = DEFAULT_BITS,
    median_size: int = DEFAULT_MEDIAN_SIZE, weight=DEFAULT_WEIGHT,
    confidence=DEFAULT_CONFIDENCE,
) -> Images:
    """Linf PGD on the detector and its feature-squeezing detector together.

    Each step ascends, per example, the loss (all terms in probability units)

        J(x') = min(p_wrong(x') - p_true(x'), confidence)
                - weight * relu(score(x') - threshold),

    with p = the detector's softmax probabilities and score = `squeeze_score(...,
    adaptive=True)`: the score is differentiated through the median filter as it is and
    through bit-depth reduction by BPDA with the identity. The first term is the
    probability margin, clipped at `confidence` (Carlini & Wagner's kappa): once the label
    has flipped with that margin only the detector term drives the step; the second term
    is zero below the threshold, so it pulls the score down only where the input would be
    flagged (one loss for classifier and detector together, as Carlini & Wagner 2017,
    arXiv:1705.07263, and Tramer et al. 2020, arXiv:2002.08347, attack detectors). Both terms are
    differences of probabilities, so `weight` = 1 weighs them equally whatever the scale of
    the detector's logits.

    Steps are sign-gradient steps of `step_size` from a uniform random start in the
    eps-ball, each projected onto the ball and [0, 1] (as `dfjax.attacks.pgd`). Per example
    the attack returns the best iterate seen (the start and every step): first any iterate
    that defeats the guarded detector (misclassified and score <= threshold, as computed
    inside the attack), then the highest J.

    Args:
        logits_fn: the detector, x float32 [b, h, w, c] in [0, 1] -> logits [b, 2] or [b, 1].
        x: float32 [b, h, w, c] in [0, 1]; y: int [b] true labels.
        key: the random start's key.
        eps: Linf budget in pixel units (may be traced).
        step_size: Linf step (may be traced).
        num_steps: gradient steps, an int >= 1 (static).
        threshold: the detection threshold (`fit_threshold`; may be traced).
        bits, median_size: the squeezers, as in `squeeze_score` (static).
        weight: weight of the detector term, >= 0 (may be traced; 0 = a clipped-margin
            PGD that ignores the detector).
        confidence: the clip of the margin term (may be traced).

    Returns:
        x_adv float32 [b, h, w, c] with |x_adv - x| <= eps and 0 <= x_adv <= 1.

    Example:
        >>> x_adv = squeeze_aware_pgd(logits_fn, x, y, key, eps=8/255, step_size=2/255,
        ...                           num_steps=20, threshold=threshold)
    """
    check_batch(x, y)
    check_budget(eps, "linf")
    check_steps(num_steps)
    _check_squeezers(bits, median_size)
    _check_finite_number(threshold, "threshold")
    _check_finite_number(weight, "weight", minimum=0.0)
    _check_finite_number(confidence, "confidence")

    def objective(x_cur):
        logits, probs, squeezed = _squeezed_probabilities(
            logits_fn, x_cur, bits=bits, median_size=median_size, adaptive=True)
        true = jnp.take_along_axis(probs, y[:, None], axis=-1)[:, 0]
        score = _score(probs, squeezed)
        loss = (jnp.minimum((1.0 - true) - true, confidence)
                - weight * jax.nn.relu(score - threshold))
        defeated = (predicted_class(logits) != y) & (score <= threshold)
        return loss.sum(), (loss, defeated)

    value_and_grad = jax.value_and_grad(objective, has_aux=True)

    def keep_best(x_cur, loss, defeated, best):
        x_best, best_loss, best_defeated = best
        better = (defeated & ~best_defeated) | ((defeated == best_defeated) & (loss > best_loss))
        return (jnp.where(better[:, None, None, None], x_cur, x_best),
                jnp.where(better, loss, best_loss), best_defeated | defeated)

    def step(i, carry):
        x_cur, best = carry
        (_, (loss, defeated)), grad = value_and_grad(x_cur)
        best = keep_best(x_cur, loss, defeated, best)
        x_next = x_cur + step_size * ascent_direction(grad, "linf")
        return project(x_next, x, eps, "linf"), best

    x0 = random_in_ball(key, x, eps, "linf")
    best = (x0, jnp.full(y.shape, -jnp.inf, jnp.float32), jnp.zeros(y.shape, bool))
    x_last, best = attack_loop(num_steps, step, (x0, best))
    _, (loss, defeated) = objective(x_last)
    x_best, _, _ = keep_best(x_last, loss, defeated, best)
    return x_best


# ------------------------------------------------------------------------- in the pipeline


ADAPTIVE_STEPS = 20  # squeeze-aware PGD's steps in a cell; step size 2.5 eps / steps


def detection_cell_metrics(
    logits_fn: LogitsFn, validation: Images, images: Images, labels, adversarial: Images,
    key: jax.Array, *, eps: float, options, batch_size: int = 128,
) -> dict[str, float]:
    """A cell's detection numbers, the cell's own attack and the adaptive one side by side.

    The threshold is fitted on the clean `validation` images (float32 [m, h, w, c]) at
    options["false_positive_rate"]; `adversarial` are the cell's attack outputs for
    `images` (its attack ignored the squeezers). Keys: detection_threshold and, for the
    cell's attack, detection_rate, false_positive_rate, robust_accuracy_with_detection;
    the same with prefix adaptive_ for `squeeze_aware_pgd` (Linf, ADAPTIVE_STEPS steps) at
    the cell's eps, which attacks detector and squeezers together.
    """
    bits, size = options["bits"], options["median_size"]
    score = jit(lambda x: squeeze_score(logits_fn, x, bits=bits, median_size=size))
    logits = jit(logits_fn)

    def batched(fn, x):
        return np.concatenate([np.asarray(fn(jnp.asarray(x[i:i + batch_size])))
                               for i in range(0, len(x), batch_size)])

    _check_squeezers(bits, size)
    threshold = fit_threshold(batched(score, validation), options["false_positive_rate"])
    clean_logits, clean_scores = batched(logits, images), batched(score, images)

    def metrics(x_adv, prefix):
        found = detection_metrics(labels, clean_logits, batched(logits, x_adv), clean_scores,
                                  batched(score, x_adv), threshold)
        return {f"{prefix}{k}": float(found[k]) for k in
                ("detection_rate", "false_positive_rate", "robust_accuracy_with_detection")}

    attack = jit(lambda x, y, k: squeeze_aware_pgd(
        logits_fn, x, y, k, eps=eps, step_size=2.5 * eps / ADAPTIVE_STEPS,
        num_steps=ADAPTIVE_STEPS, threshold=threshold, bits=bits, median_size=size))
    aware = np.concatenate([
        np.asarray(attack(jnp.asarray(images[i:i + batch_size]),
                          jnp.asarray(labels[i:i + batch_size]), jax.random.fold_in(key, i)))
        for i in range(0, len(images), batch_size)])
    return {"detection_threshold": float(threshold), **metrics(adversarial, ""),
            **metrics(aware, "adaptive_")}


def check_squeeze_options(options) -> None:
    """Options of the `squeeze_detect` defence: bits 1..8, median_size 2..7,
    false_positive_rate in (0, 1)."""
    _check_squeezers(options["bits"], options["median_size"])
    _check_false_positive_rate(options["false_positive_rate"])
