"""Fast eval-mode blocks for gan_disc and MesoInception-4, built on models/_cpu_kernels.py.

* A stride-2 conv with an even k x k kernel and SAME padding is a stride-1 (k/2)-square
  VALID conv on space_to_depth(pad(x)) with 4x the input channels: no strided conv, and
  its input gradient is a stride-1 conv (XLA:CPU runs a stride-2 conv's input gradient,
  a conv with a dilated input, far below its GEMM rate); for a 4x4 kernel the 2x2 VALID
  conv gets the GEMM input gradient of `conv_valid_gemm_backward` (`conv_stride2_s2d`).
* BatchNorm in eval mode is a per-channel affine map (`batch_norm_affine`, read from the
  BatchNorm's own variables), folded into the preceding conv's kernel and bias where
  nothing lies between them (`StridedConvBN`).

Each block has the plain layers' parameters (names, shapes, initialisers); the models
use it in eval mode only, as with models/_cpu_kernels.py.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from dfjax.models._cpu_kernels import conv_valid, conv_valid_gemm_backward, space_to_depth

BATCH_NORM_EPSILON = 1e-5  # flax.linen.BatchNorm's default


def stride2_kernel_to_s2d(kernel: jnp.ndarray) -> jnp.ndarray:
    """[k, k, c, o] kernel (k even) of a stride-2 conv -> [k/2, k/2, 4c, o] kernel of the
    stride-1 VALID conv on space_to_depth input, channels ordered (dy, dx, c) as
    space_to_depth's: big[a, b, (dy, dx, c)] = kernel[2a + dy, 2b + dx, c]."""
    k, _, c, o = kernel.shape
    m = k // 2
    big = kernel.reshape(m, 2, m, 2, c, o).transpose(0, 2, 1, 3, 4, 5)
    return big.reshape(m, m, 4 * c, o)


def conv_stride2_s2d(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
    """nn.Conv's stride-2 SAME conv (no bias) of x [b, h, w, c] (h, w even) with an even
    k x k kernel [k, k, c, o] -> [b, h/2, w/2, o], computed in space-to-depth form."""
    k = kernel.shape[0]
    if k % 2 or x.shape[1] % 2 or x.shape[2] % 2:
        raise ValueError(f"conv_stride2_s2d needs an even kernel and even h, w; got kernel "
                         f"{kernel.shape}, x {x.shape}")
    p = k // 2 - 1  # SAME, stride 2, even input: (k - 2) rows of padding, split evenly
    xs = space_to_depth(jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0))))
    conv = conv_valid_gemm_backward if k == 4 else conv_valid
    return conv(xs, stride2_kernel_to_s2d(kernel))


class BatchNormAffine(nn.Module):
    """nn.BatchNorm's variables (params scale, bias; batch_stats mean, var), returning
    its eval-mode map as (a, b) [features]: BatchNorm(x) = a * x + b."""

    epsilon: float = BATCH_NORM_EPSILON

    @nn.compact
    def __call__(self, features: int) -> tuple[jnp.ndarray, jnp.ndarray]:
        mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32).value
        var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32).value
        scale = self.param("scale", nn.initializers.ones_init(), (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (features,), jnp.float32)
        a = scale * (1.0 / jnp.sqrt(var + self.epsilon))
        return a, bias - mean * a


class StridedConvBN(nn.Module):
    """nn.Conv(features, (k, k), strides=2, padding="SAME", use_bias) -- the same
    parameters -- in space-to-depth form; given `affine` = (a, b) [features] (an
    eval-mode BatchNorm, `BatchNormAffine`), a * conv + b folded into kernel and bias."""

    features: int
    kernel_size: int = 4
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jnp.ndarray, affine: tuple[jnp.ndarray, jnp.ndarray] | None = None
                 ) -> jnp.ndarray:
        k = self.kernel_size
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (k, k, x.shape[-1], self.features), jnp.float32)
        bias = (self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
                if self.use_bias else jnp.zeros((self.features,), jnp.float32))
        if affine is not None:
            a, b = affine
            kernel, bias = kernel * a.reshape(1, 1, 1, -1), bias * a + b
        z = conv_stride2_s2d(x, kernel.astype(x.dtype))
        return z + bias.astype(x.dtype).reshape(1, 1, 1, -1)
