"""PyTorch peers of dfjax's detectors, for cross-checks and speed comparisons.

The only place in dfjax that imports torch (an optional extra: `pip install
dfjax[peers]`, then torchattacks with `--no-deps`; see docs/peers.md). Importing
`dfjax.peers` itself does not import torch; `dfjax.peers.torch_models` does.
"""

from __future__ import annotations

__all__ = ["torch_models"]
