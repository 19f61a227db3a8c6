"""How an attack sees a defence: BPDA for non-differentiable transforms, EOT for random ones.

Athalye, Carlini & Wagner 2018 ("Obfuscated Gradients Give a False Sense of Security",
arXiv:1802.00420): a transform g with no useful gradient is attacked by Backward Pass
Differentiable Approximation -- the forward pass runs g, the backward pass a
differentiable surrogate (often the identity); a randomised transform is attacked by
Expectation over Transformation -- the attack's loss averages k draws.

Randomness is keyed explicitly and by content: example i's draw is keyed by
fold_in(key, hash of x_i), so a defence draws afresh whenever its input changes (every
attack step) while the same input with the same key gives the same output. The draws
the evaluation scores (stream 0) and those the attacker averages over (stream 1) are
independent: the attacker never sees the draw it is scored with.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from dfjax.losses import two_class_logits
from dfjax.types import Images, LogitsFn

SCORED, ATTACKED = 0, 1  # key streams: the draws scored, the draws an attack averages over

Transform = Callable[[Images, jax.Array], Images]  # (x [b,h,w,c] in [0,1], keys [b]) -> x'


def example_keys(key: jax.Array, x: Images) -> jax.Array:
    """keys [b]: fold_in(key, a 32-bit hash of example i's pixels)."""
    flat = x.reshape(x.shape[0], -1)
    weights = jax.random.normal(jax.random.key(0x5EED), flat.shape[1:], jnp.float32)
    digest = jax.lax.bitcast_convert_type(jax.lax.stop_gradient(flat) @ weights, jnp.uint32)
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, digest)


def bpda(transform: Transform, surrogate: Transform) -> Transform:
    """The transform in the forward pass, the surrogate's gradient in the backward pass:
    surrogate(x) + stop_gradient(transform(x) - surrogate(x))."""

    def approximated(x, keys):
        s = surrogate(x, keys)
        return s + jax.lax.stop_gradient(transform(jax.lax.stop_gradient(x), keys) - s)

    return approximated


def identity(x: Images, keys: jax.Array, **options) -> Images:
    """The BPDA surrogate of a transform that keeps the image close to itself (the
    transform's options are ignored)."""
    del keys, options
    return x


def mean_probability_logits(logits: jax.Array) -> jax.Array:
    """logits [k, b, 2] of k draws -> log of the mean softmax over draws [b, 2]: the
    logits of the averaged prediction, whose cross-entropy is -log E[p(y | x)] (EOT on
    probabilities)."""
    log_probs = jax.nn.log_softmax(two_class_logits(logits), axis=-1)
    return jax.nn.logsumexp(log_probs, axis=0) - jnp.log(logits.shape[0])


def transformed_logits(logits_fn: LogitsFn, transform: Transform, key: jax.Array, *,
                       samples: int = 1) -> LogitsFn:
    """x -> the detector's logits on transform(x): one draw (samples = 1, the raw logits),
    or the mean-probability logits over `samples` draws (EOT)."""

    def defended(x):
        keys = example_keys(key, x)
        if samples == 1:
            return logits_fn(transform(x, keys))
        # the k draws as one batch of k * b: one detector call, compiled once
        draw_keys = jax.vmap(lambda j: jax.vmap(jax.random.fold_in, (0, None))(keys, j))(
            jnp.arange(samples))
        tiled = jnp.broadcast_to(x, (samples, *x.shape)).reshape(-1, *x.shape[1:])
        logits = logits_fn(transform(tiled, draw_keys.reshape(-1)))
        return mean_probability_logits(logits.reshape(samples, x.shape[0], -1))

    return defended
