"""The torch mirrors (dfjax.peers.torch_models) compute the Flax models' logits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dfjax.models import MODELS, make_logits_fn  # noqa: E402
from dfjax.peers.torch_models import from_flax, nchw_to_nhwc, nhwc_to_nchw  # noqa: E402


def _randomise_batch_stats(variables, seed):
    """Non-trivial BatchNorm statistics and affine parameters (init has mean 0, var 1)."""
    rng = np.random.default_rng(seed)
    out = jax.tree_util.tree_map(np.asarray, variables)
    out = jax.tree_util.tree_map(lambda a: a.copy(), out)
    for name, stats in out.get("batch_stats", {}).items():
        stats["mean"] = rng.normal(0, 0.3, stats["mean"].shape).astype(np.float32)
        stats["var"] = rng.uniform(0.5, 2.0, stats["var"].shape).astype(np.float32)
        params = out["params"][name]
        params["scale"] = rng.uniform(0.5, 1.5, params["scale"].shape).astype(np.float32)
        params["bias"] = rng.normal(0, 0.2, params["bias"].shape).astype(np.float32)
    return out


@pytest.mark.parametrize("num_logits", [2, 1])
@pytest.mark.parametrize("name,shape", [("cnn7", (64, 64)), ("cnn7", (48, 80)),
                                        ("meso4", (64, 64)), ("meso4", (64, 96)),
                                        ("meso4_tiny", (32, 32))])
def test_logits_agree(name, shape, num_logits):
    model = MODELS.get(name).module(num_logits=num_logits)
    x = np.random.default_rng(1).random((4, *shape, 3), dtype=np.float32)
    variables = _randomise_batch_stats(model.init(jax.random.key(0), jnp.asarray(x[:1])), 2)
    expected = np.asarray(make_logits_fn(model, variables)(jnp.asarray(x)))
    pool = 8 if name.startswith("cnn7") else 32
    # a square map is inferred from the weights; a non-square one must be given
    feature_hw = None if shape[0] == shape[1] else (shape[0] // pool, shape[1] // pool)
    torch_model = from_flax(name, variables, feature_hw=feature_hw)
    with torch.no_grad():
        got = torch_model(nhwc_to_nchw(x)).numpy()
    assert got.shape == (4, num_logits)
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * scale)
    assert np.abs(expected).max() > 1e-3  # a real comparison, not zeros against zeros


def test_channels_last_input_gives_the_same_logits():
    model = MODELS.get("cnn7").module(num_logits=2)
    x = np.random.default_rng(3).random((2, 32, 32, 3), dtype=np.float32)
    torch_model = from_flax("cnn7", model.init(jax.random.key(1), jnp.asarray(x)))
    xt = nhwc_to_nchw(x)
    with torch.no_grad():
        a = torch_model(xt)
        b = torch_model.to(memory_format=torch.channels_last)(
            xt.to(memory_format=torch.channels_last))
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(nchw_to_nhwc(xt), x)


def test_non_square_map_needs_feature_hw_and_unknown_names_are_rejected():
    model = MODELS.get("cnn7_tiny").module(num_logits=2)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 16, 32, 3)))
    with pytest.raises(ValueError, match="feature_hw"):
        from_flax("cnn7_tiny", variables)
    with pytest.raises(ValueError, match="feature_hw"):
        from_flax("cnn7_tiny", variables, feature_hw=(3, 4))
    from_flax("cnn7_tiny", variables, feature_hw=(2, 4))
    with pytest.raises(ValueError, match="no torch mirror"):
        from_flax("xception", variables)
