"""The paper's 6-layer CNN (Dhese et al., Sec. IV): 4 conv + 2 dense layers.

Under attack (fast=True, default) it uses cnn7's fast layers (models/_cpu_kernels.py):
each conv + ReLU + 2x2 pool is relu_max_over(PooledConv) (space-to-depth for the
narrow first convs), each dense layer DenseTransposedGrad.
"""

from __future__ import annotations

import flax.linen as nn

from dfjax.models._common import Normalize, max_pool_2x2
from dfjax.models._cpu_kernels import DenseTransposedGrad, PooledConv, relu_max_over
from dfjax.types import Images, Logits


class CNN6(nn.Module):
    """x float32 [b, h, w, 3] in [0, 1] -> logits [b, num_logits].

    "6 layers consisting of 4 convolution layers and 2 fully connected layers"
    (Dhese et al., the model behind Fig. 2): four 3x3 conv layers (ReLU, 2x2 max
    pool each), one hidden dense layer and the classification layer. The paper
    gives no widths; ours are Keras-tutorial-like and configurable for tiny variants.
    `num_logits` = 2 (softmax) or 1 (a single sigmoid logit for "fake").

    fast=True (default) computes each layer in eval mode (attacks) as CNN7 does, with
    the same function and parameters; training (train=True) and fast=False use the
    plain nn.Conv / ReLU / max_pool_2x2 / nn.Dense layers (see CNN7 for why training).
    """

    num_logits: int = 2
    conv_features: tuple[int, ...] = (16, 32, 64, 128)
    dense_features: int = 128
    fast: bool = True

    @nn.compact
    def __call__(self, x: Images, train: bool = False) -> Logits:
        fast = self.fast and not train  # no dropout or BatchNorm: train only picks layers
        x = Normalize()(x)
        for i, features in enumerate(self.conv_features):
            if fast:  # relu(max(z)) == max(relu(z)): one reduction
                x = relu_max_over(*PooledConv(features, 3, name=f"Conv_{i}")(x))
            else:
                x = nn.relu(nn.Conv(features, (3, 3), padding="SAME", name=f"Conv_{i}")(x))
                x = max_pool_2x2(x)
        x = x.reshape(x.shape[0], -1)
        dense = DenseTransposedGrad if fast else nn.Dense
        x = nn.relu(dense(self.dense_features, name="Dense_0")(x))
        return nn.Dense(self.num_logits, name="Dense_1")(x)
