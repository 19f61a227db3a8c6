import jax
import numpy as np

from dfjax.models.gan import DCGANDiscriminator, generator_for
from dfjax.training.gan_training import sample_fakes, train_gan


def _reals(n=32, size=32):
    rng = np.random.default_rng(0)
    return rng.integers(60, 200, (n, size, size, 3)).astype(np.uint8)


def test_gan_trains_records_losses_and_is_deterministic():
    kw = {"key": jax.random.key(0), "epochs": 2, "batch_size": 8, "steps_per_epoch": 2,
          "generator": generator_for(32, width=4, latent_dim=8),
          "discriminator": DCGANDiscriminator(num_logits=1, features=(8, 16))}
    a = train_gan(_reals(), **kw)
    b = train_gan(_reals(), **kw)
    assert [h["epoch"] for h in a.history] == [1, 2]
    for h in a.history:
        assert np.isfinite(h["d_loss"]) and np.isfinite(h["g_loss"]) and h["d_loss"] > 0
    assert [(h["d_loss"], h["g_loss"]) for h in a.history] == \
        [(h["d_loss"], h["g_loss"]) for h in b.history]
    fakes = sample_fakes(a.generator_variables, 5, jax.random.key(1), generator=a.generator)
    again = sample_fakes(b.generator_variables, 5, jax.random.key(1), generator=b.generator)
    assert fakes.shape == (5, 32, 32, 3) and fakes.dtype == np.uint8
    np.testing.assert_array_equal(fakes, again)
    assert fakes.std() > 0  # not a constant image
