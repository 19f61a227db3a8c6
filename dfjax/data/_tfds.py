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

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from dfjax.config import DatasetSpec
from dfjax.data.base import SPLITS, DatasetSplits, Split


class ArrayBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Subclasses set `num_channels`, `description`, `homepage` and implement
    `generate_split(split)`, yielding dicts with `image` (uint8 [h, w, c]), `label`,
    and optionally `group` and `frame`. Counts of skipped inputs go in `self.report`."""

    VERSION = tfds.core.Version("1.0.0")
    num_channels: int = 3
    description: str = ""
    homepage: str = ""

    def __init__(self, *, spec: DatasetSpec, data_dir: Path, manual_dir: Path | None = None):
        self.spec = spec
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
                                             "report_path": str(self.report_path)})
