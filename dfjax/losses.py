"""Losses and probabilities of a detector's logits, for a 2-logit softmax head and a 1-logit
sigmoid head: what attacks maximise, training minimises and metrics score. Label 1 = fake."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dfjax.types import Labels, Logits


def two_class_logits(logits: Logits) -> Logits:
    """[b, 1] sigmoid logit z for "fake" -> the equivalent softmax logits [b, 2] = [0, z];
    [b, k] is returned unchanged. softmax([0, z])[1] == sigmoid(z)."""
    if logits.shape[-1] == 1:
        return jnp.concatenate([jnp.zeros_like(logits), logits], axis=-1)
    return logits


def cross_entropy(logits: Logits, y: Labels) -> jax.Array:
    """Per-example cross-entropy [b] (the paper's Eq. 3)."""
    logits = two_class_logits(logits)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(log_probs, y[:, None], axis=-1)[:, 0]


def margin(logits: Logits, y: Labels) -> jax.Array:
    """Carlini-Wagner logit margin [b]: max_{j != y} z_j - z_y (> 0 <=> misclassified)."""
    logits = two_class_logits(logits)
    true = jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0]
    others = jnp.where(jax.nn.one_hot(y, logits.shape[-1], dtype=bool), -jnp.inf, logits)
    return others.max(axis=-1) - true


LOSSES = {"ce": cross_entropy, "margin": margin}


def true_class_probability(logits: Logits, y: Labels) -> jax.Array:
    """p(y | x) per example [b] in [0, 1]: the quantity of the paper's Table I."""
    probs = jax.nn.softmax(two_class_logits(logits), axis=-1)
    return jnp.take_along_axis(probs, y[:, None], axis=-1)[:, 0]


def predicted_class(logits: Logits) -> jax.Array:
    return jnp.argmax(two_class_logits(logits), axis=-1)


def fake_probability(logits) -> np.ndarray:
    """p(fake | x) per example, float32 [b] in [0, 1], from [b, 2] or [b, 1] logits."""
    return np.asarray(jax.nn.softmax(two_class_logits(jnp.asarray(logits)), axis=-1)[:, 1])
