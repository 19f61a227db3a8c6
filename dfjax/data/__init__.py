"""Datasets by name: `load_dataset(spec, data_dir=...)` -> DatasetSplits;
`missing_data(spec, data_dir=...)` says, cheaply, why one can be neither loaded nor
prepared here; `dataset_fingerprint(spec)` names the code that prepares it (a prepared
copy made by other code is prepared again, or used and reported stale: dfjax.data._tfds).

Every dataset is registered here, in one place; each entry (`BuilderDataset`) declares
the options of its builder with their defaults, and whether a larger prepared copy
serves a smaller `num_examples` (`nested`, see dfjax.data._tfds).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from dfjax.config import DatasetSpec
from dfjax.data import covid19_xray, image_folder, real_vs_fake
from dfjax.data._tfds import BuilderDataset, NestedSubset, warn
from dfjax.data.base import SPLITS, DatasetSplits, Split, default_data_dir
from dfjax.data.covid19_xray import Covid19XrayBuilder
from dfjax.data.dfdc import DfdcBuilder
from dfjax.data.gan_fakes import GanFakesBuilder
from dfjax.data.image_folder import ImageFolderBuilder
from dfjax.data.real_vs_fake import RealVsFake140kBuilder
from dfjax.data.self_blended import SelfBlendedBuilder
from dfjax.data.synthetic_faces import SyntheticFacesBuilder
from dfjax.data.synthetic_videos import SyntheticVideosBuilder
from dfjax.fingerprint import cached, code_fingerprint, combine
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
DATASETS.register("gan_fakes", BuilderDataset.of(GanFakesBuilder, derived=True))


def dataset_fingerprint(
    spec: DatasetSpec, *, data_dir: Path | None = None, manual_dir: Path | None = None
) -> str:
    """The fingerprint of the code that prepares `spec` (dfjax.fingerprint): its builder's
    module and every dfjax module that imports; a derived dataset's includes its source's.
    (The data version is part of the spec already: `DatasetSpec.to_dict`.)"""
    return _dataset_fingerprint(spec, Path(data_dir or default_data_dir()), manual_dir)


@cached
def _dataset_fingerprint(spec: DatasetSpec, data_dir: Path, manual_dir: Path | None) -> str:
    entry = DATASETS.get(spec.name)
    code = code_fingerprint([entry.builder_cls.__module__])
    if not entry.derived:
        return code
    builder = entry.builder(spec, data_dir=data_dir, manual_dir=manual_dir,
                            load_source=load_dataset)
    return combine(code, _dataset_fingerprint(builder.source_spec(), data_dir, manual_dir))


def load_dataset(
    spec: DatasetSpec, *, data_dir: Path | None = None, manual_dir: Path | None = None,
    log: Callable[[str], None] = warn,
) -> DatasetSplits:
    """Prepare (once) and load the dataset a spec names; a derived dataset loads its
    source through this same function. A prepared copy made by other code is prepared
    again where its inputs are here, else used; either way `log` says so and
    `splits.info["dataset_cache"]` records it."""
    entry = DATASETS.get(spec.name)
    data_dir = data_dir or default_data_dir()
    # a derived dataset's source is loaded (and its staleness logged) the same way
    context = {"load_source": functools.partial(load_dataset, log=log)} if entry.derived else {}
    preparable = None
    if entry.derived:  # its source must be here or preparable
        def preparable() -> bool:
            builder = entry.builder(spec, data_dir=data_dir, manual_dir=manual_dir, **context)
            return missing_data(builder.source_spec(), data_dir=data_dir,
                                manual_dir=manual_dir) is None
    fingerprint = dataset_fingerprint(spec, data_dir=data_dir, manual_dir=manual_dir)
    return entry.load(spec, data_dir=data_dir, manual_dir=manual_dir, fingerprint=fingerprint,
                      preparable=preparable, log=log, **context)


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
           "dataset_fingerprint", "BuilderDataset"]
