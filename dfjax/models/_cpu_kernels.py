"""Custom-VJP layers that make detectors fast to differentiate on XLA:CPU.

Attacks spend their time in input gradients, and two parts of the plain layers are
slow there on XLA:CPU: convolutions with few channels (a 3x3 conv with 3 input
channels, and its input gradient, a conv with 3 *output* channels, run on narrow GEMMs
far below the machine's GEMM rate), and JAX's gradient of a max reduction (an equality
mask divided by a tie count over strided 2x2 windows), which costs more than the
pooling itself. So:

* a conv whose output is max-pooled 2x2 and which has few input channels runs in
  space-to-depth form: a (k//2+1)-square VALID conv from 4*c_in to 4*c_out channels,
  more FLOPs but on 4x wider GEMMs, which also turns the pool into a max over a
  contiguous axis of 4 (`PooledConv`, `conv_same_2x2_windows`);
* the 2x2 space-to-depth conv's input gradient is one GEMM plus an overlap-add
  (`conv_valid_gemm_backward`);
* the max gets a gradient computed in one fused pass (`max_over`, `min_over`), and a
  ReLU before a pool folds into the pooling reduction (`relu_max_over`): XLA:CPU runs
  a ReLU after a reduction as a separate pass;
* dense layers multiply gradients by a materialised kernel transpose
  (`DenseTransposedGrad`).

For meso4 neither the GEMM input gradient nor one sign-selected pool (instead of a max
and a min pool) helped; it uses the space-to-depth conv and `max_over`/`min_over`.

Each layer computes the plain layer's function with the same parameters, names and
initialisers. The models use them in eval mode (attacks, `fast=True`); ResNet and
Xception also train on their fast convs and pools (BatchNorm on batch statistics cannot
fold); `fast=False` keeps the plain layers, the reference that
tests/models/test_fast_layers.py and tests/attacks/test_fast_equivalence.py compare
against. The measurements, and what was tried and dropped: docs/peers.md.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dfjax.models._common import windows_2x2

SPACE_TO_DEPTH_MAX_CHANNELS = 15  # s2d pays off for 3 and 8 input channels, not for 16+


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def max_over(x: jnp.ndarray, axes: tuple[int, ...]) -> jnp.ndarray:
    """x.max(axis=axes) with a lean gradient: g split evenly between tied maxima, as
    JAX's, computed in one fused pass over x (an equality mask against the saved max,
    its count over the window, a select) instead of JAX's generic chooser rule.

    Ties are common: flat image regions give equal conv outputs across a window, so
    giving each tied element all of g (cheaper still) would inflate weight gradients
    (it visibly slowed cnn7's training).
    """
    return x.max(axis=axes)


def _max_over_fwd(x, axes):
    m = x.max(axis=axes)
    return m, (x, m)


def _split_between_maxima(x, m, g, axes):
    """g split evenly between the tied maxima of x's windows (m = their max)."""
    hit = x == jnp.expand_dims(m, axes)
    share = jnp.expand_dims(g / hit.sum(axis=axes, dtype=g.dtype), axes)
    return jnp.where(hit, share, jnp.zeros((), g.dtype))


def _max_over_bwd(axes, residuals, g):
    x, m = residuals
    return (_split_between_maxima(x, m, g, axes),)


max_over.defvjp(_max_over_fwd, _max_over_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def relu_max_over(x: jnp.ndarray, axes: tuple[int, ...]) -> jnp.ndarray:
    """relu(x.max(axis=axes)) (the max pool of relu(x)) as one reduction with initial
    value 0 -- XLA:CPU runs a ReLU after a reduction as a separate pass over the pooled
    map -- with max_over's gradient, zero where the max is <= 0 (as jax.nn.relu's)."""
    return lax.reduce(x, np.zeros((), x.dtype), lax.max, axes)  # jnp.max(initial=0) adds a pass


def _relu_max_over_fwd(x, axes):
    r = relu_max_over(x, axes)
    return r, (x, r)


def _relu_max_over_bwd(axes, residuals, g):
    x, r = residuals  # where r > 0, r is the max; elsewhere the gradient is zero
    return (_split_between_maxima(x, r, jnp.where(r > 0, g, jnp.zeros((), g.dtype)), axes),)


relu_max_over.defvjp(_relu_max_over_fwd, _relu_max_over_bwd)


def min_over(x: jnp.ndarray, axes: tuple[int, ...]) -> jnp.ndarray:
    """x.min(axis=axes) with max_over's cheap gradient."""
    return -max_over(-x, axes)



def space_to_depth(x: jnp.ndarray) -> jnp.ndarray:
    """[b, h, w, c] (h, w even) -> [b, h/2, w/2, 4c], channels ordered (dy, dx, c)."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h // 2, w // 2, 4 * c)


def _space_to_depth_index(k: int) -> np.ndarray:
    """Static gather index [kb, kb, 2, 2, 2, 2] (a, b, dy_in, dx_in, dy_out, dx_out) into
    the k*k taps of a kernel, k*k meaning "zero": output pixel (2i+dy_out) reads padded
    input row 2(i+a)+dy_in, i.e. tap ky = 2a + dy_in - dy_out."""
    kb = k // 2 + 1
    index = np.full((kb, kb, 2, 2, 2, 2), k * k, np.int32)
    for a, b, dyi, dxi, dyo, dxo in np.ndindex(index.shape):
        ky, kx = 2 * a + dyi - dyo, 2 * b + dxi - dxo
        if 0 <= ky < k and 0 <= kx < k:
            index[a, b, dyi, dxi, dyo, dxo] = ky * k + kx
    return index


def space_to_depth_kernel(kernel: jnp.ndarray) -> jnp.ndarray:
    """[k, k, c, o] SAME kernel (k odd) -> [k//2+1, k//2+1, 4c, 4o] VALID kernel acting on
    space_to_depth(pad(x, k//2)) and giving conv(x) in space-to-depth form."""
    k, _, c, o = kernel.shape
    taps = jnp.concatenate([kernel.reshape(k * k, c, o), jnp.zeros((1, c, o), kernel.dtype)])
    big = taps[_space_to_depth_index(k)]  # [kb, kb, 2, 2, 2, 2, c, o]
    big = big.transpose(0, 1, 2, 3, 6, 4, 5, 7)  # a, b, dy_in, dx_in, c, dy_out, dx_out, o
    return big.reshape(k // 2 + 1, k // 2 + 1, 4 * c, 4 * o)


def conv_same(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
    """Stride-1 SAME conv, NHWC x HWIO -> NHWC (what nn.Conv computes, without bias)."""
    return lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def conv_same_2x2_windows(x: jnp.ndarray, kernel: jnp.ndarray, *,
                          space_to_depth_conv: bool | None = None
                          ) -> tuple[jnp.ndarray, tuple[int, ...]]:
    """conv_same(x, kernel) with its 2x2 pooling windows as axes: (z, axes) such that
    z.max(axis=axes) is the conv's 2x2 max pool ([b, h/2, w/2, o]).

    space_to_depth_conv (default: when c_in <= SPACE_TO_DEPTH_MAX_CHANNELS, k odd and h,
    w even) computes it as a VALID conv on space_to_depth(pad(x)), z [b, h/2, w/2, 4, o];
    otherwise z is the plain conv's free reshape [b, h/2, 2, w/2, 2, o].
    """
    k, _, c, o = kernel.shape
    b, h, w, _ = x.shape
    possible = k % 2 == 1 and h % 2 == 0 and w % 2 == 0
    if space_to_depth_conv is None:
        space_to_depth_conv = possible and c <= SPACE_TO_DEPTH_MAX_CHANNELS
    if not (space_to_depth_conv and possible):
        return windows_2x2(conv_same(x, kernel))
    p = k // 2
    xs = space_to_depth(jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0))))
    kernel = space_to_depth_kernel(kernel)
    # a 2x2 block kernel (k = 3) has 4 taps: its GEMM gradient pays off; with 9 taps
    # (k = 5, meso4) the GEMM's output is too wide and it is slower than JAX's
    conv = conv_valid_gemm_backward if kernel.shape[0] == 2 else conv_valid
    z = conv(xs, kernel)
    return z.reshape(b, h // 2, w // 2, 4, o), (3,)


def conv_valid(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
    """Stride-1 VALID conv, NHWC x HWIO -> NHWC."""
    return lax.conv_general_dilated(x, kernel, (1, 1), "VALID",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


@jax.custom_vjp
def conv_valid_gemm_backward(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
    """conv_valid(x, kernel) whose input gradient is one GEMM plus an overlap-add.

    For a conv with few input channels c (the space-to-depth first layers: 12), JAX's
    input gradient is a conv with c output channels, which XLA:CPU runs far below its
    GEMM rate. Here it is g [b*h'*w', o] @ kernel^T [o, kh*kw*c] (a GEMM with a wide
    output, near that rate) followed by summing each tap's shifted slice, a loop that
    XLA fuses with what consumes the gradient. The kernel gradient is JAX's.
    """
    return conv_valid(x, kernel)


def _conv_valid_gemm_fwd(x, kernel):
    return conv_valid(x, kernel), (x, kernel)


def _conv_valid_gemm_bwd(residuals, g):
    x, kernel = residuals
    kh, kw, c, o = kernel.shape
    n, hg, wg, _ = g.shape
    taps = jnp.dot(g.reshape(-1, o), kernel.reshape(kh * kw * c, o).T,
                   preferred_element_type=g.dtype)
    taps = taps.reshape(n, hg, wg, kh, kw, c)
    zero = jnp.zeros((), g.dtype)  # x[p, q] fed output (p - a, q - b) through tap (a, b):
    dx = sum(lax.pad(taps[:, :, :, a, b, :], zero,  # pads of slices fuse into one loop
                     ((0, 0, 0), (a, kh - 1 - a, 0), (b, kw - 1 - b, 0), (0, 0, 0)))
             for a in range(kh) for b in range(kw))
    _, kernel_vjp = jax.vjp(lambda k: conv_valid(x, k), kernel)
    return dx.astype(x.dtype), kernel_vjp(g)[0]


conv_valid_gemm_backward.defvjp(_conv_valid_gemm_fwd, _conv_valid_gemm_bwd)


class PooledConv(nn.Module):
    """nn.Conv(features, (k, k), padding="SAME") -- same parameters, names, shapes and
    initialisers -- returning its output with the 2x2 max-pool windows as axes,
    (z [.., o], axes), for max_over / relu_max_over (see conv_same_2x2_windows)."""

    features: int
    kernel_size: int
    space_to_depth_conv: bool | None = None

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> tuple[jnp.ndarray, tuple[int, ...]]:
        k = self.kernel_size
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (k, k, x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        z, axes = conv_same_2x2_windows(x, kernel.astype(x.dtype),
                                        space_to_depth_conv=self.space_to_depth_conv)
        return z + bias.astype(x.dtype).reshape((1,) * (z.ndim - 1) + (-1,)), axes


@jax.custom_vjp
def matmul_transposed_grad(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
    """x [b, n] @ kernel [n, m] whose input gradient g @ kernel.T multiplies by a
    materialised kernel.T: XLA:CPU's dot with a transposed operand is slower (cnn7's
    first dense layer, [64, 256] x [256, 16384]); in an unrolled attack the transpose is
    computed once and shared by every step."""
    return x @ kernel


def _matmul_transposed_grad_fwd(x, kernel):
    return x @ kernel, (x, kernel)


def _matmul_transposed_grad_bwd(residuals, g):
    x, kernel = residuals
    kernel_t = lax.optimization_barrier(kernel.T)  # keeps XLA from folding the transpose back
    return g @ kernel_t, x.T @ g


matmul_transposed_grad.defvjp(_matmul_transposed_grad_fwd, _matmul_transposed_grad_bwd)


class DenseTransposedGrad(nn.Module):
    """nn.Dense(features) -- same parameters, names, shapes and initialisers -- with
    matmul_transposed_grad's faster input gradient."""

    features: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        return matmul_transposed_grad(x, kernel.astype(x.dtype)) + bias.astype(x.dtype)[None]


# --- ResNet and Xception layers (eval mode) -------------------------------------------
#
# Measured per layer with bench/bench_layers.py (results/bench/layers-*.json, summarised
# in docs/architecture.md): XLA:CPU's conv is near its GEMM rate for 3x3 convs with 64+
# channels on maps of 4x4 and more, but far below it on smaller maps and for depthwise
# convs, its 3x3/2 max pool and its gradient (reduce_window / select_and_scatter) are
# slow, and BatchNorm in eval mode is an extra pass (two with its gradient) over every
# conv output. So in eval mode BatchNorm folds into the conv before it, tiny-map convs
# run as one GEMM, strided convs with few input channels run in space-to-depth
# form, depthwise convs as shifted multiply-adds, and the max pool as strided slices.

Padding = tuple[tuple[int, int], tuple[int, int]]

SMALL_MAP_MAX_PIXELS = 4  # at most this many output pixels (2x2): conv as im2col + GEMM


def fold_batch_norm(kernel: jnp.ndarray, scale: jnp.ndarray, bias: jnp.ndarray,
                    mean: jnp.ndarray, var: jnp.ndarray, epsilon: float
                    ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """A conv kernel [..., o] and the eval-mode BatchNorm after it ([o] each) -> (kernel',
    bias') with conv(x, kernel') + bias' == BN(conv(x, kernel)) up to float32 rounding
    (BN(z) = (z - mean) * scale / sqrt(var + epsilon) + bias, as nn.BatchNorm)."""
    multiplier = scale * lax.rsqrt(var + epsilon)
    return kernel * multiplier.reshape((1,) * (kernel.ndim - 1) + (-1,)), bias - mean * multiplier


def _output_size(size: int, kernel: int, stride: int, pads: tuple[int, int]) -> int:
    return (size + pads[0] + pads[1] - kernel) // stride + 1


def conv_gemm(x: jnp.ndarray, kernel: jnp.ndarray, stride: int, padding: Padding
              ) -> jnp.ndarray:
    """nn.Conv's conv (no bias; kernel [k, k, c, o], x [b, h, w, c]) as im2col + one GEMM
    [b*h'*w', k*k*c] x [k*k*c, o]. On small maps XLA:CPU's conv runs far below its GEMM
    rate; the GEMM's input gradient is g @ kernel^T (materialised transpose) followed by
    an overlap-add that XLA fuses (the gradient of the patches' slices)."""
    kh, kw, c, o = kernel.shape
    b, h, w, _ = x.shape
    ho = _output_size(h, kh, stride, padding[0])
    wo = _output_size(w, kw, stride, padding[1])
    xp = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
    patches = [xp[:, ky: ky + stride * (ho - 1) + 1: stride,
                  kx: kx + stride * (wo - 1) + 1: stride, :]
               for ky in range(kh) for kx in range(kw)]
    columns = patches[0] if len(patches) == 1 else jnp.concatenate(patches, axis=-1)
    out = matmul_transposed_grad(columns.reshape(b * ho * wo, kh * kw * c),
                                 kernel.reshape(kh * kw * c, o))
    return out.reshape(b, ho, wo, o)


def conv_stride2_space_to_depth(x: jnp.ndarray, kernel: jnp.ndarray, padding: Padding
                                ) -> jnp.ndarray:
    """A stride-2 conv (kernel [k, k, c, o]) as a stride-1 VALID conv with a
    [ceil(k/2), ceil(k/2), 4c, o] kernel on space_to_depth(padded x): for few input
    channels (ResNet's 7x7/2 stem on RGB) XLA:CPU's strided conv and its input gradient
    (a conv with c output channels) run on narrow GEMMs; here the input gradient is one
    GEMM with a 4x wider output plus an overlap-add (conv_valid_gemm_backward)."""
    k, _, c, o = kernel.shape
    b, h, w, _ = x.shape
    half = (k + 1) // 2
    ho = _output_size(h, k, 2, padding[0])
    wo = _output_size(w, k, 2, padding[1])
    # padded rows 0 .. 2 * (ho - 1 + half) - 1 (an even count), cropping surplus padding
    xp = lax.pad(x, np.zeros((), x.dtype),
                 ((0, 0, 0), (padding[0][0], 2 * (ho - 1 + half) - h - padding[0][0], 0),
                  (padding[1][0], 2 * (wo - 1 + half) - w - padding[1][0], 0), (0, 0, 0)))
    big = jnp.pad(kernel, ((0, 2 * half - k), (0, 2 * half - k), (0, 0), (0, 0)))
    big = big.reshape(half, 2, half, 2, c, o).transpose(0, 2, 1, 3, 4, 5)  # a, b, dy, dx
    return conv_valid_gemm_backward(space_to_depth(xp), big.reshape(half, half, 4 * c, o))


def conv_fast(x: jnp.ndarray, kernel: jnp.ndarray, stride: int, padding: Padding
              ) -> jnp.ndarray:
    """nn.Conv's conv (no bias, no dilation, no groups), computed the fastest measured way
    for its shape: k > 1 on maps of at most SMALL_MAP_MAX_PIXELS output pixels as a GEMM
    (conv_gemm: XLA's conv takes seconds for a 3x3 conv to a 2x2 map of 512 channels),
    stride-2 convs with at most SPACE_TO_DEPTH_MAX_CHANNELS input channels in
    space-to-depth form, the rest (1x1 convs included) as XLA's conv."""
    k, _, c, _ = kernel.shape
    ho = _output_size(x.shape[1], k, stride, padding[0])
    wo = _output_size(x.shape[2], kernel.shape[1], stride, padding[1])
    if k > 1 and ho * wo <= SMALL_MAP_MAX_PIXELS:
        return conv_gemm(x, kernel, stride, padding)
    if stride == 2 and c <= SPACE_TO_DEPTH_MAX_CHANNELS:
        return conv_stride2_space_to_depth(x, kernel, padding)
    return lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def depthwise_conv(x: jnp.ndarray, kernel: jnp.ndarray, padding: Padding) -> jnp.ndarray:
    """nn.Conv(c, (k, k), feature_group_count=c, use_bias=False) (kernel [k, k, 1, c],
    stride 1) as k*k shifted multiply-adds: one fused pass, and so is its gradient;
    XLA:CPU's grouped conv with one channel per group is far slower."""
    kh, kw, _, c = kernel.shape
    _, h, w, _ = x.shape
    xp = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
    ho, wo = h + sum(padding[0]) - kh + 1, w + sum(padding[1]) - kw + 1
    return sum(xp[:, ky: ky + ho, kx: kx + wo, :] * kernel[ky, kx, 0].reshape(1, 1, 1, c)
               for ky in range(kh) for kx in range(kw))


def _pool_taps(xp: jnp.ndarray, ho: int, wo: int) -> list[jnp.ndarray]:
    """The 9 strided [b, ho, wo, c] slices of a 3x3/2 pool's padded input, row-major."""
    return [xp[:, ky: ky + 2 * (ho - 1) + 1: 2, kx: kx + 2 * (wo - 1) + 1: 2, :]
            for ky in range(3) for kx in range(3)]


def _pool_pad(x: jnp.ndarray, padding: Padding) -> tuple[jnp.ndarray, int, int]:
    ho = _output_size(x.shape[1], 3, 2, padding[0])
    wo = _output_size(x.shape[2], 3, 2, padding[1])
    low = np.array(-np.inf, x.dtype)
    xp = lax.pad(x, low, ((0, 0, 0), (*padding[0], 0), (*padding[1], 0), (0, 0, 0)))
    return xp, ho, wo


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def max_pool_3x3_stride2(x: jnp.ndarray, padding: Padding, relu: bool = False
                         ) -> jnp.ndarray:
    """nn.max_pool(x, (3, 3), strides=(2, 2), padding=padding) (padding: explicit pads,
    -inf outside; of relu(x) if `relu`, folded into the reduction) as a maximum over 9
    strided slices: one fused pass. XLA:CPU's reduce_window and its gradient
    (select_and_scatter) are several times slower. The gradient goes, as JAX's, to the
    first maximum of each window in row-major order (none where relu and the max <= 0)."""
    xp, ho, wo = _pool_pad(x, padding)
    taps = _pool_taps(xp, ho, wo)
    if relu:
        taps = [jnp.zeros((), x.dtype), *taps]
    return functools.reduce(jnp.maximum, taps)


def _max_pool_3x3_stride2_fwd(x, padding, relu):
    m = max_pool_3x3_stride2(x, padding, relu)
    return m, (x, m)


def _max_pool_3x3_stride2_bwd(padding, relu, residuals, g):
    x, m = residuals
    xp, ho, wo = _pool_pad(x, padding)
    zero = jnp.zeros((), g.dtype)
    taken = m <= 0 if relu else jnp.zeros(m.shape, bool)
    grad = None
    for tap, (ky, kx) in zip(_pool_taps(xp, ho, wo), np.ndindex(3, 3)):
        hit = (tap == m) & ~taken
        taken = taken | hit
        # back to the padded input's rows ky, ky + 2, ..: a pad with interior 1
        part = lax.pad(jnp.where(hit, g, zero), zero,
                       ((0, 0, 0), (ky, xp.shape[1] - ky - 2 * ho + 1, 1),
                        (kx, xp.shape[2] - kx - 2 * wo + 1, 1), (0, 0, 0)))
        grad = part if grad is None else grad + part
    (top, _), (left, _) = padding
    return (grad[:, top: top + x.shape[1], left: left + x.shape[2], :],)


max_pool_3x3_stride2.defvjp(_max_pool_3x3_stride2_fwd, _max_pool_3x3_stride2_bwd)


class ConvKernel(nn.Module):
    """The `kernel` parameter of nn.Conv(features, (k, k), use_bias=False,
    feature_group_count=groups) -- same name, shape, initialiser -- without the conv, so
    a fast layer can transform it (fold a BatchNorm into it) before convolving."""

    features: int
    kernel_size: int
    feature_group_count: int = 1

    @nn.compact
    def __call__(self, in_features: int) -> jnp.ndarray:
        k = self.kernel_size
        return self.param("kernel", nn.initializers.lecun_normal(),
                          (k, k, in_features // self.feature_group_count, self.features),
                          jnp.float32)


class BatchNormVariables(nn.Module):
    """The variables of nn.BatchNorm over `features` channels -- params scale, bias,
    batch_stats mean, var, with nn.BatchNorm's names, shapes and initialisers -- returned
    as (scale, bias, mean, var) for fold_batch_norm (eval mode only)."""

    features: int
    scale_init: nn.initializers.Initializer = nn.initializers.ones

    @nn.compact
    def __call__(self) -> tuple[jnp.ndarray, ...]:
        shape = (self.features,)
        mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), shape)
        var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), shape)
        scale = self.param("scale", self.scale_init, shape, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, shape, jnp.float32)
        return scale, bias, mean.value, var.value
