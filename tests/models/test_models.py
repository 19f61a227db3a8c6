import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dfjax.config import ModelSpec
from dfjax.models import MODELS, build_model
from dfjax.training.loop import create_variables

TINY = [n for n in MODELS.names() if n.endswith("_tiny")]


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("num_logits", [1, 2])
def test_output_shape_dtype_and_deterministic_init(name, num_logits):
    model = build_model(ModelSpec(name=name, num_logits=num_logits))
    x = jnp.full((3, 32, 32, 3), 0.5)
    init = jax.jit(lambda key: model.init(key, x, train=False))  # one program, not op by op
    v1, v2 = init(jax.random.key(0)), init(jax.random.key(0))
    for a, b in zip(jax.tree.leaves(v1), jax.tree.leaves(v2), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    logits = jax.jit(lambda v: model.apply(v, x, train=False))(v1)
    assert logits.shape == (3, num_logits) and logits.dtype == jnp.float32


@pytest.mark.parametrize("name", TINY)
def test_logit_does_not_depend_on_rest_of_batch(name):
    model = build_model(ModelSpec(name=name))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((4, 32, 32, 3), dtype=np.float32))
    v = create_variables(model, x.shape[1:], jax.random.key(0))
    apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
    full, alone = apply(v, x), apply(v, x[:1])
    np.testing.assert_allclose(full[:1], alone, rtol=1e-5, atol=1e-5)


def test_unknown_model_and_bad_head():
    with pytest.raises(KeyError, match="known models"):
        build_model(ModelSpec(name="nope"))
    with pytest.raises(ValueError, match="num_logits"):
        build_model(ModelSpec(name="cnn7", num_logits=3))
