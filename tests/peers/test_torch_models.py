"""The torch mirrors (dfjax.peers.torch_models, dfjax.peers.torch_zoo) compute the Flax
models' logits."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

torch = pytest.importorskip("torch")

from dfjax.models import MODELS, make_logits_fn
from dfjax.peers._torch_layers import same_pads
from dfjax.peers.torch_models import from_flax, nchw_to_nhwc, nhwc_to_nchw
from dfjax.peers.torch_zoo import max_pool_3x3_s2_same


def _randomise_batch_stats(variables, seed):
    """Non-trivial BatchNorm statistics and affine parameters (init has mean 0, var 1),
    in every BatchNorm however deeply nested."""
    rng = np.random.default_rng(seed)
    flat = {path: np.array(leaf) for path, leaf in traverse_util.flatten_dict(variables).items()}
    for (collection, *module, leaf) in sorted(flat):
        if collection != "batch_stats" or leaf != "mean":
            continue
        shape = flat[(collection, *module, leaf)].shape
        flat[("batch_stats", *module, "mean")] = rng.normal(0, 0.3, shape).astype(np.float32)
        flat[("batch_stats", *module, "var")] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        flat[("params", *module, "scale")] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        flat[("params", *module, "bias")] = rng.normal(0, 0.2, shape).astype(np.float32)
    return traverse_util.unflatten_dict(flat)


def _random_variables(model, shape, seed):
    """Variables of `model` for inputs [1, *shape, 3] drawn from numpy (faster than
    model.init for the deep models): LeCun-normal kernels, N(0, 0.1) biases, then
    `_randomise_batch_stats`."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *shape, 3)))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        if path[-1].key == "kernel":
            std = 1 / np.sqrt(np.prod(leaf.shape[:-1]))
            return rng.normal(0, std, leaf.shape).astype(np.float32)
        return rng.normal(0, 0.1, leaf.shape).astype(np.float32)

    variables = jax.tree_util.tree_map_with_path(draw, shapes)
    return _randomise_batch_stats(variables, seed + 1)


def _flattened_map_hw(name, shape):
    """The last map's (h, w) of the models that flatten it, which the mirror needs for a
    non-square input; None for a square input and for the global-pooling models."""
    base = name.removesuffix("_tiny")
    if base == "gan_disc":
        layers = len(MODELS.get(name).module().features)
        return tuple(-(-side // 2**layers) for side in shape)  # SAME at stride 2: ceil
    pool = {"cnn7": 8, "cnn6": 16, "meso4": 32, "mesoinception4": 32}.get(base)
    if pool is None or shape[0] == shape[1]:  # a square map is inferred from the weights
        return None
    return shape[0] // pool, shape[1] // pool


def _assert_mirror_matches(name, shape, num_logits, *, batch, seed):
    model = MODELS.get(name).module(num_logits=num_logits)
    variables = _random_variables(model, shape, seed)
    x = np.random.default_rng(seed).random((batch, *shape, 3), dtype=np.float32)
    logits_fn = jax.jit(lambda variables, x: make_logits_fn(model, variables)(x))
    expected = np.asarray(logits_fn(variables, jnp.asarray(x)))
    torch_model = from_flax(name, variables, feature_hw=_flattened_map_hw(name, shape))
    with torch.no_grad():
        got = torch_model(nhwc_to_nchw(x)).numpy()
    assert got.shape == (batch, num_logits)
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * scale)
    assert np.abs(expected).max() > 1e-3  # a real comparison, not zeros against zeros


@pytest.mark.parametrize("num_logits", [2, 1])
@pytest.mark.parametrize("name,shape", [("cnn7", (64, 64)), ("cnn7", (48, 80)),
                                        ("meso4", (64, 64)), ("meso4", (64, 96)),
                                        ("meso4_tiny", (32, 32))])
def test_logits_agree(name, shape, num_logits):
    """cnn7 and meso4 (Flax's fast layers) against their mirrors, square and not."""
    _assert_mirror_matches(name, shape, num_logits, batch=4, seed=1)


def test_channels_last_input_gives_the_same_logits():
    model = MODELS.get("cnn7").module(num_logits=2)
    x = np.random.default_rng(3).random((2, 32, 32, 3), dtype=np.float32)
    torch_model = from_flax("cnn7", _random_variables(model, (32, 32), 1))
    xt = nhwc_to_nchw(x)
    with torch.no_grad():
        a = torch_model(xt)
        b = torch_model.to(memory_format=torch.channels_last)(
            xt.to(memory_format=torch.channels_last))
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(nchw_to_nhwc(xt), x)


def test_non_square_map_needs_feature_hw_and_unknown_names_are_rejected():
    model = MODELS.get("cnn7_tiny").module(num_logits=2)
    variables = _random_variables(model, (16, 32), 0)
    with pytest.raises(ValueError, match="feature_hw"):
        from_flax("cnn7_tiny", variables)
    with pytest.raises(ValueError, match="feature_hw"):
        from_flax("cnn7_tiny", variables, feature_hw=(3, 4))
    from_flax("cnn7_tiny", variables, feature_hw=(2, 4))
    with pytest.raises(ValueError, match="no torch mirror"):
        from_flax("vit_b16", variables)


@pytest.mark.parametrize("num_logits", [2, 1])
@pytest.mark.parametrize("name,shape", [
    ("cnn6_tiny", (32, 48)),
    ("mesoinception4_tiny", (32, 64)),
    ("xception_tiny", (35, 48)),  # odd height: SAME pads the stride-2 stem (1, 1), not (0, 1)
    ("resnet18_tiny", (40, 56)),
    ("resnet50_tiny", (35, 48)),
    ("gan_disc_tiny", (32, 32)),
    ("gan_disc_tiny", (35, 40)),  # odd height: SAME pads the 4x4 stride-2 convs (1, 2)
])
def test_zoo_logits_agree(name, shape, num_logits):
    """The tiny variants' mirrors give the Flax logits (eval mode, random BatchNorm
    statistics) for both heads, on non-square and odd-sized inputs."""
    _assert_mirror_matches(name, shape, num_logits, batch=3, seed=5)


@pytest.mark.parametrize("name,shape,batch", [
    ("cnn6", (64, 64), 2),
    ("mesoinception4", (64, 64), 2),
    ("gan_disc", (64, 64), 2),
    ("resnet18", (64, 64), 2),
    ("resnet50", (64, 64), 2),
    ("xception", (64, 64), 2),
])
def test_full_width_logits_agree(name, shape, batch):
    """Each model at its registered widths and depths: mirror logits equal Flax's."""
    _assert_mirror_matches(name, shape, 2, batch=batch, seed=7)


@pytest.mark.parametrize("size", [5, 6, 7, 8])
def test_same_padding_matches_flax(size):
    """same_pads equals lax's SAME padding (4x4, 3x3 and 1x1 at stride 2, 3x3 dilated 2),
    and the ceil_mode 3x3/2 pool equals Flax's SAME max pool, on odd and even sides."""
    for kernel, stride, dilation in ((4, 2, 1), (3, 2, 1), (3, 1, 2), (1, 2, 1)):
        effective = (kernel - 1) * dilation + 1
        expected = jax.lax.padtype_to_pads((size,), (effective,), (stride,), "SAME")[0]
        assert same_pads(size, kernel, stride, dilation) == tuple(expected)
    x = np.random.default_rng(size).normal(size=(2, size, size + 1, 3)).astype(np.float32)
    expected = np.asarray(nn.max_pool(jnp.asarray(x), (3, 3), strides=(2, 2), padding="SAME"))
    got = nchw_to_nhwc(max_pool_3x3_s2_same(nhwc_to_nchw(x)))
    np.testing.assert_array_equal(got, expected)


def test_wrong_architecture_and_feature_hw_are_refused():
    """A ResNet name must match the variables' block type; global-pooling models refuse
    a feature_hw (they take any input size)."""
    resnet50 = MODELS.get("resnet50_tiny").module(num_logits=2)
    with pytest.raises(ValueError, match="bottleneck blocks, not basic"):
        from_flax("resnet18", _random_variables(resnet50, (32, 32), 0))
    xception = MODELS.get("xception_tiny").module(num_logits=2)
    with pytest.raises(ValueError, match="feature_hw"):
        from_flax("xception_tiny", _random_variables(xception, (32, 32), 0), feature_hw=(1, 1))
