"""Inference-time defences by name, and how each is attacked.

A defence is an input transform in front of the detector. Its entry declares how an
attack adapts to it (Athalye, Carlini & Wagner 2018, arXiv:1802.00420), and every attack
on a defended detector uses that form without being asked:

- differentiable transforms (blur, median, random_resize_pad, smoothing) are attacked
  through;
- non-differentiable ones name their BPDA surrogate (bit_depth: the identity; jpeg: a
  differentiable JPEG, which the identity falls far short of: see defences/jpeg.py);
- randomised ones (random_resize_pad, smoothing) are attacked with EOT over
  `eot_samples` draws.

`adaptive=False` (an option of every defence) asks explicitly for the non-adaptive
evaluation: the attack runs on the bare detector and its examples are scored through
the defence; every row and report marks it. `defended_logits(model, spec)` gives the
compiled evaluation both forms.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax

from dfjax.defences import _adaptive
from dfjax.defences.bit_depth import bit_depth, check_bits
from dfjax.defences.blur import blur, check_sigma as check_blur_sigma
from dfjax.defences.jpeg import check_quality, differentiable_jpeg, jpeg
from dfjax.defences.median import check_size, median
from dfjax.defences.random_resize_pad import check_min_scale, random_resize_pad
from dfjax.defences.smoothing import (
    DEFAULT_ALPHA,
    DEFAULT_N,
    DEFAULT_N0,
    certified_metrics,
    check_noise_sigma,
    gaussian_noise,
)
from dfjax.defences.squeeze_detect import check_squeeze_options, detection_cell_metrics
from dfjax.models import make_logits_fn
from dfjax.registry import Entry, Registry
from dfjax.types import LogitsFn

COMMON_OPTIONS = ("adaptive", "eot_samples")


class Defended(NamedTuple):
    """scored: the defended detector the evaluation scores (one draw of a random
    transform, or `samples` draws averaged); attacked: what the attack differentiates
    (BPDA / EOT form; the bare detector when non-adaptive)."""

    scored: LogitsFn
    attacked: LogitsFn


@dataclasses.dataclass(frozen=True, kw_only=True)
class DefenceEntry(Entry):
    """transform(x, keys, **options) -> x' (None: no transform, the bare detector).
    surrogate(x, keys, **options): the BPDA surrogate where the transform has no useful
    gradient (rows record its function name), None where it is attacked through.
    randomized: draws per forward pass
    (attacked with EOT; option eot_samples). host_callback: runs on the host (OpenCV),
    so a batch is not split across devices. certify(logits_fn, x, y, key, options) ->
    certified metrics (`certified_*`), for a defence that certifies. detect(logits_fn,
    validation, x, y, x_adv, key, eps=, options=) -> detection metrics, for a defence that
    flags adversarial inputs (the detector's own predictions are unchanged). Options every
    defence takes: `adaptive` (default True) and, for randomised ones, `eot_samples`."""

    transform: Callable[..., Any] | None = None
    surrogate: Callable[..., Any] | None = None
    randomized: bool = False
    host_callback: bool = False
    certify: Callable[..., dict[str, float]] | None = None
    detect: Callable[..., dict[str, float]] | None = None

    def attack_form(self, options: dict[str, Any]) -> dict[str, Any]:
        """What a row records of how the defence was attacked."""
        adaptive = bool(options.get("adaptive", True))
        if not adaptive:
            surrogate = "none (attack ignores the defence)"
        elif self.surrogate is None:
            surrogate = "none (attacked through)"
        else:
            surrogate = self.surrogate.__name__
        return {"adaptive": adaptive, "surrogate": surrogate,
                "eot_samples": int(options.get("eot_samples", 1)) if adaptive else 1}


def _check(own_check: Callable[[dict], None] | None, options: dict[str, Any]) -> None:
    if not isinstance(options.get("adaptive", True), bool):
        raise ValueError(f"option adaptive must be True or False, got {options['adaptive']!r}")
    samples = options.get("eot_samples", 1)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"option eot_samples must be an int >= 1, got {samples!r}")
    if own_check is not None:
        own_check(options)


def _entry(transform=None, *, options=None, check=None, eot_samples=None, **fields):
    options = dict(options or {}) | ({"adaptive": True} if transform is not None else {})
    if eot_samples is not None:
        options["eot_samples"] = eot_samples
    return DefenceEntry(transform=transform, options=options,
                        check=functools.partial(_check, check), **fields)


def _one(check, name):
    return lambda options: check(options[name])


DEFENCES: Registry[DefenceEntry] = Registry("defence")
DEFENCES.register("none", _entry(description="the bare detector"))
DEFENCES.register("jpeg", _entry(
    jpeg, options={"quality": 75}, check=_one(check_quality, "quality"),
    surrogate=differentiable_jpeg, host_callback=True,
    description="JPEG round trip through OpenCV (BPDA: differentiable JPEG)"))
DEFENCES.register("bit_depth", _entry(
    bit_depth, options={"bits": 3}, check=_one(check_bits, "bits"),
    surrogate=_adaptive.identity,
    description="bit-depth reduction, feature squeezing (BPDA: identity)"))
DEFENCES.register("median", _entry(
    median, options={"size": 3}, check=_one(check_size, "size"),
    description="median filter, feature squeezing (attacked through)"))
DEFENCES.register("blur", _entry(
    blur, options={"sigma": 1.0}, check=_one(check_blur_sigma, "sigma"),
    description="Gaussian blur (attacked through)"))
DEFENCES.register("random_resize_pad", _entry(
    random_resize_pad, options={"min_scale": 0.8}, check=_one(check_min_scale, "min_scale"),
    randomized=True, eot_samples=8,
    description="random resize and pad, Xie et al. 2018 (EOT)"))
DEFENCES.register("smoothing", _entry(
    gaussian_noise, options={"sigma": 0.25, "samples": 32, "certify_n0": DEFAULT_N0,
                             "certify_n": DEFAULT_N, "certify_alpha": DEFAULT_ALPHA},
    check=check_noise_sigma, randomized=True, eot_samples=8, certify=certified_metrics,
    description="randomized smoothing, Cohen et al. 2019: Gaussian noise, `samples` draws "
                "averaged (EOT); certified by dfjax.certify"))

DEFENCES.register("squeeze_detect", _entry(
    options={"bits": 5, "median_size": 2, "false_positive_rate": 0.05},
    check=check_squeeze_options, detect=detection_cell_metrics,
    description="feature-squeezing detection, Xu et al. 2018 (threshold at 5% FPR on clean "
                "validation; the cell's attack and a squeeze-aware PGD side by side)"))


def defended_logits(model: nn.Module, spec) -> Callable[[dict, jax.Array], Defended]:
    """(variables, key) -> Defended(scored, attacked) of `model` behind defence `spec`
    (options resolved once, here), for use inside a compiled attack. The scored and
    attacked draws come from independent key streams."""
    entry = DEFENCES.get(spec.name)
    options = DEFENCES.resolve(spec.name, spec.options)
    form = entry.attack_form(options)
    own = {k: v for k, v in options.items()
           if k not in COMMON_OPTIONS and k != "samples" and not k.startswith("certify_")}

    def build(variables: dict, key: jax.Array) -> Defended:
        bare = make_logits_fn(model, variables)
        if entry.transform is None:
            return Defended(bare, bare)
        transform = functools.partial(entry.transform, **own)
        scored = _adaptive.transformed_logits(
            bare, transform, jax.random.fold_in(key, _adaptive.SCORED),
            samples=int(options.get("samples", 1)))
        if not form["adaptive"]:
            return Defended(scored, bare)
        if entry.surrogate is not None:
            transform = _adaptive.bpda(transform, functools.partial(entry.surrogate, **own))
        attacked = _adaptive.transformed_logits(
            bare, transform, jax.random.fold_in(key, _adaptive.ATTACKED),
            samples=form["eot_samples"])
        return Defended(scored, attacked)

    return build


__all__ = ["DEFENCES", "DefenceEntry", "Defended", "defended_logits"]
