"""C&W L2 against a linear detector, whose minimal adversarial distance is known."""

import jax
import jax.numpy as jnp
import numpy as np

from dfjax.attacks import _loops as loops
from dfjax.attacks.cw import cw_l2


def test_cw_l2_distance_is_near_the_linear_minimum(monkeypatch):
    """Linear logits z = W^T (x - 1/2): the closest misclassified point (box ignored, so
    a lower bound) is |z_1 - z_0| / ||w_1 - w_0|| away; Adam's 30 steps per constant
    come within 10% (+0.01) of it.

    The Adam loops stay rolled here (MAX_UNROLL 0): unrolled, 4 x 30 steps compiled for
    40-120 s on the 2-core machine, rolled in about 5 s; unrolling is a speed choice for
    convolutions (dfjax/attacks/_loops.py) that this linear detector does not need."""
    monkeypatch.setattr(loops, "MAX_UNROLL", 0)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((8, 16, 16, 3), dtype=np.float32))
    w = jnp.asarray(rng.normal(size=(768, 2)).astype(np.float32) / 8.0)

    def logits_fn(xb):
        return (xb.reshape(xb.shape[0], -1) - 0.5) @ w

    z = logits_fn(x)
    y = jnp.argmax(z, -1)
    minimum = np.abs(np.asarray(z[:, 1] - z[:, 0])) / float(jnp.linalg.norm(w[:, 1] - w[:, 0]))
    x_adv, dist = jax.jit(lambda x, y: cw_l2(
        logits_fn, x, y, jax.random.key(0), eps=2.0, num_steps=30, binary_search_steps=4,
        return_distance=True))(x, y)
    dist = np.asarray(dist)
    assert np.all(dist >= minimum - 1e-5)
    assert np.all(dist <= 1.1 * minimum + 0.01)
    assert np.all(np.asarray(jnp.argmax(logits_fn(x_adv), -1)) != np.asarray(y))
    np.testing.assert_allclose(
        np.sqrt(((np.asarray(x_adv) - np.asarray(x)) ** 2).reshape(8, -1).sum(1)), dist,
        rtol=1e-5)
