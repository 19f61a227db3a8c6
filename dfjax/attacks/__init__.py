"""Attacks by name. `ATTACKS.get(name).bind(spec)` -> attack(logits_fn, x, y, key, eps).

Each attack is a pure function `attack(logits_fn, x, y, key, *, eps, ...)`; its
registry entry names the norms it supports, its static options (with defaults)
and how traced hyperparameters (e.g. the step size) follow from eps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import functools

from dfjax.attacks._checks import check_budget, check_steps
from dfjax.attacks._projections import NORMS, changed_pixels, perturbation_norms, project
from dfjax.attacks.apgd import apgd
from dfjax.attacks import auto
from dfjax.attacks.auto import PRESETS, black_box_beats_white_box
from dfjax.attacks.cw import cw_l2
from dfjax.attacks.fgsm import fgsm
from dfjax.attacks.noise import noise
from dfjax.attacks.one_pixel import one_pixel
from dfjax.attacks.pgd import pgd
from dfjax.attacks.square import square
from dfjax.config import AttackSpec
from dfjax.registry import Entry, Registry


@dataclasses.dataclass(frozen=True)
class AttackEntry(Entry):
    """How the runner calls an attack.

    fn: the pure attack. norms: the norms it supports. options (Entry): its static
    options and their defaults. derive: traced keyword arguments computed from (eps,
    options), e.g. PGD's step size 2.5 * eps / num_steps (Madry et al.).
    traces: fn takes a static `return_trace` and then returns (x_adv, trace [t, b]) of
    the true-class probability after each step. minimal_norm: fn takes a static
    `return_distance` and then returns (x_adv, distance to flip [b], inf if none).
    members: for an ensemble, (spec, options) -> the member AttackSpecs run one after
    another on the points still robust (`dfjax.attacks.auto.run_ensemble`); fn is None.
    """

    fn: Callable | None
    norms: tuple[str, ...] = NORMS
    derive: Callable[[Any, Mapping[str, Any]], dict] | None = None
    traces: bool = False
    minimal_norm: bool = False
    members: Callable[[AttackSpec, Mapping[str, Any]], list[AttackSpec]] | None = None

    def __post_init__(self):
        if not self.description and self.fn is not None:  # the attack's one-line summary
            doc = (getattr(self.fn, "func", self.fn).__doc__ or "").strip()
            object.__setattr__(self, "description", " ".join(doc.split("\n\n")[0].split()))

    def resolve_options(self, given: Mapping[str, Any] | tuple = ()) -> dict[str, Any]:
        """Entry.resolve_options, and every loop count an int >= 1."""
        options = super().resolve_options(given)
        for name in COUNT_OPTIONS & set(options):
            check_steps(options[name], name)
        return options

    def resolve_spec(self, spec: AttackSpec) -> dict[str, Any]:
        """The spec's options with defaults; unknown options, norms and budgets rejected."""
        try:
            options = self.resolve_options(spec.options)
        except ValueError as e:
            raise ValueError(f"attack {spec.name!r} {e}") from None
        if spec.norm not in self.norms:
            raise ValueError(f"attack {spec.name!r} supports norms {self.norms}, not {spec.norm!r}")
        check_budget(spec.eps, spec.norm)
        return options

    def bind(self, spec: AttackSpec, **extra_static) -> Callable:
        """attack(logits_fn, x, y, key, eps) with the spec's static options fixed.

        extra_static: further static keywords, e.g. return_trace=True (if `traces`)."""
        if self.fn is None:
            raise TypeError(f"attack {spec.name!r} is an ensemble: run it with "
                            "dfjax.attacks.auto.run_ensemble")
        options = self.resolve_spec(spec)
        static = {k: v for k, v in options.items() if not k.startswith("rel_")} | extra_static

        def attack(logits_fn, x, y, key, eps):
            traced = self.derive(eps, options) if self.derive else {}
            return self.fn(logits_fn, x, y, key, eps=eps, norm=spec.norm, **static, **traced)

        return attack


# Static loop counts: each must be an int >= 1 (checked before anything compiles).
COUNT_OPTIONS = frozenset({"num_steps", "num_restarts", "num_queries", "num_pixels",
                           "iterations", "binary_search_steps"})


def _pgd_step_size(eps, o):
    return {"step_size": eps * o["rel_step_size"] / o["num_steps"]}


_PGD_OPTIONS = {"num_steps": 10, "loss": "ce", "rand_init": True, "num_restarts": 1,
                "rel_step_size": 2.5}
_APGD_OPTIONS = {"num_steps": 20, "num_restarts": 1, "rand_init": True}

ATTACKS: Registry[AttackEntry] = Registry("attack")

ATTACKS.register("noise", AttackEntry(noise, options={"distribution": "sign"}))
ATTACKS.register("fgsm", AttackEntry(fgsm, options={"loss": "ce"}))
ATTACKS.register("pgd", AttackEntry(pgd, options=_PGD_OPTIONS, derive=_pgd_step_size,
                                    traces=True))
ATTACKS.register("pgd_targeted", AttackEntry(
    pgd, options=_PGD_OPTIONS | {"targeted": True, "target_class": 0}, derive=_pgd_step_size,
    traces=True))
ATTACKS.register("apgd_ce", AttackEntry(functools.partial(apgd, loss="ce"),
                                        options=_APGD_OPTIONS, traces=True))
ATTACKS.register("apgd_margin", AttackEntry(functools.partial(apgd, loss="margin"),
                                            options=_APGD_OPTIONS, traces=True))
ATTACKS.register("square", AttackEntry(square, norms=("linf",),
                                       options={"num_queries": 200, "p_init": 0.05},
                                       traces=True))
ATTACKS.register("one_pixel", AttackEntry(
    one_pixel, norms=("l0",), options={"num_pixels": 1, "population": 32, "iterations": 16}))
ATTACKS.register("cw_l2", AttackEntry(
    cw_l2, norms=("l2",), minimal_norm=True,
    options={"num_steps": 50, "binary_search_steps": 5, "learning_rate": 0.01,
             "initial_const": 0.1, "kappa": 0.0}))
ATTACKS.register("auto", AttackEntry(
    None, options=auto.OPTIONS, check=auto.check_options,
    description="worst case over an ensemble (AutoAttack protocol, Croce & Hein 2020): "
                "members run in turn on the points still robust",
    members=lambda spec, options: auto.member_specs(spec, options, ATTACKS)))

__all__ = [
    "ATTACKS", "AttackEntry", "PRESETS", "apgd", "black_box_beats_white_box",
    "changed_pixels", "cw_l2", "fgsm", "noise", "one_pixel", "pgd", "project",
    "perturbation_norms", "square",
]
