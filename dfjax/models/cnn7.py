"""The paper's custom 7-layer CNN (Dhese et al., Fig. 1): 3 conv + 3 dense + classifier.

Under attack (fast=True, default) it uses the fast layers of models/_cpu_kernels.py:
the first conv's 3 input channels make XLA:CPU's conv and its input gradient slow, so
it runs in space-to-depth form with a GEMM input gradient, ReLU is folded into the
pooling reduction, and the dense layers multiply gradients by a materialised kernel
transpose. docs/peers.md has the measurements and the peer comparison.
"""

from __future__ import annotations

import flax.linen as nn

from dfjax.models._common import Normalize, max_pool_2x2
from dfjax.models._cpu_kernels import DenseTransposedGrad, PooledConv, relu_max_over
from dfjax.types import Images, Logits


class CNN7(nn.Module):
    """x float32 [b, h, w, 3] in [0, 1] -> logits [b, num_logits].

    Three 3x3 conv layers (ReLU, 2x2 max pool each), three dense layers and the
    classification layer, as in the paper's Fig. 1. `num_logits` = 2 (softmax) or
    1 (a single sigmoid logit for "fake"). Widths are configurable for tiny variants.

    fast=True (default) computes each conv + ReLU + pool in eval mode (attacks) as
    relu_max_over(PooledConv) and each dense layer as DenseTransposedGrad
    (models/_cpu_kernels.py): the same function and parameters, faster to
    differentiate on XLA:CPU. Training (train=True) and fast=False
    use the plain nn.Conv / ReLU / max_pool_2x2 layers: flat image regions tie pooling
    windows, and the space-to-depth conv's rounding (different per window position)
    breaks such ties differently, so its parameter gradients differ from the plain ones
    at the 1e-4 level, enough to change a borderline training run (tests/test_strength.py:
    clean accuracy 0.59 vs 0.65-0.68).
    """

    num_logits: int = 2
    conv_features: tuple[int, ...] = (16, 32, 64)
    dense_features: tuple[int, ...] = (256, 128, 64)
    fast: bool = True

    @nn.compact
    def __call__(self, x: Images, train: bool = False) -> Logits:
        x = Normalize()(x)  # no dropout or BatchNorm: train only picks the layers
        for i, features in enumerate(self.conv_features):
            if self.fast and not train:  # relu(max(z)) == max(relu(z)): one reduction
                x = relu_max_over(*PooledConv(features, 3, name=f"Conv_{i}")(x))
            else:
                x = nn.relu(nn.Conv(features, (3, 3), padding="SAME", name=f"Conv_{i}")(x))
                x = max_pool_2x2(x)
        x = x.reshape(x.shape[0], -1)
        for i, features in enumerate(self.dense_features):
            if self.fast and not train:
                x = nn.relu(DenseTransposedGrad(features, name=f"Dense_{i}")(x))
            else:
                x = nn.relu(nn.Dense(features, name=f"Dense_{i}")(x))
        return nn.Dense(self.num_logits, name=f"Dense_{len(self.dense_features)}")(x)
