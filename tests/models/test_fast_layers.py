"""The fast conv + pool layers (dfjax/models/_cpu_kernels.py) compute the plain layers'
function: forward, input gradient and parameter gradients, in eval and training mode."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dfjax.losses import cross_entropy
from dfjax.models import MODELS
from dfjax.models._common import max_pool_2x2, windows_2x2
from dfjax.models._cpu_kernels import (
    DenseTransposedGrad,
    conv_same,
    conv_same_2x2_windows,
    conv_valid,
    conv_valid_gemm_backward,
    matmul_transposed_grad,
    max_over,
    min_over,
    relu_max_over,
    space_to_depth,
)

FAST_MODELS = ["cnn7_tiny", "meso4_tiny", "cnn7", "meso4"]


def _close(a, b, rtol=1e-5):
    a, b = np.asarray(a), np.asarray(b)
    scale = max(float(np.abs(b).max()), 1e-12)
    np.testing.assert_allclose(a / scale, b / scale, rtol=0, atol=rtol)


def test_space_to_depth_layout():
    x = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 4, 3)
    s = space_to_depth(x)
    assert s.shape == (2, 2, 2, 12)
    np.testing.assert_array_equal(s[1, 1, 0].reshape(2, 2, 3), x[1, 2:4, 0:2])


@pytest.mark.parametrize("kernel_size, c_in, size", [(3, 3, 8), (5, 8, 8), (3, 16, 6),
                                                      (5, 3, 10), (3, 3, 7)])
@pytest.mark.parametrize("space_to_depth_conv", [None, True, False])
def test_conv_windows_match_conv_then_pool(kernel_size, c_in, size, space_to_depth_conv):
    kx, kw = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (2, size, size + 2, c_in))
    w = jax.random.normal(kw, (kernel_size, kernel_size, c_in, 5))
    z, axes = conv_same_2x2_windows(x, w, space_to_depth_conv=space_to_depth_conv)
    reference = max_pool_2x2(conv_same(x, w))
    _close(z.max(axis=axes), reference)
    # every window element, not only the max: the windows hold the conv's values
    _close(jnp.sort(z.reshape(reference.shape[:3] + (4, 5)) if axes == (3,) else
                    jnp.moveaxis(z, (2, 4), (3, 4)).reshape(reference.shape[:3] + (4, 5)),
                    axis=3),
           jnp.sort(jnp.moveaxis(windows_2x2(conv_same(x, w))[0], (2, 4), (3, 4))
                    .reshape(reference.shape[:3] + (4, 5)), axis=3))


def test_max_over_and_min_over_gradients_match_jnp():
    x = jax.random.normal(jax.random.key(1), (3, 6, 4, 5))  # no ties
    g = jax.random.normal(jax.random.key(2), (3, 3, 2, 5))
    windows, axes = windows_2x2(x)
    for fast, plain in [(max_over, lambda v, a: v.max(axis=a)),
                        (min_over, lambda v, a: v.min(axis=a))]:
        out_fast, vjp_fast = jax.vjp(lambda v, f=fast: f(windows_2x2(v)[0], axes), x)
        out_plain, vjp_plain = jax.vjp(lambda v, f=plain: f(windows_2x2(v)[0], axes), x)
        np.testing.assert_array_equal(out_fast, out_plain)
        np.testing.assert_array_equal(vjp_fast(g)[0], vjp_plain(g)[0])
    assert windows.shape == (3, 3, 2, 2, 2, 5)


def _variables(name, x):
    """Plain-model init, with random BatchNorm statistics and signed scales (meso4)."""
    init = jax.jit(functools.partial(MODELS.get(name).module(fast=False).init, train=False))
    variables = init(jax.random.key(0), x[:1])
    if "batch_stats" not in variables:
        return variables
    keys = iter(jax.random.split(jax.random.key(7), 64))
    stats = jax.tree.map(lambda a: jax.random.uniform(next(keys), a.shape) + 0.5,
                         variables["batch_stats"])
    params = dict(variables["params"])
    for layer in [k for k in params if k.startswith("BatchNorm")]:
        params[layer] = {k: jax.random.normal(next(keys), v.shape)
                         for k, v in params[layer].items()}
    return {"params": params, "batch_stats": stats}


@pytest.mark.parametrize("name", FAST_MODELS)
def test_fast_model_matches_plain_model(name):
    fast, plain = MODELS.get(name).module(), MODELS.get(name).module(fast=False)
    assert fast.fast and not plain.fast
    x = jax.random.uniform(jax.random.key(1), (4, 32, 32, 3))
    y = jnp.array([0, 1, 1, 0])
    # the same parameters (names, shapes, initial values)
    init_fast, init_plain = (jax.jit(m.init)(jax.random.key(0), x[:1]) for m in (fast, plain))
    assert jax.tree.structure(init_fast) == jax.tree.structure(init_plain)
    for a, b in zip(jax.tree.leaves(init_fast), jax.tree.leaves(init_plain), strict=True):
        np.testing.assert_array_equal(a, b)
    variables = _variables(name, x)
    _close(*(jax.jit(m.apply)(variables, x) for m in (fast, plain)))

    def loss(model, params, xa, train):
        v = {**variables, "params": params}
        if train:
            logits, _ = model.apply(v, xa, train=True, mutable=["batch_stats"],
                                    rngs={"dropout": jax.random.key(3)})
        else:
            logits = model.apply(v, xa, train=False)
        return cross_entropy(logits, y).sum()

    for train in (False, True):
        grads = [jax.jit(jax.grad(loss, argnums=(1, 2)), static_argnums=(0, 3))(
            m, variables["params"], x, train) for m in (fast, plain)]
        for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
            _close(a, b, rtol=2e-5)  # w.r.t. every parameter and the input


def test_max_over_splits_ties_like_jnp():
    x = jnp.zeros((1, 2, 2, 3)).at[0, 0, 0, 1].set(1.0)  # channel 0 and 2: four-way ties
    g = jnp.ones((1, 1, 1, 3))
    fast = jax.vjp(lambda v: max_over(*windows_2x2(v)), x)[1](g)[0]
    plain = jax.vjp(lambda v: v.max(axis=(1, 2), keepdims=True), x)[1](g)[0]
    np.testing.assert_array_equal(fast, plain)
    assert float(fast[0, 1, 1, 0]) == 0.25


@pytest.mark.parametrize("name", ["cnn7_tiny", "meso4_tiny"])
def test_parameter_gradients_match_on_flat_images(name):
    """Flat regions (as in synthetic faces' backgrounds) make pooling windows tie (eval
    mode: training uses the plain layers)."""
    x = jnp.zeros((4, 32, 32, 3)).at[:, 8:24, 8:24, :].set(
        jax.random.uniform(jax.random.key(1), (4, 16, 16, 3)))
    x = jnp.round(x * 4) / 4  # few levels: many equal pixels
    y = jnp.array([0, 1, 1, 0])
    plain = MODELS.get(name).module(fast=False)
    variables = jax.jit(functools.partial(plain.init, train=False))(jax.random.key(0), x[:1])

    def loss(model, params):
        return cross_entropy(model.apply({**variables, "params": params}, x), y).sum()

    grads = [jax.jit(jax.grad(loss, argnums=1), static_argnums=0)(m, variables["params"])
             for m in (MODELS.get(name).module(), plain)]
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
        _close(a, b, rtol=2e-5)


@pytest.mark.parametrize("kernel_shape", [(2, 2, 12, 16), (3, 3, 4, 8), (2, 3, 5, 7)])
def test_conv_valid_gemm_backward_gradients_match_the_conv(kernel_shape):
    kx, kw, kg = jax.random.split(jax.random.key(4), 3)
    x = jax.random.normal(kx, (2, 7, 9, kernel_shape[2]))
    w = jax.random.normal(kw, kernel_shape)
    out, vjp_fast = jax.vjp(conv_valid_gemm_backward, x, w)
    reference, vjp_plain = jax.vjp(conv_valid, x, w)
    _close(out, reference)
    g = jax.random.normal(kg, out.shape)
    for a, b in zip(vjp_fast(g), vjp_plain(g)):  # input and kernel gradients
        _close(a, b)


def test_relu_max_over_matches_relu_of_max_with_ties():
    x = jax.random.normal(jax.random.key(5), (2, 6, 4, 3))
    x = x.at[0, :2, :2, 0].set(0.5).at[1, :2, :2, 1].set(-0.5)  # tied positive / negative windows
    g = jax.random.normal(jax.random.key(6), (2, 3, 2, 3))
    fast_out, fast_vjp = jax.vjp(lambda v: relu_max_over(*windows_2x2(v)), x)
    plain_out, plain_vjp = jax.vjp(lambda v: jax.nn.relu(v.reshape(2, 3, 2, 2, 2, 3)
                                                          .max(axis=(2, 4))), x)
    np.testing.assert_array_equal(fast_out, plain_out)
    np.testing.assert_allclose(fast_vjp(g)[0], plain_vjp(g)[0], rtol=1e-6)
    assert float(fast_vjp(g)[0][0, 0, 0, 0]) == pytest.approx(float(g[0, 0, 0, 0]) / 4)
    assert float(jnp.abs(fast_vjp(g)[0][1, :2, :2, 1]).max()) == 0.0  # max <= 0: no gradient


def test_dense_transposed_grad_matches_nn_dense():
    x = jax.random.normal(jax.random.key(7), (3, 10))
    fast, plain = DenseTransposedGrad(4), nn.Dense(4)
    variables = plain.init(jax.random.key(0), x)
    assert (jax.tree.structure(fast.init(jax.random.key(0), x))
            == jax.tree.structure(variables))
    for a, b in zip(jax.tree.leaves(fast.init(jax.random.key(0), x)), jax.tree.leaves(variables)):
        np.testing.assert_array_equal(a, b)

    def loss(model, v, xa):
        return jnp.sin(model.apply(v, xa)).sum()

    for a, b in zip(jax.tree.leaves(jax.grad(loss, argnums=(1, 2))(fast, variables, x)),
                    jax.tree.leaves(jax.grad(loss, argnums=(1, 2))(plain, variables, x))):
        _close(a, b)
    _close(jax.jit(jax.grad(lambda xa: matmul_transposed_grad(xa, variables["params"]["kernel"])
                            .sum()))(x),
           jax.grad(lambda xa: (xa @ variables["params"]["kernel"]).sum())(x))


# --- ResNet / Xception layers ----------------------------------------------------------

from dfjax.models._cpu_kernels import (  # noqa: E402
    BatchNormVariables,
    ConvKernel,
    conv_fast,
    conv_gemm,
    conv_stride2_space_to_depth,
    depthwise_conv,
    fold_batch_norm,
    max_pool_3x3_stride2,
)


def _plain_conv(x, kernel, stride, padding, groups=1):
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=groups)


def _assert_same_vjp(fast, plain, *args, rtol=1e-5):
    """fast(*args) == plain(*args) and their VJPs (w.r.t. every arg) agree on a random g."""
    out, vjp_fast = jax.vjp(fast, *args)
    reference, vjp_plain = jax.vjp(plain, *args)
    assert out.shape == reference.shape
    _close(out, reference, rtol)
    g = jax.random.normal(jax.random.key(11), out.shape)
    for a, b in zip(vjp_fast(g), vjp_plain(g), strict=True):
        _close(a, b, rtol)


@pytest.mark.parametrize("kernel_size, stride, padding, size", [
    (3, 1, ((1, 1), (1, 1)), 4), (3, 2, ((1, 1), (1, 1)), 5), (3, 2, ((0, 1), (0, 1)), 6),
    (1, 1, ((0, 0), (0, 0)), 3), (1, 2, ((0, 0), (0, 0)), 4), (7, 2, ((3, 3), (3, 3)), 8)])
def test_conv_gemm_matches_the_conv(kernel_size, stride, padding, size):
    kx, kw = jax.random.split(jax.random.key(12))
    x = jax.random.normal(kx, (2, size, size + 1, 5))
    w = jax.random.normal(kw, (kernel_size, kernel_size, 5, 6))
    _assert_same_vjp(lambda a, k: conv_gemm(a, k, stride, padding),
                     lambda a, k: _plain_conv(a, k, stride, padding), x, w)


@pytest.mark.parametrize("kernel_size, padding, size", [
    (7, ((3, 3), (3, 3)), 16), (7, ((3, 3), (3, 3)), 9), (3, ((1, 1), (1, 1)), 8),
    (3, ((0, 1), (0, 1)), 8), (4, ((1, 2), (1, 2)), 7)])
def test_conv_stride2_space_to_depth_matches_the_strided_conv(kernel_size, padding, size):
    kx, kw = jax.random.split(jax.random.key(13))
    x = jax.random.normal(kx, (2, size, size + 2, 3))
    w = jax.random.normal(kw, (kernel_size, kernel_size, 3, 8))
    _assert_same_vjp(lambda a, k: conv_stride2_space_to_depth(a, k, padding),
                     lambda a, k: _plain_conv(a, k, 2, padding), x, w)


@pytest.mark.parametrize("kernel_size, stride, c_in, size", [
    (7, 2, 3, 16), (3, 1, 8, 8), (3, 2, 8, 8), (3, 1, 8, 2), (1, 2, 8, 8), (1, 1, 8, 4)])
def test_conv_fast_matches_the_conv_on_each_path(kernel_size, stride, c_in, size):
    """Every branch of conv_fast: space-to-depth (7x7/2 on 3 channels), XLA's conv (3x3
    on 8x8), GEMM (2x2 map, 1x1 convs)."""
    kx, kw = jax.random.split(jax.random.key(14))
    x = jax.random.normal(kx, (2, size, size, c_in))
    w = jax.random.normal(kw, (kernel_size, kernel_size, c_in, 16))
    pad = kernel_size // 2
    padding = ((pad, pad), (pad, pad))
    _assert_same_vjp(lambda a, k: conv_fast(a, k, stride, padding),
                     lambda a, k: _plain_conv(a, k, stride, padding), x, w)


def test_fold_batch_norm_equals_conv_then_batch_norm():
    keys = jax.random.split(jax.random.key(15), 6)
    x = jax.random.normal(keys[0], (2, 5, 5, 4))
    kernel = jax.random.normal(keys[1], (3, 3, 4, 6))
    bn = nn.BatchNorm(use_running_average=True, epsilon=1e-3)
    variables = {"params": {"scale": jax.random.normal(keys[2], (6,)),
                            "bias": jax.random.normal(keys[3], (6,))},
                 "batch_stats": {"mean": jax.random.normal(keys[4], (6,)),
                                 "var": jax.random.uniform(keys[5], (6,)) + 0.1}}
    padding = ((1, 1), (1, 1))

    def fast(a):
        folded, bias = fold_batch_norm(kernel, **variables["params"],
                                       **variables["batch_stats"], epsilon=1e-3)
        return _plain_conv(a, folded, 1, padding) + bias.reshape(1, 1, 1, -1)

    _assert_same_vjp(fast, lambda a: bn.apply(variables, _plain_conv(a, kernel, 1, padding)), x)


@pytest.mark.parametrize("padding", [((1, 1), (1, 1)), ((0, 1), (1, 1))])
def test_depthwise_conv_matches_the_grouped_conv(padding):
    kx, kw = jax.random.split(jax.random.key(16))
    x = jax.random.normal(kx, (2, 6, 5, 4))
    w = jax.random.normal(kw, (3, 3, 1, 4))
    _assert_same_vjp(lambda a, k: depthwise_conv(a, k, padding),
                     lambda a, k: _plain_conv(a, k, 1, padding, groups=4), x, w)


@pytest.mark.parametrize("padding, size", [(((1, 1), (1, 1)), 8), (((1, 1), (1, 1)), 7),
                                           (((0, 1), (0, 1)), 8), (((1, 1), (1, 1)), 2)])
@pytest.mark.parametrize("relu", [False, True])
def test_max_pool_3x3_stride2_matches_nn_max_pool_with_ties(padding, size, relu):
    """Values and gradient, also where windows tie (the gradient then goes to the first
    maximum, as JAX's reduce_window gradient) and, with relu, where the max is <= 0."""
    x = jax.random.normal(jax.random.key(17), (2, size, size + 1, 3))
    x = jnp.round(x * 2) / 2  # few levels: many ties, at 0 and above

    def plain(a):
        a = jax.nn.relu(a) if relu else a
        return nn.max_pool(a, (3, 3), strides=(2, 2), padding=padding)

    out, vjp_fast = jax.vjp(lambda a: max_pool_3x3_stride2(a, padding, relu), x)
    reference, vjp_plain = jax.vjp(plain, x)
    np.testing.assert_array_equal(out, reference)
    g = jax.random.normal(jax.random.key(18), out.shape)
    # a wrong window element would differ by O(1); overlapping windows sum in another order
    _close(vjp_fast(g)[0], vjp_plain(g)[0], rtol=1e-6)


def test_parameter_modules_match_nn_conv_and_batch_norm():
    """ConvKernel / BatchNormVariables create nn.Conv's / nn.BatchNorm's variables: same
    names, shapes and initial values."""
    x = jnp.ones((1, 4, 4, 6))
    conv = nn.Conv(8, (3, 3), feature_group_count=2, use_bias=False).init(jax.random.key(3), x)
    mine = ConvKernel(8, 3, feature_group_count=2).init(jax.random.key(3), 6)
    np.testing.assert_array_equal(mine["params"]["kernel"], conv["params"]["kernel"])
    bn = nn.BatchNorm(use_running_average=True).init(jax.random.key(3), x)
    mine = BatchNormVariables(6).init(jax.random.key(3))
    assert jax.tree.structure(mine) == jax.tree.structure(bn)
    for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(bn), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name, size", [("cnn6_tiny", 32), ("mesoinception4_tiny", 32),
                                        ("gan_disc_tiny", 32), ("cnn6", 32),
                                        ("mesoinception4", 32), ("gan_disc", 32)])
def test_zoo_fast_layers_match_plain_layers(name, size):
    """cnn6, mesoinception4 and gan_disc: fast and plain layers have the same parameters
    (names, shapes, initial values) and give the same logits, input gradient and
    parameter gradients in eval mode, with random BatchNorm statistics and scales."""
    fast, plain = MODELS.get(name).module(), MODELS.get(name).module(fast=False)
    assert fast.fast and not plain.fast
    x = jax.random.uniform(jax.random.key(1), (4, size, size, 3))
    y = jnp.array([0, 1, 1, 0])
    inits = [jax.jit(m.init)(jax.random.key(0), x[:1]) for m in (fast, plain)]
    assert jax.tree.structure(inits[0]) == jax.tree.structure(inits[1])
    for a, b in zip(jax.tree.leaves(inits[0]), jax.tree.leaves(inits[1])):
        np.testing.assert_array_equal(a, b)
    variables = _variables(name, x)

    def loss(model, params, xa):
        return cross_entropy(model.apply({**variables, "params": params}, xa), y).sum()

    def logits_and_grads(model, params, xa):
        return (model.apply({**variables, "params": params}, xa),
                jax.grad(loss, argnums=(1, 2))(model, params, xa))

    # one compiled program a model (op-by-op dispatch compiles each op's shape apart)
    step = jax.jit(logits_and_grads, static_argnums=0)
    (logits_fast, grads_fast), (logits_plain, grads_plain) = (
        step(m, variables["params"], x) for m in (fast, plain))
    _close(logits_fast, logits_plain)
    for a, b in zip(jax.tree.leaves(grads_fast), jax.tree.leaves(grads_plain), strict=True):
        _close(a, b, rtol=2e-5)  # w.r.t. every parameter and the input


def test_strided_conv_in_space_to_depth_form_matches_nn_conv():
    """conv_stride2_s2d (4x4 with the GEMM input gradient, 2x2 and 6x6 without) equals
    nn.Conv's stride-2 SAME conv, forward and input gradient."""
    from dfjax.models._fast_blocks import conv_stride2_s2d

    x = jax.random.normal(jax.random.key(8), (2, 12, 8, 5))
    for k in (2, 4, 6):
        w = jax.random.normal(jax.random.key(k), (k, k, 5, 7))

        def reference(xa, w=w):
            return jax.lax.conv_general_dilated(xa, w, (2, 2), "SAME",
                                                dimension_numbers=("NHWC", "HWIO", "NHWC"))

        out, vjp_fast = jax.vjp(lambda xa, w=w: conv_stride2_s2d(xa, w), x)
        expected, vjp_plain = jax.vjp(reference, x)
        assert out.shape == expected.shape == (2, 6, 4, 7)
        _close(out, expected)
        g = jax.random.normal(jax.random.key(9), out.shape)
        _close(vjp_fast(g)[0], vjp_plain(g)[0])


def _with_random_batch_norm(variables):
    """variables with random BatchNorm statistics (means, variances in [0.5, 1.5]) and
    signed scales and biases, for every module that has batch_stats."""
    keys = iter(jax.random.split(jax.random.key(8), 4 * len(jax.tree.leaves(variables))))

    def stats(tree):
        return {k: stats(v) if isinstance(v, dict) else
                (jax.random.uniform(next(keys), v.shape) + 0.5 if k == "var"
                 else 0.3 * jax.random.normal(next(keys), v.shape))
                for k, v in tree.items()}

    def params(tree, batch_stats):
        return {k: params(v, batch_stats.get(k, {})) if isinstance(v, dict) and
                "mean" not in batch_stats.get(k, {})
                else {n: jax.random.normal(next(keys), a.shape) for n, a in v.items()}
                if isinstance(v, dict) else v
                for k, v in tree.items()}

    return {"params": params(variables["params"], variables["batch_stats"]),
            "batch_stats": stats(variables["batch_stats"])}


@pytest.mark.parametrize("name, size", [("resnet18_tiny", 32), ("resnet50_tiny", 32),
                                        ("xception_tiny", 32), ("resnet18", 32)])
def test_fast_zoo_model_matches_plain_model(name, size):
    """ResNet / Xception with fast layers: the same variables (names, shapes, initial
    values) and, with non-trivial BatchNorm statistics, the same logits, input gradient
    and parameter gradients as the plain layers (float32 rounding)."""
    fast, plain = MODELS.get(name).module(), MODELS.get(name).module(fast=False)
    assert fast.fast and not plain.fast
    x = jax.random.uniform(jax.random.key(1), (2, size, size, 3))
    y = jnp.array([0, 1])
    init_fast, init_plain = (jax.jit(m.init)(jax.random.key(0), x[:1]) for m in (fast, plain))
    assert jax.tree.structure(init_fast) == jax.tree.structure(init_plain)
    for a, b in zip(jax.tree.leaves(init_fast), jax.tree.leaves(init_plain), strict=True):
        np.testing.assert_array_equal(a, b)
    variables = _with_random_batch_norm(init_plain)
    assert float(jnp.abs(variables["batch_stats"]["bn1"]["mean"] if "bn1" in
                         variables["batch_stats"] else
                         variables["batch_stats"]["BatchNorm_0"]["mean"]).max()) > 0.1

    def loss(model, params, xa):
        logits = model.apply({**variables, "params": params}, xa)
        return cross_entropy(logits, y).sum(), logits

    # logits and gradients from one compiled program a model
    step = jax.jit(jax.grad(loss, argnums=(1, 2), has_aux=True), static_argnums=0)
    (grads_fast, logits_fast), (grads_plain, logits) = (step(m, variables["params"], x)
                                                        for m in (fast, plain))
    assert float(jnp.abs(logits).max()) > 1e-3  # not a collapsed network
    _close(logits_fast, logits)
    grads = [grads_fast, grads_plain]
    assert jax.tree.structure(grads[0]) == jax.tree.structure(grads[1])
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1]), strict=True):
        _close(a, b, rtol=1e-4)  # w.r.t. every parameter and the input


@pytest.mark.parametrize("name, size", [("resnet18_tiny", 32), ("resnet50_tiny", 32),
                                        ("xception_tiny", 32)])
def test_fast_zoo_model_trains_like_plain_model(name, size):
    """ResNet / Xception in training mode (batch statistics): with fast layers the same
    logits, updated batch statistics, input gradient and parameter gradients as the plain
    layers (float32 rounding), so training on the fast layers is exact."""
    fast, plain = MODELS.get(name).module(), MODELS.get(name).module(fast=False)
    x = jax.random.uniform(jax.random.key(3), (4, size, size, 3))
    y = jnp.array([0, 1, 1, 0])
    variables = _with_random_batch_norm(jax.jit(plain.init)(jax.random.key(0), x[:1]))

    def loss(model, params, xa):
        logits, updates = model.apply({**variables, "params": params}, xa, train=True,
                                      mutable=["batch_stats"])
        return cross_entropy(logits, y).sum(), (logits, updates["batch_stats"])

    step = jax.jit(jax.value_and_grad(loss, argnums=(1, 2), has_aux=True), static_argnums=0)
    (_, (logits_fast, stats_fast)), grads_fast = step(fast, variables["params"], x)
    (_, (logits_plain, stats_plain)), grads_plain = step(plain, variables["params"], x)
    assert float(jnp.abs(logits_plain).max()) > 1e-3  # not a collapsed network
    _close(logits_fast, logits_plain, rtol=1e-4)
    for a, b in zip(jax.tree.leaves(stats_fast), jax.tree.leaves(stats_plain), strict=True):
        _close(a, b, rtol=1e-4)
    assert jax.tree.structure(grads_fast) == jax.tree.structure(grads_plain)
    # w.r.t. every parameter and the input, on the scale of the largest gradient: some
    # are exactly 0 in exact arithmetic (the bias of a BatchNorm over a 1x1 map's batch
    # of 4 pixels), so their rounding noise (~1e-7) cannot match leaf by leaf
    scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads_plain))
    assert scale > 1e-3
    for a, b in zip(jax.tree.leaves(grads_fast), jax.tree.leaves(grads_plain), strict=True):
        np.testing.assert_allclose(np.asarray(a) / scale, np.asarray(b) / scale, rtol=0,
                                   atol=1e-4)
