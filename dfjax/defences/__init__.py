"""Inference-time defences by name: `defended_logits(model, spec)` -> variables -> logits_fn.

A defence wraps the detector's logits function; attacks see the wrapped function (so a
differentiable defence is attacked through). Only `none` exists so far.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn

from dfjax.config import DefenceSpec
from dfjax.models import make_logits_fn
from dfjax.registry import Entry, Registry
from dfjax.types import LogitsFn


@dataclasses.dataclass(frozen=True, kw_only=True)
class DefenceEntry(Entry):
    """wrap(logits_fn, options) -> the defended logits_fn (pure, jittable)."""

    wrap: Callable[[LogitsFn, dict[str, Any]], LogitsFn]


def no_defence(logits_fn: LogitsFn, options: dict[str, Any]) -> LogitsFn:
    """The bare detector."""
    del options
    return logits_fn


DEFENCES: Registry[DefenceEntry] = Registry("defence")
DEFENCES.register("none", DefenceEntry(wrap=no_defence, description="the bare detector"))


def defended_logits(model: nn.Module, spec: DefenceSpec) -> Callable[[dict], LogitsFn]:
    """variables -> the logits function of `model` behind defence `spec` (options
    resolved once, here), for use inside a compiled attack."""
    options = DEFENCES.resolve(spec.name, spec.options)
    wrap = DEFENCES.get(spec.name).wrap
    return lambda variables: wrap(make_logits_fn(model, variables), options)


__all__ = ["DEFENCES", "DefenceEntry", "defended_logits", "no_defence"]
