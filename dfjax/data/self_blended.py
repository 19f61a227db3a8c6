"""`self_blended`: fakes made from real faces alone -- Self-Blended Images (SBI;
Shiohara & Yamasaki, CVPR 2022, arXiv:2204.08376).

Each real face is blended with a transformed copy of itself: the copy (the "source")
gets colour jitter (brightness, contrast, per-channel shift, hue), a frequency jitter
(blur, sharpening or down-up resampling) and a small affine shift (translation, scale);
it is pasted onto the untouched face (the "target") through a soft mask -- an ellipse
over the face region (the face box from the Haar cascade, else the centre of the crop,
standing in for SBI's landmark convex hull), elastically deformed, blurred, and scaled
by a blending ratio from {0.25, 0.5, 0.75, 1, 1, 1} as in the paper. The result holds
the generic traces of face swapping (blending boundary, colour and sharpness mismatch,
landmark misalignment) without any identity change, so a detector can be trained
with real faces only.

Options: `source` (dataset name, default `synthetic_faces`; its reals are used, its
fakes dropped) and `source.<key>=<value>` passed on as the source's options. The
source is loaded with this spec's image_size, num_examples and seed (and the same
data and manual dirs). Each real yields itself (label 0) and its self-blend (label 1),
same group, so a pair never spans two splits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dfjax.config import DatasetSpec
from dfjax.data._tfds import ArrayBuilder
from dfjax.data.base import SPLITS, DatasetSplits
from dfjax.data.faces import Box, FaceDetector

BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)


def source_transform(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour and frequency jitter. image: float32 [h, w, 3] in [0, 1] -> same."""
    out = image * rng.uniform(0.85, 1.15) + rng.uniform(-0.06, 0.06)      # contrast, brightness
    out = out + rng.uniform(-0.05, 0.05, 3).astype(np.float32)            # per-channel shift
    hsv = cv2.cvtColor(np.clip(out, 0, 1).astype(np.float32), cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-8, 8)) % 360.0               # hue, degrees
    out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    kind = rng.integers(3)
    if kind == 0:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.3))
    elif kind == 1:
        blurred = cv2.GaussianBlur(out, (0, 0), 1.0)
        out = out + rng.uniform(0.3, 1.0) * (out - blurred)
    else:
        h, w = out.shape[:2]
        f = rng.uniform(0.45, 0.8)
        small = cv2.resize(out, (max(4, round(w * f)), max(4, round(h * f))),
                           interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def affine_shift(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A small random translation (<= 3% of the side) and scale (0.95-1.05)."""
    h, w = image.shape[:2]
    scale = rng.uniform(0.95, 1.05)
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, scale)
    matrix[:, 2] += rng.uniform(-0.03, 0.03, 2) * (w, h)
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


def default_face_box(size: int) -> Box:
    """Where a face sits in a face crop when the detector finds none."""
    return Box(0.22 * size, 0.2 * size, 0.56 * size, 0.62 * size)


def blend_mask(height: int, width: int, box: Box, rng: np.random.Generator) -> np.ndarray:
    """Soft mask float32 [h, w] in [0, 1]: a jittered ellipse over the box, elastically
    deformed and blurred, times a blending ratio from BLEND_RATIOS."""
    cx, cy = box.center
    axes = (max(2, int(box.w * 0.5 * rng.uniform(0.8, 1.05))),
            max(2, int(box.h * 0.5 * rng.uniform(0.8, 1.05))))
    mask = np.zeros((height, width), np.float32)
    cv2.ellipse(mask, (int(cx), int(cy + 0.05 * box.h)), axes, rng.uniform(-10, 10), 0, 360,
                1.0, -1)
    coarse = rng.uniform(-1, 1, (2, 4, 4)).astype(np.float32) * 0.04 * max(height, width)
    dx, dy = (cv2.resize(c, (width, height), interpolation=cv2.INTER_CUBIC) for c in coarse)
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32),
                                 np.arange(height, dtype=np.float32))
    mask = cv2.remap(mask, grid_x + dx, grid_y + dy, cv2.INTER_LINEAR)
    sigma = rng.uniform(0.02, 0.08) * max(height, width)
    mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    mask /= max(float(mask.max()), 1e-6)
    return mask * np.float32(rng.choice(BLEND_RATIOS))


def self_blend(image: np.ndarray, rng: np.random.Generator, *, box: Box | None = None
               ) -> np.ndarray:
    """A self-blended fake of one real face. image: uint8 [h, w, 3] -> uint8 [h, w, 3]."""
    h, w = image.shape[:2]
    target = image.astype(np.float32) / 255.0
    source = affine_shift(source_transform(target, rng), rng)
    mask = blend_mask(h, w, box or default_face_box(min(h, w)), rng)[..., None]
    out = target + mask * (source - target)
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


class SelfBlendedBuilder(ArrayBuilder, skip_registration=True):
    """Reals of a source dataset plus their self-blended fakes (SBI)."""

    description = ("Self-Blended Images (Shiohara & Yamasaki 2022): fakes made by blending "
                   "each real face with a colour/frequency-jittered, shifted copy of itself.")
    homepage = "https://arxiv.org/abs/2204.08376"
    OPTIONS = {"source": "synthetic_faces"}
    OPTION_PREFIXES = ("source.",)

    @staticmethod
    def check_options(options):
        if options["source"] == "self_blended":
            raise ValueError("cannot use itself as its source")

    def __init__(self, *, spec: DatasetSpec, data_dir: Path, manual_dir: Path | None = None,
                 load_source: Callable[..., DatasetSplits]):
        """load_source(spec, data_dir=, manual_dir=) -> DatasetSplits: how the source
        dataset is loaded (dfjax.data.load_dataset)."""
        self.root_data_dir, self.source_manual_dir = Path(data_dir), manual_dir
        self.load_source = load_source
        self._source: DatasetSplits | None = None
        super().__init__(spec=spec, data_dir=data_dir, manual_dir=manual_dir)

    def source_spec(self) -> DatasetSpec:
        name = str(self.options["source"])
        options = {k.split(".", 1)[1]: v for k, v in self.spec.options if k.startswith("source.")}
        return DatasetSpec(name=name, image_size=self.spec.image_size,
                           num_examples=self.spec.num_examples, seed=self.spec.seed,
                           options=options)

    def before_generate(self) -> None:
        spec = self.source_spec()
        self._source = self.load_source(spec, data_dir=self.root_data_dir,
                                        manual_dir=self.source_manual_dir)
        self.report["source"] = spec.to_dict()

    def generate_split(self, split: str) -> Iterator[dict[str, Any]]:
        start = time.perf_counter()
        data = self._source.split(split)
        reals = np.flatnonzero(data.labels == 0)
        size = self.spec.image_size
        detector = FaceDetector(min_face_fraction=0.3)
        detected = 0
        streams = np.random.SeedSequence([self.spec.seed, SPLITS.index(split), 5]).spawn(
            max(1, len(reals)))
        for i, index in enumerate(reals):
            image, group = data.images[index], int(data.groups[index])
            box = detector.detect(image) if size >= 48 else None
            detected += box is not None
            fake = self_blend(image, np.random.default_rng(streams[i]), box=box)
            yield {"image": image, "label": 0, "group": group, "frame": int(data.frames[index])}
            yield {"image": fake, "label": 1, "group": group, "frame": int(data.frames[index])}
        self.report[split] = {
            "reals": int(len(reals)), "source_fakes_dropped": int((data.labels != 0).sum()),
            "examples": 2 * int(len(reals)), "face_box_detected": detected,
            "face_box_default": int(len(reals)) - detected,
            "seconds": round(time.perf_counter() - start, 3)}

