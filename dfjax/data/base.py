"""What every dataset gives the rest of dfjax: three splits of uint8 images and labels."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dfjax import settings
from dfjax.config import DatasetSpec

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class Split:
    """One split. images: uint8 [n, h, w, c]; labels: int32 [n], 0 = real, 1 = fake.

    groups: int64 [n] -- which source an example comes from (a video id for frames,
    an identity for synthetic faces); examples of one group never span two splits.
    frames: int32 [n] -- the frame index within its video (0 for still images).
    """

    images: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    frames: np.ndarray

    def __post_init__(self):
        n = len(self.images)
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 [n, h, w, c], got {self.images.dtype} "
                             f"{self.images.shape}")
        for name in ("labels", "groups", "frames"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {n} images")

    def __len__(self) -> int:
        return len(self.images)

    def float_images(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """float32 [m, h, w, c] in [0, 1]: the pixel contract every model and attack uses."""
        return self.images[start:stop].astype(np.float32) / 255.0

    def take(self, n: int) -> Split:
        """The first n examples."""
        return self.select(slice(0, n))

    def select(self, indices: np.ndarray | slice) -> Split:
        """The examples at `indices` (an int array or a slice), in that order."""
        return Split(self.images[indices], self.labels[indices], self.groups[indices],
                     self.frames[indices])


@dataclasses.dataclass(frozen=True)
class DatasetSplits:
    """train / validation / test plus facts about how the data was made or read."""

    train: Split
    validation: Split
    test: Split
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def split(self, name: str) -> Split:
        return getattr(self, name)


class Dataset(Protocol):
    """A registry entry in `dfjax.data.DATASETS`."""

    description: str

    def load(
        self, spec: DatasetSpec, *, data_dir: Path, manual_dir: Path | None = None
    ) -> DatasetSplits:
        """Prepare (once, cached by spec) and return the splits."""


def default_data_dir() -> Path:
    """`dfjax.settings.data_dir()`: $DFJAX_DATA_DIR, else `~/.cache/dfjax/data`."""
    return settings.data_dir()
