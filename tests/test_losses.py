import jax
import jax.numpy as jnp
import numpy as np

from dfjax.losses import cross_entropy, margin, true_class_probability, two_class_logits


def test_single_logit_equals_two_logit_form():
    z = jnp.array([[-2.0], [0.0], [3.0]])
    y = jnp.array([0, 1, 1])
    two = jnp.concatenate([jnp.zeros_like(z), z], axis=-1)
    np.testing.assert_allclose(two_class_logits(z), two)
    np.testing.assert_allclose(true_class_probability(z, y),
                               [1 - jax.nn.sigmoid(-2.0), 0.5, jax.nn.sigmoid(3.0)], rtol=1e-6)
    np.testing.assert_allclose(cross_entropy(z, y), cross_entropy(two, y), rtol=1e-6)


def test_hand_computed_values():
    logits = jnp.array([[1.0, 3.0], [2.0, 0.0]])
    y = jnp.array([0, 0])
    p0 = np.exp(1) / (np.exp(1) + np.exp(3))
    np.testing.assert_allclose(true_class_probability(logits, y), [p0, 1 - p0], rtol=1e-6)
    np.testing.assert_allclose(cross_entropy(logits, y), [-np.log(p0), -np.log(1 - p0)],
                               rtol=1e-6)
    np.testing.assert_allclose(margin(logits, y), [2.0, -2.0])
