"""The paper's 6-layer CNN (Dhese et al., Sec. IV): 4 conv + 2 dense layers."""

from __future__ import annotations

import flax.linen as nn

from dfjax.models._common import Normalize, max_pool_2x2
from dfjax.types import Images, Logits


class CNN6(nn.Module):
    """x float32 [b, h, w, 3] in [0, 1] -> logits [b, num_logits].

    "6 layers consisting of 4 convolution layers and 2 fully connected layers"
    (Dhese et al., the model behind Fig. 2): four 3x3 conv layers (ReLU, 2x2 max
    pool each), one hidden dense layer and the classification layer. The paper
    gives no widths; ours are Keras-tutorial-like and configurable for tiny variants.
    `num_logits` = 2 (softmax) or 1 (a single sigmoid logit for "fake").
    """

    num_logits: int = 2
    conv_features: tuple[int, ...] = (16, 32, 64, 128)
    dense_features: int = 128

    @nn.compact
    def __call__(self, x: Images, train: bool = False) -> Logits:
        del train  # no dropout or BatchNorm
        x = Normalize()(x)
        for features in self.conv_features:
            x = nn.relu(nn.Conv(features, (3, 3), padding="SAME")(x))
            x = max_pool_2x2(x)
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(self.dense_features)(x))
        return nn.Dense(self.num_logits)(x)
