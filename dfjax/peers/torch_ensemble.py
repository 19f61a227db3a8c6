"""dfjax's worst-case ensemble (`auto`, preset v1) assembled from torchattacks 3.5.1.

Members, in order, each on the points still robust after the ones before (the AutoAttack
protocol, as `dfjax.attacks.auto.run_ensemble`):
  apgd_ce     -- `torchattacks.APGD(loss="ce")`;
  apgd_margin -- `MarginAPGD`: torchattacks' APGD on the 2-class logit margin
                 max_{j != y} z_j - z_y (dfjax's `apgd_margin`). torchattacks' own DLR
                 loss divides by z_pi1 - z_pi3, the gap to the third-largest logit, which
                 a 2-class detector does not have; `MarginAPGD` replaces it;
  square      -- `torchattacks.Square(loss="margin")` with n_queries = num_queries - 1
                 (torchattacks counts the iterations after the first query; dfjax counts
                 every model call).
Each torchattacks member also skips, inside, the points its model already gets wrong.

This module imports torch and torchattacks; nothing else in dfjax imports it.

Example:
    >>> members = build_members(torch_model, eps=1 / 255)
    >>> result = run_ensemble(torch_model, members, x, y)  # x [b, 3, h, w], y int64 [b]
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np
import torch
import torchattacks
from torch import nn

PRESET_V1 = ("apgd_ce", "apgd_margin", "square")


def logit_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """max_{j != y} z_j - z_y per example [b] (> 0 <=> misclassified); logits [b, k >= 2]."""
    rows = torch.arange(logits.shape[0], device=logits.device)
    true = logits[rows, y]
    others = logits.clone()
    others[rows, y] = -torch.inf
    return others.max(dim=1).values - true


class MarginAPGD(torchattacks.APGD):
    """torchattacks' APGD maximising the logit margin (`logit_margin`) instead of DLR.

    APGD calls its `dlr_loss(logits, y)` as the per-example loss when loss="dlr"; this
    class sets loss="dlr" and makes that method the margin. Same arguments as
    torchattacks.APGD otherwise."""

    def __init__(self, model: nn.Module, **kwargs):
        if "loss" in kwargs:
            raise TypeError("MarginAPGD fixes the loss (the logit margin)")
        super().__init__(model, loss="dlr", **kwargs)
        self.attack = "APGD-margin"

    def dlr_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x: logits [b, k] (torchattacks' name for them), y int64 [b] -> margin [b]."""
        return logit_margin(x, y)


def build_members(model: nn.Module, *, eps: float, num_steps: int = 20,
                  num_queries: int = 200, p_init: float = 0.05, seed: int = 0
                  ) -> list[tuple[str, torchattacks.Attack]]:
    """(name, attack) for preset v1 at Linf budget eps, with dfjax `auto`'s options:
    num_steps APGD steps, num_queries Square model calls per example (>= 2), Square's
    p_init (dfjax's default 0.05; torchattacks' own is 0.8)."""
    if num_queries < 2:
        raise ValueError(f"num_queries must be >= 2 (query 1 + iterations), got {num_queries}")
    apgd = dict(norm="Linf", eps=eps, steps=num_steps, n_restarts=1, seed=seed)
    return [
        ("apgd_ce", torchattacks.APGD(model, loss="ce", **apgd)),
        ("apgd_margin", MarginAPGD(model, **apgd)),
        ("square", torchattacks.Square(model, norm="Linf", eps=eps, n_queries=num_queries - 1,
                                       p_init=p_init, n_restarts=1, seed=seed, loss="margin")),
    ]


@dataclasses.dataclass
class EnsembleResult:
    """x_adv float32 [b, c, h, w] (the breaking member's output, else the clean image);
    robust bool [b] (correct on the clean image and after every member);
    flipped_by {member: bool [b]}, True where that member broke the point;
    seconds {member: wall seconds}; attacked {member: points it ran on}."""

    x_adv: torch.Tensor
    robust: np.ndarray
    flipped_by: dict[str, np.ndarray]
    seconds: dict[str, float]
    attacked: dict[str, int]


def predicted(model: nn.Module, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """argmax of model(x) [b] (int64), without gradients, in chunks of `batch`."""
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch]).argmax(dim=1) for i in range(0, len(x), batch)])


def run_ensemble(model: nn.Module, members: Sequence[tuple[str, torchattacks.Attack]],
                 x: torch.Tensor, y: torch.Tensor) -> EnsembleResult:
    """The worst case over `members` (build_members): member i attacks only the points
    still robust after members 0..i-1; a point counts as broken by the first member whose
    output the model misclassifies. x float32 [b, c, h, w] in [0, 1], y int64 [b]."""
    robust = (predicted(model, x) == y).numpy()
    x_adv = x.clone()
    flipped_by, seconds, attacked = {}, {}, {}
    for name, attack in members:
        flipped_by[name] = np.zeros(len(y), bool)
        idx = np.flatnonzero(robust)
        attacked[name], seconds[name] = len(idx), 0.0
        if len(idx) == 0:
            continue
        index = torch.from_numpy(idx)
        start = time.perf_counter()
        adv = attack(x[index], y[index]).detach()
        fooled = (predicted(model, adv) != y[index]).numpy()
        seconds[name] = time.perf_counter() - start
        hit = idx[fooled]
        x_adv[torch.from_numpy(hit)] = adv[torch.from_numpy(fooled)]
        flipped_by[name][hit] = True
        robust[hit] = False
    return EnsembleResult(x_adv, robust, flipped_by, seconds, attacked)
