"""Datasets by name: `DATASETS.get(name).load(spec, data_dir=...)` -> DatasetSplits."""

from __future__ import annotations

from pathlib import Path

from dfjax.config import DatasetSpec
from dfjax.data.base import SPLITS, DatasetSplits, Split, default_data_dir
from dfjax.registry import Registry

DATASETS: Registry = Registry("dataset")


class BuilderDataset:
    """Registry entry for a dataset backed by an `ArrayBuilder` subclass."""

    def __init__(self, builder_cls):
        self.builder_cls = builder_cls
        self.description = builder_cls.description

    def builder(self, spec: DatasetSpec, *, data_dir: Path, manual_dir: Path | None = None):
        return self.builder_cls(spec=spec, data_dir=data_dir, manual_dir=manual_dir)

    def load(
        self, spec: DatasetSpec, *, data_dir: Path, manual_dir: Path | None = None
    ) -> DatasetSplits:
        return self.builder(spec, data_dir=data_dir, manual_dir=manual_dir).load_splits()


def load_dataset(
    spec: DatasetSpec, *, data_dir: Path | None = None, manual_dir: Path | None = None
) -> DatasetSplits:
    """Prepare (once) and load the dataset a spec names."""
    entry = DATASETS.get(spec.name)
    return entry.load(spec, data_dir=data_dir or default_data_dir(), manual_dir=manual_dir)


# Registration: each dataset module registers itself on import.
from dfjax.data import synthetic_faces  # noqa: E402,F401
from dfjax.data import real_vs_fake  # noqa: E402,F401
from dfjax.data import dfdc  # noqa: E402,F401
from dfjax.data import covid19_xray  # noqa: E402,F401
from dfjax.data import image_folder  # noqa: E402,F401
from dfjax.data import synthetic_videos  # noqa: E402,F401
from dfjax.data import self_blended  # noqa: E402,F401

__all__ = ["DATASETS", "SPLITS", "DatasetSplits", "Split", "load_dataset", "BuilderDataset"]
