"""Shared array aliases and protocols.

Images are float32 NHWC in [0, 1]; labels are int32 with 0 = real and 1 = fake
(the positive class of every precision/recall/AUC in dfjax is "fake").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from jaxtyping import Array, Float, Int, PRNGKeyArray

Images = Float[Array, "b h w c"]
Labels = Int[Array, "b"]
Logits = Float[Array, "b k"]  # k = 2 (softmax head) or 1 (single sigmoid logit for "fake")
LogitsFn = Callable[[Images], Logits]

REAL = 0
FAKE = 1
CLASS_NAMES = ("real", "fake")


class Attack(Protocol):
    """A pure, jittable attack: keyword-only hyperparameters, eps in pixel units."""

    def __call__(
        self, logits_fn: LogitsFn, x: Images, y: Labels, key: PRNGKeyArray, *, eps: float, **kw
    ) -> Images: ...
