"""The worst-case ensemble (AutoAttack-style; Croce & Hein 2020, arXiv:2003.01690).

A preset is a versioned, frozen list of member attacks: changing what "v1" runs
would silently change stored results, so a new ensemble gets a new preset name.
Our members use the 2-class logit margin where AutoAttack uses DLR (which needs
>= 3 classes), so numbers are comparable in spirit, not identical to AutoAttack's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dfjax.attacks._checks import check_batch, check_budget, check_choice
from dfjax.losses import predicted_class
from dfjax.config import AttackSpec
from dfjax.types import Images, Labels, LogitsFn

# name -> members in order; each member runs only on points still robust after the ones before.
PRESETS: dict[str, tuple[str, ...]] = {
    "v1": ("apgd_ce", "apgd_margin", "square"),
}
# Members that read gradients. Anything else (square, one_pixel, noise) is black box.
WHITE_BOX = frozenset({"fgsm", "pgd", "pgd_targeted", "apgd_ce", "apgd_margin", "cw_l2"})


def member_specs(spec: AttackSpec, options: Mapping[str, Any]) -> list[AttackSpec]:
    """The member attacks of an `auto` spec at the same eps and norm; members that do
    not support the norm (square is Linf only) are left out."""
    from dfjax.attacks import ATTACKS  # the registry imports this module

    check_choice(options["preset"], PRESETS, "preset")
    specs = []
    for name in PRESETS[options["preset"]]:
        entry = ATTACKS.get(name)
        if spec.norm not in entry.norms:
            continue
        own = {"num_steps": options["num_steps"], "num_queries": options["num_queries"]}
        specs.append(AttackSpec(name=name, norm=spec.norm, eps=spec.eps,
                                options={k: v for k, v in own.items() if k in entry.options}))
    return specs


def auto(
    logits_fn: LogitsFn, x: Images, y: Labels, key: jax.Array, *, eps, norm: str = "linf",
    preset: str = "v1", num_steps: int = 20, num_queries: int = 200,
) -> Images:
    """Per example, the first member's output that is misclassified, else x.

    The pure, jittable form (every member runs on the whole batch); the runner runs
    the same ensemble at the host level, each member only on points still robust,
    and reports a per-member breakdown. Member i gets key fold_in(key, i).
    x: float32 [b, h, w, c] in [0, 1]; y: int [b]. Returns x_adv within eps.
    """
    from dfjax.attacks import ATTACKS

    check_batch(x, y)
    check_budget(eps, norm)
    options = {"preset": preset, "num_steps": num_steps, "num_queries": num_queries}
    robust = predicted_class(logits_fn(x)) == y
    x_adv = x
    for i, member in enumerate(member_specs(AttackSpec(name="auto", norm=norm), options)):
        attack = ATTACKS.get(member.name).bind(member)
        x_m = attack(logits_fn, x, y, jax.random.fold_in(key, i), eps)
        flipped = robust & (predicted_class(logits_fn(x_m)) != y)
        x_adv = jnp.where(flipped[:, None, None, None], x_m, x_adv)
        robust = robust & ~flipped
    return x_adv


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
