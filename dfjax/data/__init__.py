"""Datasets by name: `load_dataset(spec, data_dir=...)` -> DatasetSplits.

Every dataset is registered here, in one place; each entry (`BuilderDataset`) declares
the options of its builder with their defaults.
"""

from __future__ import annotations

from pathlib import Path

from dfjax.config import DatasetSpec
from dfjax.data._tfds import BuilderDataset
from dfjax.data.base import SPLITS, DatasetSplits, Split, default_data_dir
from dfjax.data.covid19_xray import Covid19XrayBuilder
from dfjax.data.dfdc import DfdcBuilder
from dfjax.data.image_folder import ImageFolderBuilder
from dfjax.data.real_vs_fake import RealVsFake140kBuilder
from dfjax.data.self_blended import SelfBlendedBuilder
from dfjax.data.synthetic_faces import SyntheticFacesBuilder
from dfjax.data.synthetic_videos import SyntheticVideosBuilder
from dfjax.registry import Registry

DATASETS: Registry[BuilderDataset] = Registry("dataset")
DATASETS.register("synthetic_faces", BuilderDataset.of(SyntheticFacesBuilder))
DATASETS.register("synthetic_videos", BuilderDataset.of(SyntheticVideosBuilder))
DATASETS.register("real_vs_fake_140k", BuilderDataset.of(RealVsFake140kBuilder))
DATASETS.register("dfdc", BuilderDataset.of(DfdcBuilder))
DATASETS.register("covid19_xray", BuilderDataset.of(Covid19XrayBuilder))
DATASETS.register("image_folder", BuilderDataset.of(ImageFolderBuilder))
DATASETS.register("self_blended", BuilderDataset.of(SelfBlendedBuilder, derived=True))


def load_dataset(
    spec: DatasetSpec, *, data_dir: Path | None = None, manual_dir: Path | None = None
) -> DatasetSplits:
    """Prepare (once) and load the dataset a spec names; a derived dataset loads its
    source through this same function."""
    entry = DATASETS.get(spec.name)
    context = {"load_source": load_dataset} if entry.derived else {}
    return entry.load(spec, data_dir=data_dir or default_data_dir(), manual_dir=manual_dir,
                      **context)


__all__ = ["DATASETS", "SPLITS", "DatasetSplits", "Split", "load_dataset", "BuilderDataset"]
