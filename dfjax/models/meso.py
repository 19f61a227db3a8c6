"""MesoNet detectors (Afchar et al. 2018, "MesoNet: a Compact Facial Video Forgery
Detection Network", arXiv:1809.00888): Meso-4 and MesoInception-4.

Under attack (fast=True, default) Meso-4 uses the fast layers of
models/_cpu_kernels.py: its 3- and 8-channel convs run in space-to-depth form (4x wider
GEMMs) and ReLU/BatchNorm run on the pooled maps. MesoInception-4 keeps the plain
layers. docs/peers.md has the measurements.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from dfjax.models._common import Normalize, max_pool_2x2, windows_2x2
from dfjax.models._cpu_kernels import PooledConv, max_over, min_over
from dfjax.types import Images, Logits


def _batch_norm(train: bool) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9)


def _pool(x: jnp.ndarray, size: int) -> jnp.ndarray:
    """size x size max pool (size a power of 2) as repeated 2x2 reshape+max pools."""
    while size > 1:
        x = max_pool_2x2(x)
        size //= 2
    return x


class _MesoHead(nn.Module):
    """Flatten, dropout 0.5, dense 16 + LeakyReLU(0.1), dropout 0.5, classifier."""

    num_logits: int
    hidden: int = 16

    @nn.compact
    def __call__(self, x, train: bool):
        x = x.reshape(x.shape[0], -1)
        x = nn.Dropout(0.5, deterministic=not train)(x)
        x = nn.leaky_relu(nn.Dense(self.hidden)(x), 0.1)
        x = nn.Dropout(0.5, deterministic=not train)(x)
        return nn.Dense(self.num_logits)(x)


class Meso4(nn.Module):
    """Meso-4: x float32 [b, h, w, 3] in [0, 1] -> logits [b, num_logits].

    Four conv blocks (3x3/8, 5x5/8, 5x5/16, 5x5/16; ReLU, BatchNorm; max pools 2, 2,
    2, 4), then dropout-dense(16)-dropout-classifier (Afchar et al., Fig. 4). h and w
    must be divisible by 32 (64x64 -> 2x2 features; 32x32 -> 1x1).

    fast=True (default) computes each block in eval mode (attacks) with PooledConv
    (models/_cpu_kernels.py); there BatchNorm is a per-channel affine map a*r + b, so the
    pool of BN(ReLU(z)) is max(BN(ReLU(max z)), BN(ReLU(min z))) whatever the sign of
    a: ReLU and BN run on the pooled maps only, and the pools on the raw conv output get
    the lean gradient. Training (train=True, batch statistics) and fast=False use the
    plain nn.Conv / ReLU / BatchNorm / max_pool_2x2 layers (see CNN7 for why training).
    """

    num_logits: int = 2
    features: tuple[int, int, int, int] = (8, 8, 16, 16)
    hidden: int = 16
    fast: bool = True

    @nn.compact
    def __call__(self, x: Images, train: bool = False) -> Logits:
        x = Normalize()(x)
        for i, (features, kernel, pool) in enumerate(
                zip(self.features, (3, 5, 5, 5), (2, 2, 2, 4))):
            norm = _batch_norm(train)
            if train or not self.fast:
                x = nn.relu(nn.Conv(features, (kernel, kernel), padding="SAME",
                                    name=f"Conv_{i}")(x))
                x = _pool(norm(x), pool)
                continue
            z, axes = PooledConv(features, kernel, name=f"Conv_{i}")(x)
            hi, lo = max_over(z, axes), min_over(z, axes)
            for _ in range(pool.bit_length() - 2):  # the rest of a 4x4 (8x8..) pool
                hi, lo = max_over(*windows_2x2(hi)), min_over(*windows_2x2(lo))
            x = jnp.maximum(norm(nn.relu(hi)), norm(nn.relu(lo)))
        return _MesoHead(self.num_logits, self.hidden)(x, train)


class InceptionLayer(nn.Module):
    """MesoInception module: 1x1 (a), 1x1-3x3 (b), 1x1-3x3 dilated 2 (c), 1x1-3x3
    dilated 3 (d) branches, ReLU, concatenated along channels (a + b + c + d)."""

    a: int
    b: int
    c: int
    d: int

    @nn.compact
    def __call__(self, x):
        def conv(f, k, dilation=1):
            return lambda z: nn.relu(nn.Conv(f, (k, k), padding="SAME",
                                             kernel_dilation=dilation)(z))

        x1 = conv(self.a, 1)(x)
        x2 = conv(self.b, 3)(conv(self.b, 1)(x))
        x3 = conv(self.c, 3, 2)(conv(self.c, 1)(x))
        x4 = conv(self.d, 3, 3)(conv(self.d, 1)(x))
        return jnp.concatenate([x1, x2, x3, x4], axis=-1)


class MesoInception4(nn.Module):
    """MesoInception-4: x float32 [b, h, w, 3] in [0, 1] -> logits [b, num_logits].

    Two inception layers (1,4,4,2) and (2,4,4,2), each with BatchNorm and 2x2 max
    pool, then Meso-4's last two conv blocks (5x5/16, pools 2 and 4) and head
    (Afchar et al., Fig. 5). h and w must be divisible by 32.
    """

    num_logits: int = 2
    inception: tuple[tuple[int, int, int, int], ...] = ((1, 4, 4, 2), (2, 4, 4, 2))
    features: tuple[int, int] = (16, 16)
    hidden: int = 16

    @nn.compact
    def __call__(self, x: Images, train: bool = False) -> Logits:
        x = Normalize()(x)
        for widths in self.inception:
            x = max_pool_2x2(_batch_norm(train)(InceptionLayer(*widths)(x)))
        for features, pool in zip(self.features, (2, 4)):
            x = nn.relu(nn.Conv(features, (5, 5), padding="SAME")(x))
            x = _pool(_batch_norm(train)(x), pool)
        return _MesoHead(self.num_logits, self.hidden)(x, train)
