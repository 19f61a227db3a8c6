"""Datasets by name: `load_dataset(spec, data_dir=...)` -> DatasetSplits;
`missing_data(spec, data_dir=...)` says, cheaply, why one can be neither loaded nor
prepared here.

Every dataset is registered here, in one place; each entry (`BuilderDataset`) declares
the options of its builder with their defaults, and whether a larger prepared copy
serves a smaller `num_examples` (`nested`, see dfjax.data._tfds).
"""

from __future__ import annotations

from pathlib import Path

from dfjax.config import DatasetSpec
from dfjax.data import covid19_xray, image_folder, real_vs_fake
from dfjax.data._tfds import BuilderDataset, NestedSubset
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
# Their caps take the first reals and fakes (or the first examples) of a fixed order:
DATASETS.register("real_vs_fake_140k", BuilderDataset.of(
    RealVsFake140kBuilder, nested=NestedSubset(True, real_vs_fake.SPLIT_FRACTIONS)))
# dfdc's caps count videos, and a video without faces is not replaced: not nested.
DATASETS.register("dfdc", BuilderDataset.of(DfdcBuilder))
DATASETS.register("covid19_xray", BuilderDataset.of(
    Covid19XrayBuilder, nested=NestedSubset(False, covid19_xray.SPLIT_FRACTIONS)))
DATASETS.register("image_folder", BuilderDataset.of(
    ImageFolderBuilder, nested=NestedSubset(True, image_folder.SPLIT_FRACTIONS)))
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


def missing_data(
    spec: DatasetSpec, *, data_dir: Path | None = None, manual_dir: Path | None = None
) -> str | None:
    """Why `spec` can be neither loaded nor prepared here -- the message naming the command
    that prepares it, the layout it expects and the prepared copies found -- or None.

    Cheap: no image is read. None when a prepared copy serves it, or when its manual folder
    (`manual_dir`, else `<data_dir>/manual/<name>`) is there to prepare from (its layout is
    checked only when preparing). Generated datasets need nothing; a derived one needs its
    source."""
    entry = DATASETS.get(spec.name)
    data_dir = data_dir or default_data_dir()
    if not entry.derived:
        return entry.missing_data(spec, data_dir=data_dir, manual_dir=manual_dir)
    builder = entry.builder(spec, data_dir=data_dir, manual_dir=manual_dir,
                            load_source=load_dataset)
    if builder.is_prepared():
        return None
    return missing_data(builder.source_spec(), data_dir=data_dir, manual_dir=manual_dir)


__all__ = ["DATASETS", "SPLITS", "DatasetSplits", "Split", "load_dataset", "missing_data",
           "BuilderDataset"]
