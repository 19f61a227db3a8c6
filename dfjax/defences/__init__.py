"""Inference-time defences by name: `DEFENCES.get(name)(logits_fn, spec)` -> logits_fn.

A defence wraps the detector's logits function; attacks see the wrapped function
(so a differentiable defence is attacked through). Only `none` exists so far.
"""

from __future__ import annotations

from dfjax.config import DefenceSpec
from dfjax.registry import Registry
from dfjax.types import LogitsFn

DEFENCES: Registry = Registry("defence")


def no_defence(logits_fn: LogitsFn, spec: DefenceSpec) -> LogitsFn:
    """The bare detector."""
    del spec
    return logits_fn


DEFENCES.register("none", no_defence)

__all__ = ["DEFENCES", "no_defence"]
