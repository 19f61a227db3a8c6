"""Mitigations under adaptive attack: cnn7 (standard and pgd_at, as in `default`) behind
every input-transform defence and feature-squeezing detection, attacked with PGD-10 and
the worst-case ensemble at 8/255 (and noise as a floor), on 256 test images.

Every defence is attacked adaptively (BPDA for jpeg and bit_depth, EOT for the random
ones); `--set defence.options="{'adaptive': False}"` gives the non-adaptive numbers to
set beside them. `smoothing` rows also carry certified accuracy at L2 radii 0-1.
"""

import dataclasses

from dfjax.config import AttackSweep, DefenceSpec, delta_to_eps
from dfjax.configs.default import get_config as default_config


def get_config():
    base = default_config()
    return dataclasses.replace(
        base,
        name="defences",
        models=tuple(m for m in base.models if m.name == "cnn7"),
        defences=tuple(DefenceSpec(name=n) for n in (
            "none", "jpeg", "bit_depth", "median", "blur", "random_resize_pad", "smoothing",
            "squeeze_detect")),
        attacks=(AttackSweep(name="noise"), AttackSweep(name="pgd", options={"num_steps": 10}),
                 AttackSweep(name="auto")),
        eps_values=delta_to_eps(0, 8),
    )
