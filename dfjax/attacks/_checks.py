"""Input checks that run before anything compiles."""

from __future__ import annotations

import math
import numbers

import jax

from dfjax.attacks._projections import NORMS

# Norms a budget may be given in: the projected norms, plus "l0" = number of pixels
# an attack may change (one_pixel), which has no projection.
BUDGET_NORMS = NORMS + ("l0",)


def check_budget(eps, norm: str) -> None:
    """Reject an unknown norm, and (when eps is concrete) an eps outside its norm's range.

    linf: eps in [0, 1] (pixel units); l2: eps >= 0; l0: a whole number of pixels >= 0.
    """
    if norm not in BUDGET_NORMS:
        raise ValueError(f"unknown norm {norm!r}; known: {', '.join(BUDGET_NORMS)}")
    if isinstance(eps, jax.core.Tracer) or not isinstance(eps, numbers.Real):
        return
    if not math.isfinite(eps):
        raise ValueError(f"eps must be finite, got {eps}")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if norm == "linf" and eps > 1:
        raise ValueError(f"a linf eps is in [0, 1] pixel units; got {eps} (delta 8 is eps 8/255)")
    if norm == "l0" and eps != int(eps):
        raise ValueError(f"an l0 eps is a whole number of pixels; got {eps}")


def check_batch(x, y) -> None:
    """x [b, h, w, c] and y [b] must agree; checked at trace time (shapes are static)."""
    if x.ndim != 4:
        raise ValueError(f"x must be [b, h, w, c], got shape {x.shape}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must be [b] with b = {x.shape[0]}, got shape {y.shape}")


def check_steps(num_steps: int, name: str = "num_steps") -> None:
    """A static loop count: a Python int >= 1."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"{name} must be an int >= 1, got {num_steps!r}")


def check_choice(value, choices, name: str) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; known: {', '.join(map(str, choices))}")
