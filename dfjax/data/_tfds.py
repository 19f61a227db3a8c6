"""A TFDS builder base for dfjax's array datasets, used without TensorFlow.

Features are `tfds.features.Tensor` (never `Image`), the file format is
array_record, and reading goes through `builder.as_data_source()` -- the
combination that works with tensorflow-datasets alone. Each spec is prepared
into its own directory (`data_dir/<name>/<spec digest>`), so a changed spec is
rebuilt and an unchanged one is reused. TFDS writes into an `incomplete.*`
directory and renames it only at the end, so a preparation that dies halfway
never leaves a dataset that looks complete.

A prepared copy records its spec (`spec.json`, beside `preparation_report.json`). A
dataset registered with a `NestedSubset` is *nested*: its examples at a smaller
`num_examples` are exactly the first ones of a larger preparation (same split
assignment, same order, caps taken from the front); so a spec asking for fewer examples
is served by the smallest larger prepared copy that differs from it in nothing else
(`BuilderDataset.serving_copy`), with the same arrays as preparing it would give.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from dfjax.config import DatasetSpec
from dfjax.data.base import SPLITS, DatasetSplits, Split
from dfjax.registry import Entry

SPEC_FILE = "spec.json"  # a prepared copy's DatasetSpec.to_dict(), beside its data


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
        self.spec_root = Path(data_dir) / spec.name / spec.digest()
        super().__init__(data_dir=str(self.spec_root), file_format="array_record")

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

    def missing_inputs(self) -> str | None:
        """Hook, cheap (no file is read): why this dataset cannot be prepared here (the
        message for the user), or None. Generated datasets need nothing."""
        return None

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
        return self.spec_root / "preparation_report.json"

    @property
    def spec_path(self) -> Path:
        return self.spec_root / SPEC_FILE

    def prepare(self) -> None:
        """Build the dataset once; write the preparation report and the spec beside it."""
        if not self.is_prepared():
            self.download_and_prepare()
            self.report_path.write_text(json.dumps(self.report, indent=2, sort_keys=True))
        if not self.spec_path.exists():  # also for a copy prepared before specs were kept
            self.spec_path.write_text(json.dumps(self.spec.to_dict(), indent=2, sort_keys=True))

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


@dataclasses.dataclass(frozen=True)
class NestedSubset:
    """How a nested dataset caps a split at `num_examples` (see the module docstring).

    per_label: the split keeps `cap - cap // 2` reals (label 0) and `cap // 2` fakes
    (label 1), each the first ones in order (real_vs_fake_140k, image_folder); else the
    first `cap` examples whatever their label (covid19_xray). cap = round(fraction *
    num_examples) with `fractions[split]`. Taking this from a larger preparation gives
    the arrays that preparing at `num_examples` gives (tests/data/test_prepared_copies.py
    holds each nested dataset to it).
    """

    per_label: bool
    fractions: Mapping[str, float]

    def keep(self, labels: np.ndarray, split: str, num_examples: int) -> np.ndarray:
        """Indices (int [m], ascending) of a split's examples that `num_examples` keeps."""
        cap = round(self.fractions[split] * num_examples)
        if not self.per_label:
            return np.arange(min(cap, len(labels)))
        limits = {0: cap - cap // 2, 1: cap // 2}
        seen = {0: 0, 1: 0}
        kept = []
        for i, label in enumerate(labels.tolist()):
            if seen.get(label, 0) < limits.get(label, 0):
                seen[label] += 1
                kept.append(i)
        return np.array(kept, np.int64)

    def take(self, splits: DatasetSplits, num_examples: int, *, name: str) -> DatasetSplits:
        """The splits a preparation at `num_examples` holds, taken from a larger one; a
        split left empty is a ValueError naming dataset `name`, as when preparing."""
        taken = {}
        for split in SPLITS:
            s = splits.split(split)
            i = self.keep(s.labels, split, num_examples)
            if len(s) and not len(i):
                raise ValueError(f"{name}: the {split} split keeps no example at "
                                 f"num_examples={num_examples}; ask for more")
            taken[split] = s.select(i)
        return DatasetSplits(**taken, info=dict(splits.info))


@dataclasses.dataclass(frozen=True)
class PreparedCopy:
    """A complete preparation found under `<data_dir>/<name>/`: its folder and its spec
    (`DatasetSpec.to_dict()`; None for a copy prepared before specs were recorded)."""

    path: Path
    spec: dict[str, Any] | None


def prepared_copies(data_dir: Path, name: str) -> list[PreparedCopy]:
    """Every complete prepared copy of dataset `name` in `data_dir`, by folder name."""
    copies = []
    folder = Path(data_dir) / name
    for root in sorted(folder.iterdir()) if folder.is_dir() else ():
        if not root.is_dir() or not any(root.glob("*/*/dataset_info.json")):
            continue  # not a preparation, or one that did not finish
        try:
            spec = json.loads((root / SPEC_FILE).read_text())
        except (OSError, ValueError):
            spec = None
        copies.append(PreparedCopy(root, spec if isinstance(spec, dict) else None))
    return copies


def spec_differences(wanted: DatasetSpec, found: dict[str, Any] | None) -> str:
    """How a prepared copy's spec differs from `wanted`, e.g. "num_examples 10000 (wanted
    400), image_size 128 (wanted 64)"."""
    if found is None:
        return "its spec was not recorded (prepared by an older dfjax)"
    want = wanted.to_dict()
    keys = sorted(set(want) | set(found))
    return ", ".join(f"{k} {found.get(k, '(none)')!r} (wanted {want.get(k, '(none)')!r})"
                     for k in keys if want.get(k) != found.get(k)) or "no difference"


def copies_note(spec: DatasetSpec, data_dir: Path) -> str:
    """Lines for a missing-data message: the prepared copies of `spec.name` and how each
    differs from `spec` ('' when there are none)."""
    copies = prepared_copies(data_dir, spec.name)
    if not copies:
        return ""
    lines = [f"Prepared copies of {spec.name} in {Path(data_dir) / spec.name}, none of which "
             "serves this spec (one differing only by a larger num_examples would, for a "
             "dataset that can take a subset):"]
    lines += [f"  {c.path.name}: {spec_differences(spec, c.spec)}" for c in copies]
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BuilderDataset(Entry):
    """Registry entry for a dataset backed by an `ArrayBuilder` subclass; its options,
    check and description are the builder class's (`BuilderDataset.of(cls)`).
    `nested`: set for a dataset whose smaller preparations are the front of larger ones."""

    builder_cls: type[ArrayBuilder]
    derived: bool = False  # built from another dataset: the builder takes `load_source`
    nested: NestedSubset | None = None

    @classmethod
    def of(cls, builder_cls: type[ArrayBuilder], *, derived: bool = False,
           nested: NestedSubset | None = None) -> BuilderDataset:
        return cls(builder_cls=builder_cls, derived=derived, nested=nested,
                   options=dict(builder_cls.OPTIONS), check=builder_cls.check_options,
                   option_prefixes=builder_cls.OPTION_PREFIXES,
                   description=builder_cls.description)

    def builder(self, spec: DatasetSpec, *, data_dir: Path, manual_dir: Path | None = None,
                **context) -> ArrayBuilder:
        """context: what a derived dataset needs besides files (`load_source`)."""
        return self.builder_cls(spec=spec, data_dir=data_dir, manual_dir=manual_dir, **context)

    def serving_copy(self, spec: DatasetSpec, data_dir: Path) -> PreparedCopy | None:
        """The smallest prepared copy with at least `spec.num_examples` and nothing else
        different, for a nested dataset; else None."""
        if self.nested is None:
            return None
        want = spec.to_dict()
        usable = [c for c in prepared_copies(data_dir, spec.name) if c.spec is not None
                  and isinstance(c.spec.get("num_examples"), int)
                  and c.spec["num_examples"] >= spec.num_examples
                  and {**c.spec, "num_examples": spec.num_examples} == want]
        return min(usable, key=lambda c: (c.spec["num_examples"], c.path.name), default=None)

    def load(self, spec: DatasetSpec, *, data_dir: Path, manual_dir: Path | None = None,
             **context) -> DatasetSplits:
        """The prepared copy of `spec`; else a subset of a larger copy (`serving_copy`);
        else a fresh preparation."""
        builder = self.builder(spec, data_dir=data_dir, manual_dir=manual_dir, **context)
        copy = None if builder.is_prepared() else self.serving_copy(spec, data_dir)
        if copy is None:
            return builder.load_splits()
        larger = dataclasses.replace(spec, num_examples=copy.spec["num_examples"])
        splits = self.builder(larger, data_dir=data_dir, manual_dir=manual_dir,
                              **context).load_splits()
        subset = self.nested.take(splits, spec.num_examples, name=spec.name)
        subset.info["subset_of"] = {"num_examples": larger.num_examples,
                                    "data_dir": splits.info.get("data_dir")}
        return subset

    def missing_data(self, spec: DatasetSpec, *, data_dir: Path,
                     manual_dir: Path | None = None) -> str | None:
        """Cheap: why `spec` can be neither loaded nor prepared here (the message for the
        user: the command that prepares it, the layout, the copies found), or None."""
        builder = self.builder(spec, data_dir=data_dir, manual_dir=manual_dir)
        if builder.is_prepared() or self.serving_copy(spec, data_dir) is not None:
            return None
        return builder.missing_inputs()


def show_progress_bars(enabled: bool) -> None:
    """Turn tensorflow-datasets' own progress bars ("Generating splits...", "Shuffling
    ...") on or off. TFDS keeps this switch per process; the command line sets it from
    `--no-progress` on every `dfjax run` and `dfjax data prepare`."""
    tfds.display_progress_bar(enabled)
