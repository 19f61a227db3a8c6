"""The paper's GAN (Dhese et al., Fig. 4): a DCGAN trained adversarially on real faces.

Non-saturating GAN losses (Goodfellow et al. 2014, arXiv:1406.2661) with DCGAN's
Adam(2e-4, b1 = 0.5) (Radford et al. 2016, arXiv:1511.06434). The generator then
serves as an extra source of fakes (`sample_fakes`); the discriminator architecture is
the `gan_disc` detector.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dfjax.models.gan import DCGANDiscriminator, DCGANGenerator, generator_for


@dataclasses.dataclass
class TrainedGAN:
    """generator / discriminator modules, their variables, and per-epoch history
    (d_loss, g_loss, d_real_accuracy, seconds): the D and G curves of Fig. 4."""

    generator: DCGANGenerator
    discriminator: DCGANDiscriminator
    generator_variables: dict
    discriminator_variables: dict
    history: list[dict]


def _bce_with_logits(logits, target: float):
    return optax.sigmoid_binary_cross_entropy(logits[:, 0], jnp.full(logits.shape[:1], target))


def _apply(module, variables, params, x):
    out, state = module.apply({**variables, "params": params}, x, train=True,
                              mutable=["batch_stats"])
    return out, {**variables, **state}


def train_gan(real_images: np.ndarray, *, key: jax.Array, epochs: int = 5, batch_size: int = 64,
              generator: DCGANGenerator | None = None,
              discriminator: DCGANDiscriminator | None = None,
              learning_rate: float = 2e-4, steps_per_epoch: int | None = None) -> TrainedGAN:
    """Train G and D on `real_images` uint8 [n, s, s, 3] (e.g. a split's reals).

    Each step: D on a real batch (target 1) and a generated batch (target 0), then G
    to make D say 1 on a fresh generated batch. Deterministic given `key`.
    """
    n, size = len(real_images), real_images.shape[1]
    generator = generator or generator_for(size)
    discriminator = discriminator or DCGANDiscriminator(num_logits=1)
    if generator.image_size != size:
        raise ValueError(f"generator makes {generator.image_size}px images, data is {size}px")
    if n < batch_size:
        raise ValueError(f"{n} real images < batch size {batch_size}")
    k_g, k_d = jax.random.split(jax.random.fold_in(key, 0))
    z0 = jnp.zeros((1, generator.latent_dim))
    g_vars = dict(generator.init(k_g, z0, train=False))
    d_vars = dict(discriminator.init(k_d, jnp.zeros((1, size, size, 3)), train=False))
    opt = optax.adam(learning_rate, b1=0.5)
    g_opt, d_opt = opt.init(g_vars["params"]), opt.init(d_vars["params"])

    @jax.jit
    def step(g_vars, d_vars, g_opt, d_opt, real_u8, key):
        real = real_u8.astype(jnp.float32) / 255.0
        k1, k2 = jax.random.split(key)
        z = jax.random.normal(k1, (real.shape[0], generator.latent_dim))
        fake, g_state = _apply(generator, g_vars, g_vars["params"], z)

        def d_loss_fn(p):
            logits_real, state = _apply(discriminator, d_vars, p, real)
            logits_fake, state = _apply(discriminator, state, p, jax.lax.stop_gradient(fake))
            loss = _bce_with_logits(logits_real, 1.0).mean() + _bce_with_logits(
                logits_fake, 0.0).mean()
            return loss, (state, jnp.mean(logits_real[:, 0] > 0))

        (d_loss, (d_state, d_acc)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
            d_vars["params"])
        updates, d_opt = opt.update(d_grads, d_opt, d_vars["params"])
        d_vars = {**d_state, "params": optax.apply_updates(d_vars["params"], updates)}

        def g_loss_fn(p):
            z = jax.random.normal(k2, (real.shape[0], generator.latent_dim))
            fake, state = _apply(generator, g_state, p, z)
            logits, _ = _apply(discriminator, d_vars, d_vars["params"], fake)
            return _bce_with_logits(logits, 1.0).mean(), state

        (g_loss, g_state), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
            g_vars["params"])
        updates, g_opt = opt.update(g_grads, g_opt, g_vars["params"])
        g_vars = {**g_state, "params": optax.apply_updates(g_vars["params"], updates)}
        return g_vars, d_vars, g_opt, d_opt, d_loss, g_loss, d_acc

    steps = steps_per_epoch or n // batch_size
    history = []
    for epoch in range(epochs):
        start = time.perf_counter()
        epoch_key = jax.random.fold_in(key, epoch + 1)
        order = np.asarray(jax.random.permutation(epoch_key, n))
        sums = np.zeros(3)
        for s in range(steps):
            idx = np.sort(order[(s * batch_size) % (n - batch_size + 1):][:batch_size])
            g_vars, d_vars, g_opt, d_opt, d_loss, g_loss, d_acc = step(
                g_vars, d_vars, g_opt, d_opt, real_images[idx], jax.random.fold_in(epoch_key, s))
            sums += np.array([float(d_loss), float(g_loss), float(d_acc)])
        history.append({"epoch": epoch + 1, "d_loss": sums[0] / steps, "g_loss": sums[1] / steps,
                        "d_real_accuracy": sums[2] / steps,
                        "seconds": time.perf_counter() - start})
    return TrainedGAN(generator, discriminator, g_vars, d_vars, history)


def sample_fakes(generator_variables: dict, n: int, key: jax.Array, *,
                 generator: DCGANGenerator | None = None, image_size: int = 64,
                 batch_size: int = 256) -> np.ndarray:
    """n generated images, uint8 [n, s, s, 3] (label 1 = fake), from `key`.

    `generator` defaults to `generator_for(image_size)` (what `train_gan` builds); the
    images are drawn `batch_size` at a time, so memory stays bounded.
    """
    generator = generator or generator_for(image_size)
    z = jax.random.normal(key, (n, generator.latent_dim))
    apply = jax.jit(lambda variables, z: generator.apply(variables, z, train=False))
    size = generator.image_size
    chunks = [np.zeros((0, size, size, 3), np.uint8)]
    for start in range(0, n, batch_size):
        images = apply(generator_variables, z[start:start + batch_size])
        chunks.append(np.asarray(jnp.round(jnp.clip(images, 0.0, 1.0) * 255.0)).astype(np.uint8))
    return np.concatenate(chunks)
