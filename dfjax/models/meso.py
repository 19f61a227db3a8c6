"""MesoNet detectors (Afchar et al. 2018, "MesoNet: a Compact Facial Video Forgery
Detection Network", arXiv:1809.00888): Meso-4 and MesoInception-4.

Under attack (fast=True, default) Meso-4 uses the fast layers of
models/_cpu_kernels.py: its 3- and 8-channel convs run in space-to-depth form (4x wider
GEMMs) and ReLU/BatchNorm run on the pooled maps; MesoInception-4's narrow inception
convs run in space-to-depth form too (see InceptionLayer). docs/peers.md has the
measurements.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from dfjax.models._common import Normalize, max_pool_2x2, windows_2x2
from dfjax.models._cpu_kernels import (
    PooledConv,
    conv_same_2x2_windows,
    max_over,
    min_over,
    space_to_depth,
)
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


class _ConvParams(nn.Module):
    """nn.Conv(features, (k, k))'s parameters (same names, shapes, initialisers), returned
    as (kernel [k, k, c, features], bias [features]) for a fast layer to use."""

    features: int
    kernel_size: int

    @nn.compact
    def __call__(self, c_in: int) -> tuple[jnp.ndarray, jnp.ndarray]:
        k = self.kernel_size
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (k, k, c_in, self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        return kernel, bias


def _dilated_dense(kernel: jnp.ndarray, dilation: int) -> jnp.ndarray:
    """A [k, k, c, o] kernel with `dilation` as the equal dense [d(k-1)+1]-square kernel
    (zeros between the taps): the s2d conv takes dense odd kernels only."""
    k = kernel.shape[0]
    size = dilation * (k - 1) + 1
    return jnp.zeros((size, size) + kernel.shape[2:], kernel.dtype).at[::dilation,
                                                                       ::dilation].set(kernel)


class InceptionLayer(nn.Module):
    """MesoInception module: 1x1 (a), 1x1-3x3 (b), 1x1-3x3 dilated 2 (c), 1x1-3x3
    dilated 3 (d) branches, ReLU, concatenated along channels (a + b + c + d).

    fast=True (eval mode, MesoInception4's fast layers) returns the same map with its
    2x2 pooling windows as an axis, [b, h/2, w/2, 4, a + b + c + d] (h, w even): the four
    1x1 convs run as one, and each 3x3 conv (dilated ones as dense 5x5 and 7x7 kernels)
    runs in space-to-depth form (conv_same_2x2_windows): XLA:CPU runs these 2- to
    4-channel convs and their input gradients on GEMMs too narrow to be fast, and the s2d
    form's 4x wider ones are faster despite the extra FLOPs. Same parameters.
    """

    a: int
    b: int
    c: int
    d: int
    fast: bool = False

    @nn.compact
    def __call__(self, x):
        if self.fast:
            return self._fast(x)

        def conv(f, k, dilation=1):
            return lambda z: nn.relu(nn.Conv(f, (k, k), padding="SAME",
                                             kernel_dilation=dilation)(z))

        x1 = conv(self.a, 1)(x)
        x2 = conv(self.b, 3)(conv(self.b, 1)(x))
        x3 = conv(self.c, 3, 2)(conv(self.c, 1)(x))
        x4 = conv(self.d, 3, 3)(conv(self.d, 1)(x))
        return jnp.concatenate([x1, x2, x3, x4], axis=-1)

    def _fast(self, x):
        c_in = x.shape[-1]
        # parameter names as the plain layers create them: 1x1 of a, then per branch
        # its 1x1 and its 3x3 (Conv_1/Conv_2 for b, Conv_3/Conv_4 for c, Conv_5/Conv_6)
        pointwise = [_ConvParams(w, 1, name=f"Conv_{i}")(c_in)
                     for i, w in zip((0, 1, 3, 5), (self.a, self.b, self.c, self.d))]
        kernel = jnp.concatenate([k for k, _ in pointwise], axis=-1)[0, 0]
        bias = jnp.concatenate([b for _, b in pointwise])
        y = nn.relu(x @ kernel.astype(x.dtype) + bias.astype(x.dtype).reshape(1, 1, 1, -1))
        bsz, h, w, _ = x.shape
        branches = [space_to_depth(y[..., :self.a]).reshape(bsz, h // 2, w // 2, 4, self.a)]
        start = self.a
        for i, width, dilation in ((2, self.b, 1), (4, self.c, 2), (6, self.d, 3)):
            k, b = _ConvParams(width, 3, name=f"Conv_{i}")(width)
            z, _ = conv_same_2x2_windows(y[..., start:start + width],
                                         _dilated_dense(k, dilation).astype(x.dtype),
                                         space_to_depth_conv=True)
            branches.append(nn.relu(z + b.astype(x.dtype).reshape(1, 1, 1, 1, -1)))
            start += width
        return jnp.concatenate(branches, axis=-1)


class MesoInception4(nn.Module):
    """MesoInception-4: x float32 [b, h, w, 3] in [0, 1] -> logits [b, num_logits].

    Two inception layers (1,4,4,2) and (2,4,4,2), each with BatchNorm and 2x2 max
    pool, then Meso-4's last two conv blocks (5x5/16, pools 2 and 4) and head
    (Afchar et al., Fig. 5). h and w must be divisible by 32.

    fast=True (default) runs in eval mode (attacks) on fast layers: the inception layers
    in their fast form (InceptionLayer), the 5x5 convs as PooledConv (space-to-depth
    for the 12-channel one), every 2x2 pool a max_over of the window axis with ReLU and
    BatchNorm applied before it. Training (train=True) and fast=False use the plain
    layers (see CNN7 for why training); the parameters are the same.
    """

    num_logits: int = 2
    inception: tuple[tuple[int, int, int, int], ...] = ((1, 4, 4, 2), (2, 4, 4, 2))
    features: tuple[int, int] = (16, 16)
    hidden: int = 16
    fast: bool = True

    @nn.compact
    def __call__(self, x: Images, train: bool = False) -> Logits:
        fast = self.fast and not train
        x = Normalize()(x)
        for i, widths in enumerate(self.inception):
            layer = InceptionLayer(*widths, fast=fast, name=f"InceptionLayer_{i}")
            norm = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                                name=f"BatchNorm_{i}")
            x = max_over(norm(layer(x)), (3,)) if fast else max_pool_2x2(norm(layer(x)))
        for i, (features, pool) in enumerate(zip(self.features, (2, 4))):
            norm = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                                name=f"BatchNorm_{i + len(self.inception)}")
            if fast:
                z, axes = PooledConv(features, 5, name=f"Conv_{i}")(x)
                x = max_over(norm(nn.relu(z)), axes)
                for _ in range(pool.bit_length() - 2):  # the rest of a 4x4 (8x8..) pool
                    x = max_over(*windows_2x2(x))
            else:
                x = nn.relu(nn.Conv(features, (5, 5), padding="SAME", name=f"Conv_{i}")(x))
                x = _pool(norm(x), pool)
        return _MesoHead(self.num_logits, self.hidden, name="_MesoHead_0")(x, train)
