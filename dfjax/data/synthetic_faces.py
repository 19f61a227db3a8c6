"""`synthetic_faces`: the embedded default dataset -- procedural faces, real and fake.

Nothing is downloaded; every image follows from `spec.seed`. A *real* is a rendered
face passed through a camera (slight blur, sensor noise, JPEG at a random quality).
A *fake* is a face from the same generator, same identity and pose distributions,
manipulated with one of the traces real detectors learn, then passed through the
very same camera -- so compression, identity, background and pose carry no label
and only the manipulation does. The manipulations (`METHODS`):

* ``swap``: another person's inner face blended in; a blending boundary, a colour
  mismatch, a softer inner face and an exposure jump (the donor face brighter by
  `swap_exposure`);
* ``upsample``: the face re-synthesised at half resolution and upsampled like a
  transposed convolution; periodic (checkerboard) spectral peaks;
* ``smooth``: the skin smoothed, its fine texture removed.

The option ``difficulty`` in (0, 1] (``spec.option("difficulty")``, default
`DEFAULT_DIFFICULTY`) scales artifact strength: higher is subtler, hence harder.

The exposure jump is the one cue that survives an Linf perturbation of 8/255 (the
others are a few grey levels; version 1.0.0 had only those, and PGD adversarial
training at 2/255 or more collapsed every detector to a constant): it gives
adversarial training something robust to learn, on a third of the fakes. The
option ``swap_exposure`` (a float in [0, 0.5], the jump's mean; default 0.3, spread
+-0.05) sets it; 0 removes it, leaving no robust cue. It does not scale with
`difficulty`.
Splits are 60/20/20 by identity: an identity's reals and the fakes made on it fall
in one split, and the identity id is each example's ``group``. Within a split,
examples are ordered identity by identity with labels alternating real, fake.

The renderer, the manipulations, the camera and the split generation
(`generate_split_arrays`) are the library dfjax/data/face_render/; this module is the
TFDS builder around it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

import tensorflow_datasets as tfds

from dfjax.config import DATA_VERSIONS, DatasetSpec
from dfjax.data._tfds import ArrayBuilder
from dfjax.data.face_render import (
    DEFAULT_DIFFICULTY,
    DEFAULT_SWAP_EXPOSURE,
    METHODS,
    artifact_strength,
    check_difficulty,
    check_image_size,
    check_swap_exposure,
    generate_split_arrays,
    split_sizes,
)


class SyntheticFacesBuilder(ArrayBuilder, skip_registration=True):
    """Procedural real and manipulated faces; options: `difficulty` in (0, 1],
    `swap_exposure` in [0, 0.5]."""

    VERSION = tfds.core.Version(DATA_VERSIONS["synthetic_faces"])

    description = ("Procedurally rendered faces; fakes carry face-swap, generator-upsampling "
                   "or skin-smoothing traces; both classes share one camera pipeline.")
    homepage = ""
    OPTIONS = {"difficulty": DEFAULT_DIFFICULTY, "swap_exposure": DEFAULT_SWAP_EXPOSURE}

    @staticmethod
    def check_options(options):
        check_difficulty(options["difficulty"])
        check_swap_exposure(options["swap_exposure"])

    def __init__(self, *, spec: DatasetSpec, data_dir: Path, manual_dir: Path | None = None):
        check_image_size(spec.image_size)
        split_sizes(spec.num_examples)
        self._arrays: dict[str, dict[str, np.ndarray]] = {}
        super().__init__(spec=spec, data_dir=data_dir, manual_dir=manual_dir)
        self.difficulty = check_difficulty(self.options["difficulty"])
        self.swap_exposure = check_swap_exposure(self.options["swap_exposure"])

    def split_arrays(self, split: str) -> dict[str, np.ndarray]:
        """One split's arrays, generated once per builder instance."""
        if split not in self._arrays:
            start = time.perf_counter()
            arrays = generate_split_arrays(
                split, num_examples=self.spec.num_examples, image_size=self.spec.image_size,
                seed=self.spec.seed, difficulty=self.difficulty,
                swap_exposure=self.swap_exposure)
            self._arrays[split] = arrays
            counts = {name: int((arrays["methods"] == code).sum())
                      for code, name in enumerate(METHODS) if code}
            self.report[split] = {
                "examples": int(len(arrays["labels"])), "real": int((arrays["labels"] == 0).sum()),
                "fake": int((arrays["labels"] == 1).sum()),
                "identities": int(len(np.unique(arrays["groups"]))), "manipulations": counts,
                "seconds": round(time.perf_counter() - start, 3)}
            self.report["difficulty"] = self.difficulty
            self.report["artifact_strength"] = artifact_strength(self.difficulty)
            self.report["swap_exposure"] = self.swap_exposure
        return self._arrays[split]

    def generate_split(self, split: str) -> Iterator[dict[str, Any]]:
        arrays = self.split_arrays(split)
        for image, label, group in zip(arrays["images"], arrays["labels"], arrays["groups"]):
            yield {"image": image, "label": int(label), "group": int(group)}

