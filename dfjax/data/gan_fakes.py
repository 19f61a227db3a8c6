"""`gan_fakes`: real faces against the samples of a DCGAN trained on them -- the paper's
GAN-made fakes (Dhese et al., Sec. III and Fig. 4).

Preparing the dataset loads the real faces (option `real`, a dataset name, default
`synthetic_faces`; its reals are kept, its fakes dropped; `real.<key>=<value>` options are
passed on to it, which is loaded with this spec's image_size, num_examples and seed),
trains a DCGAN (dfjax.training.gan_training) on the reals of the *train* split only, at
the same resolution, and pairs every real of every split with one generated image: each
split holds its reals (label 0) and as many fakes (label 1), alternating real, fake. The
validation and test reals were never shown to the GAN.

Everything follows from `spec.seed`: the GAN's initialisation, batches and the latent
codes of each split's fakes. Options: `gan_epochs` (default 5), `gan_batch_size` (default
32; at most the number of train reals), `gan_width` (default 32: the generator's last
hidden layer and the discriminator's first have this many channels, doubling inward).
The image side must be 4 * 2**k (8, 16, 32, 64, 128, ...): the generator doubles a 4x4
map.

The GAN's per-epoch history (d_loss, g_loss, d_real_accuracy, seconds) is written to the
preparation report (`report["gan"]["history"]`), so `splits.info["report"]` carries it to
every cell trained on the dataset (dfjax.runner.environment.provenance stores it with
each row; the report draws Fig. 4 from there).

Cost on a 2-core CPU (Zen 3), defaults, 64 px: see the README's "The paper end to end".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
import tensorflow_datasets as tfds

from dfjax.config import DATA_VERSIONS, DatasetSpec
from dfjax.data._tfds import ArrayBuilder
from dfjax.data.base import SPLITS, DatasetSplits
from dfjax.models.gan import discriminator_for, generator_for
from dfjax.training.gan_training import sample_fakes, train_gan

NAME = "gan_fakes"


def _positive_int(options: dict[str, Any], name: str) -> None:
    value = options[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"option {name} must be an integer >= 1, got {value!r}")


def check_image_size(image_size: int) -> int:
    """`image_size` if the generator can make it (4 * 2**k, k >= 1), else ValueError."""
    size = int(image_size)
    if size < 8 or size & (size - 1):
        raise ValueError(f"{NAME}: image_size must be 4 * 2**k (8, 16, 32, 64, 128, ...): the "
                         f"DCGAN generator doubles a 4x4 map; got {image_size}")
    return size


class GanFakesBuilder(ArrayBuilder, skip_registration=True):
    """Reals of a source dataset and samples of a DCGAN trained on its train reals."""

    VERSION = tfds.core.Version(DATA_VERSIONS[NAME])
    description = ("Real faces against samples of a DCGAN trained on them (the paper's "
                   "GAN-made fakes); the GAN's D and G losses per epoch are kept (Fig. 4).")
    homepage = "https://arxiv.org/abs/1511.06434"
    OPTIONS = {"real": "synthetic_faces", "gan_epochs": 5, "gan_batch_size": 32,
               "gan_width": 32}
    OPTION_PREFIXES = ("real.",)

    @staticmethod
    def check_options(options):
        if options["real"] == NAME:
            raise ValueError("cannot use itself as its source of real faces")
        if not isinstance(options["real"], str):
            raise ValueError(f"option real must be a dataset name, got {options['real']!r}")
        for name in ("gan_epochs", "gan_batch_size", "gan_width"):
            _positive_int(options, name)

    def __init__(self, *, spec: DatasetSpec, data_dir: Path, manual_dir: Path | None = None,
                 load_source: Callable[..., DatasetSplits]):
        """load_source(spec, data_dir=, manual_dir=) -> DatasetSplits: how the dataset of
        real faces is loaded (dfjax.data.load_dataset)."""
        check_image_size(spec.image_size)
        self.root_data_dir, self.source_manual_dir = Path(data_dir), manual_dir
        self.load_source = load_source
        self._source: DatasetSplits | None = None
        self._generator = None
        self._generator_variables: dict | None = None
        super().__init__(spec=spec, data_dir=data_dir, manual_dir=manual_dir)

    def source_spec(self) -> DatasetSpec:
        """The spec of the dataset whose reals are used (and imitated)."""
        options = {k.split(".", 1)[1]: v for k, v in self.spec.options if k.startswith("real.")}
        return DatasetSpec(name=str(self.options["real"]), image_size=self.spec.image_size,
                           num_examples=self.spec.num_examples, seed=self.spec.seed,
                           options=options)

    def _key(self, purpose: int) -> jax.Array:
        return jax.random.fold_in(jax.random.key(self.spec.seed), purpose)

    def before_generate(self) -> None:
        spec = self.source_spec()
        self._source = self.load_source(spec, data_dir=self.root_data_dir,
                                        manual_dir=self.source_manual_dir)
        self.report["source"] = spec.to_dict()
        train = self._source.train
        reals = train.images[train.labels == 0]
        if reals.ndim != 4 or reals.shape[-1] != 3:
            raise ValueError(f"{NAME}: the GAN makes RGB images; {spec.name} has images of "
                             f"shape {train.images.shape[1:]}")
        batch_size = min(int(self.options["gan_batch_size"]), len(reals))
        if batch_size < 2:
            raise ValueError(f"{NAME}: {spec.name} has {len(reals)} real training images at "
                             f"num_examples={spec.num_examples}; the GAN needs at least 2")
        width = int(self.options["gan_width"])
        generator = generator_for(self.spec.image_size, width=width)
        # as many stride-2 convs down as the generator has up-samplings
        discriminator = discriminator_for(width=width, layers=len(generator.features))
        start = time.perf_counter()
        gan = train_gan(reals, key=self._key(0), epochs=int(self.options["gan_epochs"]),
                        batch_size=batch_size, generator=generator, discriminator=discriminator)
        self._generator, self._generator_variables = gan.generator, gan.generator_variables
        self.report["gan"] = {
            "history": [{k: int(v) if k == "epoch" else float(v) for k, v in h.items()}
                        for h in gan.history],
            "train_reals": len(reals), "batch_size": batch_size,
            "generator_features": list(generator.features),
            "discriminator_features": list(discriminator.features),
            "seconds": round(time.perf_counter() - start, 3)}

    def generate_split(self, split: str) -> Iterator[dict[str, Any]]:
        start = time.perf_counter()
        data = self._source.split(split)
        reals = np.flatnonzero(data.labels == 0)
        fakes = sample_fakes(self._generator_variables, len(reals),
                             self._key(1 + SPLITS.index(split)), generator=self._generator)
        # a fake is its own group, numbered after every group of the source, and each
        # split's fakes after the previous split's
        splits = [self._source.split(s) for s in SPLITS]
        first_fake_group = 1 + max(int(s.groups.max(initial=0)) for s in splits)
        first_fake_group += SPLITS.index(split) * sum(len(s) for s in splits)
        for i, index in enumerate(reals):
            yield {"image": data.images[index], "label": 0, "group": int(data.groups[index]),
                   "frame": int(data.frames[index])}
            yield {"image": fakes[i], "label": 1, "group": first_fake_group + i}
        self.report[split] = {
            "reals": len(reals), "fakes": len(reals),
            "source_fakes_dropped": int((data.labels != 0).sum()),
            "seconds": round(time.perf_counter() - start, 3)}
