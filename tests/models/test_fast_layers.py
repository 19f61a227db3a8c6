"""The fast conv + pool layers (dfjax/models/_cpu_kernels.py) compute the plain layers'
function: forward, input gradient and parameter gradients, in eval and training mode."""

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
    variables = MODELS.get(name).module(fast=False).init(jax.random.key(0), x[:1], train=False)
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
    for a, b in zip(jax.tree.leaves(fast.init(jax.random.key(0), x[:1])),
                    jax.tree.leaves(plain.init(jax.random.key(0), x[:1]))):
        np.testing.assert_array_equal(a, b)
    assert (jax.tree.structure(fast.init(jax.random.key(0), x[:1]))
            == jax.tree.structure(plain.init(jax.random.key(0), x[:1])))
    variables = _variables(name, x)
    _close(fast.apply(variables, x), plain.apply(variables, x))

    def loss(model, params, xa, train):
        v = {**variables, "params": params}
        if train:
            logits, _ = model.apply(v, xa, train=True, mutable=["batch_stats"],
                                    rngs={"dropout": jax.random.key(3)})
        else:
            logits = model.apply(v, xa, train=False)
        return cross_entropy(logits, y).sum()

    for train in (False, True):
        grads = [jax.grad(loss, argnums=(1, 2))(m, variables["params"], x, train)
                 for m in (fast, plain)]
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
    variables = plain.init(jax.random.key(0), x[:1], train=False)

    def loss(model, params):
        return cross_entropy(model.apply({**variables, "params": params}, x), y).sum()

    grads = [jax.grad(loss, argnums=1)(m, variables["params"])
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
