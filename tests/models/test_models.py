import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dfjax.config import ModelSpec
from dfjax.models import MODELS, build_model

TINY = [n for n in MODELS.names() if n.endswith("_tiny")]


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("num_logits", [1, 2])
def test_output_shape_dtype_and_deterministic_init(name, num_logits):
    model = build_model(ModelSpec(name=name, num_logits=num_logits))
    x = jnp.full((3, 32, 32, 3), 0.5)
    v1 = model.init(jax.random.key(0), x, train=False)
    v2 = model.init(jax.random.key(0), x, train=False)
    for a, b in zip(jax.tree.leaves(v1), jax.tree.leaves(v2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    logits = model.apply(v1, x, train=False)
    assert logits.shape == (3, num_logits) and logits.dtype == jnp.float32


@pytest.mark.parametrize("name", TINY)
def test_logit_does_not_depend_on_rest_of_batch(name):
    model = build_model(ModelSpec(name=name))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((4, 32, 32, 3), dtype=np.float32))
    v = model.init(jax.random.key(0), x, train=False)
    full = model.apply(v, x, train=False)
    alone = model.apply(v, x[:1], train=False)
    np.testing.assert_allclose(full[:1], alone, rtol=1e-5, atol=1e-5)


def test_unknown_model_and_bad_head():
    with pytest.raises(KeyError, match="known models"):
        build_model(ModelSpec(name="nope"))
    with pytest.raises(ValueError, match="num_logits"):
        build_model(ModelSpec(name="cnn7", num_logits=3))
