"""PyTorch peers of dfjax's detectors, for cross-checks and speed comparisons.

The only place in dfjax that imports torch (an optional extra: `pip install
dfjax[peers]`, then torchattacks with `--no-deps`; see docs/peers.md). Importing
`dfjax.peers` itself does not import torch; its modules do: `torch_models` (cnn7, cnn6,
meso4, mesoinception4 mirrors and `from_flax` for every zoo model), `torch_zoo`
(xception, resnets, the GAN discriminator), `_torch_layers` (their shared pieces) and
`torch_ensemble` (the `auto` ensemble assembled from torchattacks).
"""

from __future__ import annotations

__all__ = ["torch_ensemble", "torch_models", "torch_zoo"]
