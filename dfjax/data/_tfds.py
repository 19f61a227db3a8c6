"""A TFDS builder base for dfjax's array datasets, used without TensorFlow.

Features are `tfds.features.Tensor` (never `Image`), the file format is
array_record, and reading goes through `builder.as_data_source()` -- the
combination that works with tensorflow-datasets alone. Each spec is prepared
into its own directory (`data_dir/<name>/<spec digest>`), so a changed spec is
rebuilt and an unchanged one is reused. TFDS writes into an `incomplete.*`
directory and renames it only at the end, so a preparation that dies halfway
never leaves a dataset that looks complete.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from dfjax.config import DatasetSpec
from dfjax.data.base import SPLITS, DatasetSplits, Split
from dfjax.registry import Entry


class ArrayBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Subclasses set `num_channels`, `description`, `homepage`, their options (`OPTIONS`:
    name -> default; `check_options(options)` raises ValueError on a bad value) and
    implement `generate_split(split)`, yielding dicts with `image` (uint8 [h, w, c]),
    `label`, and optionally `group` and `frame`. `self.options` holds the spec's options
    with defaults filled in. Counts of skipped inputs go in `self.report`."""

    VERSION = tfds.core.Version("1.0.0")
    num_channels: int = 3
    description: str = ""
    homepage: str = ""
    OPTIONS: dict[str, Any] = {}
    OPTION_PREFIXES: tuple[str, ...] = ()

    @staticmethod
    def check_options(options: dict[str, Any]) -> None:
        """Hook: raise ValueError for an option value the dataset cannot use."""

    def __init__(self, *, spec: DatasetSpec, data_dir: Path, manual_dir: Path | None = None):
        self.spec = spec
        try:
            self.options = BuilderDataset.of(type(self)).resolve_options(spec.options)
        except ValueError as e:
            raise ValueError(f"dataset {spec.name!r} {e}") from None
        self.manual_path = Path(manual_dir) if manual_dir is not None else None
        self.report: dict[str, Any] = {}
        root = Path(data_dir) / spec.name / spec.digest()
        super().__init__(data_dir=str(root), file_format="array_record")

    def _info(self) -> tfds.core.DatasetInfo:
        s, c = self.spec.image_size, self.num_channels
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.description,
            homepage=self.homepage,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(s, s, c), dtype=np.uint8),
                "label": tfds.features.Tensor(shape=(), dtype=np.int32),
                "group": tfds.features.Tensor(shape=(), dtype=np.int64),
                "frame": tfds.features.Tensor(shape=(), dtype=np.int32),
                "index": tfds.features.Tensor(shape=(), dtype=np.int64),
            }),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing is downloaded
        self.before_generate()
        return {split: self._examples(split) for split in SPLITS}

    def before_generate(self) -> None:
        """Hook: check inputs (e.g. the manual dir) before any split is generated."""

    def _generate_examples(self):  # required by TFDS; splits come from _examples
        raise NotImplementedError

    def _examples(self, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
        for index, example in enumerate(self.generate_split(split)):
            yield index, {
                "image": example["image"],
                "label": np.int32(example["label"]),
                "group": np.int64(example.get("group", index)),
                "frame": np.int32(example.get("frame", 0)),
                "index": np.int64(index),
            }

    def generate_split(self, split: str) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    @property
    def report_path(self) -> Path:
        return Path(self.data_dir).parent.parent / "preparation_report.json"

    def prepare(self) -> None:
        """Build the dataset once; write the preparation report beside it."""
        if not self.is_prepared():
            self.download_and_prepare()
            self.report_path.write_text(json.dumps(self.report, indent=2, sort_keys=True))

    def is_prepared(self) -> bool:
        return (Path(self.data_dir) / "dataset_info.json").exists()

    def load_splits(self) -> DatasetSplits:
        """Read every split back in generation order (TFDS shuffles records on disk)."""
        self.prepare()
        sources = self.as_data_source()
        splits = {}
        for split in SPLITS:
            source = sources[split]
            records = source.__getitems__(list(range(len(source)))) if len(source) else []
            records.sort(key=lambda r: int(r["index"]))
            s, c = self.spec.image_size, self.num_channels
            images = (np.stack([r["image"] for r in records]) if records
                      else np.zeros((0, s, s, c), np.uint8))
            splits[split] = Split(
                images=images,
                labels=np.array([r["label"] for r in records], np.int32),
                groups=np.array([r["group"] for r in records], np.int64),
                frames=np.array([r["frame"] for r in records], np.int32),
            )
        report = json.loads(self.report_path.read_text()) if self.report_path.exists() else {}
        return DatasetSplits(**splits, info={"report": report, "data_dir": str(self.data_dir),
                                             "version": str(self.VERSION),
                                             "report_path": str(self.report_path)})


@dataclasses.dataclass(frozen=True, kw_only=True)
class BuilderDataset(Entry):
    """Registry entry for a dataset backed by an `ArrayBuilder` subclass; its options,
    check and description are the builder class's (`BuilderDataset.of(cls)`)."""

    builder_cls: type[ArrayBuilder]
    derived: bool = False  # built from another dataset: the builder takes `load_source`

    @classmethod
    def of(cls, builder_cls: type[ArrayBuilder], *, derived: bool = False) -> BuilderDataset:
        return cls(builder_cls=builder_cls, derived=derived, options=dict(builder_cls.OPTIONS),
                   check=builder_cls.check_options,
                   option_prefixes=builder_cls.OPTION_PREFIXES,
                   description=builder_cls.description)

    def builder(self, spec: DatasetSpec, *, data_dir: Path, manual_dir: Path | None = None,
                **context) -> ArrayBuilder:
        """context: what a derived dataset needs besides files (`load_source`)."""
        return self.builder_cls(spec=spec, data_dir=data_dir, manual_dir=manual_dir, **context)

    def load(self, spec: DatasetSpec, *, data_dir: Path, manual_dir: Path | None = None,
             **context) -> DatasetSplits:
        return self.builder(spec, data_dir=data_dir, manual_dir=manual_dir,
                            **context).load_splits()


def show_progress_bars(enabled: bool) -> None:
    """Turn tensorflow-datasets' own progress bars ("Generating splits...", "Shuffling
    ...") on or off. TFDS keeps this switch per process; the command line sets it from
    `--no-progress` on every `dfjax run` and `dfjax data prepare`."""
    tfds.display_progress_bar(enabled)
