"""The worst-case ensemble (AutoAttack-style; Croce & Hein 2020, arXiv:2003.01690).

A preset is a versioned, frozen list of member attacks: changing what "v1" runs
would silently change stored results, so a new ensemble gets a new preset name.
Our members use the 2-class logit margin where AutoAttack uses DLR (which needs
>= 3 classes), so numbers are comparable in spirit, not identical to AutoAttack's.

The protocol (`run_ensemble`) is host-level: the points the detector classifies
correctly start robust, member i runs only on the points still robust after members
0..i-1 (pooled over the evaluation set, not per batch), and a point counts as broken by
the first member that flips it. The runner calls it through `dfjax.attacks.evaluate`; it
is the only implementation of the ensemble.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from dfjax.attacks._checks import check_choice
from dfjax.config import AttackSpec
from dfjax.losses import predicted_class

# name -> members in order; each member runs only on points still robust after the ones before.
PRESETS: dict[str, tuple[str, ...]] = {
    "v1": ("apgd_ce", "apgd_margin", "square"),
}
OPTIONS: dict[str, Any] = {"preset": "v1", "num_steps": 20, "num_queries": 200}
# Members that read gradients. Anything else (square, one_pixel, noise) is black box.
WHITE_BOX = frozenset({"fgsm", "pgd", "pgd_targeted", "apgd_ce", "apgd_margin", "cw_l2"})
# Per-example outputs an ensemble takes from the member that broke a point.
PER_EXAMPLE = ("adv", "linf", "l2", "l0")


def check_options(options: Mapping[str, Any]) -> None:
    check_choice(options["preset"], PRESETS, "preset")


def member_specs(spec: AttackSpec, options: Mapping[str, Any], attacks) -> list[AttackSpec]:
    """The member attacks of an `auto` spec at the same eps and norm, in preset order;
    members that do not support the norm (square is Linf only) are left out.
    attacks: the attack registry (name -> entry with `norms` and `options`)."""
    check_options(options)
    specs = []
    for name in PRESETS[options["preset"]]:
        entry = attacks.get(name)
        if spec.norm not in entry.norms:
            continue
        own = {"num_steps": options["num_steps"], "num_queries": options["num_queries"]}
        specs.append(AttackSpec(name=name, norm=spec.norm, eps=spec.eps,
                                options={k: v for k, v in own.items() if k in entry.options}))
    return specs


def run_ensemble(
    members: Sequence[AttackSpec], clean: np.ndarray,
    run_member: Callable[[int, AttackSpec, np.ndarray], dict], y: np.ndarray,
    x: np.ndarray | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The AutoAttack protocol over an evaluation set of b points.

    clean: the detector's clean logits [b, k]; the points it classifies correctly start
    robust, the others count as broken before any attack and no member runs on them (as
    AutoAttack). run_member(i, member, idx) attacks the points `idx` (int [m], indices
    into the set, ascending) with member i and returns numpy outputs over those points:
    "adv" logits [m, k], "linf", "l2", "l0" [m], "in_range" (bool) and, where x is given,
    "x_adv" [m, ...]. Member i runs on the points still robust after members 0..i-1.
    y: int [b]. x: the clean images [b, ...], given to keep adversarial examples.

    Returns (outputs over the set: "clean" and "adv" logits -- adv is the breaking
    member's, the clean logits where no member broke the point --, norms, zero where no
    member broke the point, "in_range", all members' AND, and where x is given "x_adv":
    the breaking member's output, else the first member's, else the clean image;
    flipped_by {member name: bool [b]}, True where that member broke the point).
    """
    if not members:
        raise ValueError("an ensemble needs at least one member for this norm")
    y = np.asarray(y)
    clean = np.asarray(clean)
    b = len(y)
    out: dict[str, Any] = {"clean": clean, "adv": clean.copy(), "in_range": True}
    out |= {"linf": np.zeros(b, np.float32), "l2": np.zeros(b, np.float32),
            "l0": np.zeros(b, np.int32)}
    if x is not None:
        out["x_adv"] = np.array(x, copy=True)
    robust = np.asarray(predicted_class(clean)) == y
    flipped_by = {}
    for i, member in enumerate(members):
        flipped_by[member.name] = np.zeros(b, bool)
        idx = np.flatnonzero(robust)
        if len(idx) == 0:
            continue
        res = run_member(i, member, idx)
        out["in_range"] &= bool(res["in_range"])
        if i == 0 and x is not None:  # where no member breaks a point: the first's output
            out["x_adv"][idx] = res["x_adv"]
        flipped = np.asarray(predicted_class(res["adv"])) != y[idx]
        hit = idx[flipped]
        for k in PER_EXAMPLE + (("x_adv",) if x is not None else ()):
            out[k][hit] = res[k][flipped]
        flipped_by[member.name][hit] = True
        robust[hit] = False
    return out, flipped_by


def black_box_beats_white_box(flipped_by: Mapping[str, np.ndarray],
                              white_box: Sequence[str] | frozenset = WHITE_BOX) -> bool:
    """Sanity flag (Carlini et al. 2019, "On Evaluating Adversarial Robustness"): True
    when a black-box member flipped a point that every white-box member missed --
    a sign of gradient masking. flipped_by: member name -> bool [n] (flipped by it,
    for members that ran on that point; False where it did not run)."""
    white = [np.asarray(v, bool) for k, v in flipped_by.items() if k in white_box]
    black = [np.asarray(v, bool) for k, v in flipped_by.items() if k not in white_box]
    if not black:
        return False
    n = len(black[0])
    missed_by_white = ~np.any(white, axis=0) if white else np.ones(n, bool)
    return bool(np.any(np.any(black, axis=0) & missed_by_white))
