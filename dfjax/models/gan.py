"""DCGAN (Radford et al. 2016, "Unsupervised Representation Learning with Deep
Convolutional GANs", arXiv:1511.06434): the paper's GAN; its discriminator doubles
as a detector (`gan_disc`)."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from dfjax.models._common import Normalize
from dfjax.models._fast_blocks import BatchNormAffine, StridedConvBN
from dfjax.types import Images, Logits


def _bn(train: bool) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9)


class DCGANGenerator(nn.Module):
    """z float32 [b, latent_dim] -> images float32 [b, s, s, 3] in [0, 1].

    Dense to 4x4x`features[0]`, then stride-2 4x4 transposed convs (BN + ReLU) through
    `features[1:]`, and a last transposed conv to 3 channels with tanh, mapped to
    [0, 1]. The image side is s = 4 * 2**len(features).
    """

    latent_dim: int = 100
    features: tuple[int, ...] = (256, 128, 64, 32)

    @property
    def image_size(self) -> int:
        return 4 * 2 ** len(self.features)

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = False) -> Images:
        x = nn.Dense(4 * 4 * self.features[0], use_bias=False)(z)
        x = nn.relu(_bn(train)(x.reshape(z.shape[0], 4, 4, self.features[0])))
        for features in self.features[1:]:
            x = nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME",
                                 use_bias=False)(x)
            x = nn.relu(_bn(train)(x))
        x = nn.ConvTranspose(3, (4, 4), strides=(2, 2), padding="SAME")(x)
        return (jnp.tanh(x) + 1.0) / 2.0


def generator_for(image_size: int, *, width: int = 32, latent_dim: int = 100) -> DCGANGenerator:
    """A DCGANGenerator producing image_size x image_size (a power of 2, >= 8) images;
    the last hidden layer has `width` channels, doubling towards the 4x4 input."""
    layers = int(math.log2(image_size // 4))
    if 4 * 2**layers != image_size:
        raise ValueError(f"image_size must be 4 * 2**k, got {image_size}")
    features = tuple(width * 2 ** (layers - 1 - i) for i in range(layers))
    return DCGANGenerator(latent_dim=latent_dim, features=features)


class DCGANDiscriminator(nn.Module):
    """x float32 [b, h, w, 3] in [0, 1] -> logits [b, num_logits].

    Stride-2 4x4 convs through `features` with LeakyReLU(0.2), BatchNorm on all but
    the first, then a dense classifier (DCGAN's discriminator; used as a detector it
    is trained on labelled real/fake, in the GAN it scores real vs generated).

    fast=True (default) computes each conv in eval mode (attacks) with
    models/_fast_blocks.StridedConvBN: in space-to-depth form (a stride-1 conv whose
    input gradient XLA:CPU runs far faster than a strided conv's), with the eval-mode
    BatchNorm folded into its kernel and bias; h and w must then be divisible by
    2**len(features) (else the plain layers run). Training (train=True, batch
    statistics) and fast=False use the plain nn.Conv / BatchNorm layers; the parameters
    are the same.
    """

    num_logits: int = 2
    features: tuple[int, ...] = (64, 128, 256, 512)
    fast: bool = True

    @nn.compact
    def __call__(self, x: Images, train: bool = False) -> Logits:
        x = Normalize()(x)
        divisor = 2 ** len(self.features)
        fast = (self.fast and not train and x.shape[1] % divisor == 0
                and x.shape[2] % divisor == 0)
        for i, features in enumerate(self.features):
            conv_name, norm_name = f"Conv_{i}", f"BatchNorm_{i - 1}"
            if fast:
                affine = BatchNormAffine(name=norm_name)(features) if i > 0 else None
                x = StridedConvBN(features, 4, use_bias=i == 0, name=conv_name)(x, affine)
            else:
                x = nn.Conv(features, (4, 4), strides=(2, 2), padding="SAME",
                            use_bias=i == 0, name=conv_name)(x)
                if i > 0:
                    x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                                     name=norm_name)(x)
            x = nn.leaky_relu(x, 0.2)
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(self.num_logits, name="Dense_0")(x)


def discriminator_for(*, width: int = 64, layers: int = 4,
                      num_logits: int = 1) -> DCGANDiscriminator:
    """A DCGANDiscriminator of `layers` stride-2 convs, `width` channels first, doubling
    each layer (DCGAN's 64-128-256-512 at the defaults); one logit: the GAN's D."""
    if width < 1 or layers < 1:
        raise ValueError(f"discriminator width and layers must be >= 1, got {width}, {layers}")
    return DCGANDiscriminator(num_logits=num_logits,
                              features=tuple(width * 2**i for i in range(layers)))
