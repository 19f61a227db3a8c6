"""A TFDS builder base for dfjax's array datasets, used without TensorFlow.

Features are `tfds.features.Tensor` (never `Image`), the file format is
array_record, and reading goes through `builder.as_data_source()` -- the
combination that works with tensorflow-datasets alone. Each spec is prepared
into its own directory (`data_dir/<name>/<spec digest>`), so a changed spec is
rebuilt and an unchanged one is reused. TFDS writes into an `incomplete.*`
directory and renames it only at the end; dfjax then writes the spec and, last, the
preparation report, whose presence marks the copy complete (`is_prepared`). So a
preparation killed at any point leaves nothing that is taken as complete; the next one
(under `preparation_lock`, one process at a time) removes the leftovers and starts anew.

A prepared copy records its spec (`spec.json`, beside `preparation_report.json`). A
dataset registered with a `NestedSubset` is *nested*: its examples at a smaller
`num_examples` are exactly the first ones of a larger preparation (same split
assignment, same order, caps taken from the front); so a spec asking for fewer examples
is served by the smallest larger prepared copy that differs from it in nothing else
(`BuilderDataset.serving_copy`), with the same arrays as preparing it would give.

A prepared copy also records the fingerprint of the code that prepared it
(`fingerprint.json`; `dfjax.data.dataset_fingerprint`). A copy made by other code is
*stale*: `BuilderDataset.load` prepares it again where its inputs are here (moving the
stale copy aside until the new one is complete, and back if preparing fails), else uses
it and says so, loudly; either way `splits.info["dataset_cache"]` records it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from dfjax import settings
from dfjax.config import DatasetSpec
from dfjax.data.base import SPLITS, DatasetSplits, Split
from dfjax.registry import Entry

SPEC_FILE = "spec.json"  # a prepared copy's DatasetSpec.to_dict(), beside its data
FINGERPRINT_FILE = "fingerprint.json"  # {"fingerprint": code that prepared it, "prepared_at"}


def warn(message: str) -> None:
    """The default log of stale caches: stderr, prefixed, so it is never silent."""
    print(f"dfjax: {message}", file=sys.stderr)


def read_fingerprint(spec_root: Path) -> str | None:
    """The code fingerprint a prepared copy at `spec_root` records; None if none (a copy
    prepared before fingerprints were kept) or unreadable."""
    try:
        found = json.loads((Path(spec_root) / FINGERPRINT_FILE).read_text())
    except (OSError, ValueError):
        return None
    value = found.get("fingerprint") if isinstance(found, dict) else None
    return value if isinstance(value, str) else None


def write_text_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file renamed into place: a process killed
    meanwhile leaves the old file (or none), never a part of the new one."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


_HELD_LOCKS: set[Path] = set()  # the copies whose preparation_lock this process holds


@contextlib.contextmanager
def preparation_lock(spec_root: Path) -> Iterator[None]:
    """Hold the exclusive lock on preparing the copy at `spec_root` (an flock on
    `<spec_root>.lock`, which the OS releases when its process dies): two runs sharing a
    data dir prepare a dataset once, and a leftover of a killed one is safe to remove.
    Re-entrant within a process (an flock taken twice by one process would wait on itself).
    """
    spec_root = Path(spec_root).absolute()
    if spec_root in _HELD_LOCKS:
        yield
        return
    spec_root.parent.mkdir(parents=True, exist_ok=True)
    with open(spec_root.with_name(f"{spec_root.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _HELD_LOCKS.add(spec_root)
        try:
            yield
        finally:
            _HELD_LOCKS.discard(spec_root)
            fcntl.flock(lock, fcntl.LOCK_UN)



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
            settings.kill_point("data.example")
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

    def prepare(self, fingerprint: str | None = None) -> None:
        """Build the dataset once; write the preparation report and the spec beside it,
        and `fingerprint` (the code preparing it) when given."""
        if not self.is_prepared():
            with preparation_lock(self.spec_root):  # one process prepares, others wait
                if not self.is_prepared():  # (unless another finished it meanwhile)
                    self.remove_unfinished()
                    self.download_and_prepare()
                    settings.kill_point("data.prepared")
                    if fingerprint is not None:
                        write_text_atomically(self.spec_root / FINGERPRINT_FILE, json.dumps(
                            {"fingerprint": fingerprint, "prepared_at": time.time()}, indent=1))
                    write_text_atomically(self.spec_path, json.dumps(
                        self.spec.to_dict(), indent=2, sort_keys=True))
                    write_text_atomically(self.report_path,  # last: the copy is complete
                                          json.dumps(self.report, indent=2, sort_keys=True))
                else:  # this builder was made before the records existed: read their info
                    self.info.read_from_directory(self.data_dir)
        if not self.spec_path.exists():  # also for a copy prepared before specs were kept
            write_text_atomically(self.spec_path, json.dumps(self.spec.to_dict(), indent=2,
                                                             sort_keys=True))

    def is_prepared(self) -> bool:
        """Complete: TFDS renamed the records into place and the preparation report, written
        last, is there (records without it are from a preparation that was killed)."""
        return ((Path(self.data_dir) / "dataset_info.json").exists()
                and self.report_path.exists())

    def remove_unfinished(self) -> None:
        """Delete what a killed preparation of this spec left: TFDS's `incomplete.*`
        folders, records never marked complete, temporary files. Call it holding
        `preparation_lock`, so no live preparation's files go."""
        records = Path(self.data_dir)
        for path in records.parent.glob("incomplete.*"):
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(records, ignore_errors=True)
        for path in self.spec_root.glob("*.tmp*"):
            path.unlink(missing_ok=True)

    def recorded_fingerprint(self) -> str | None:
        """The code fingerprint this prepared copy records (None: none recorded)."""
        return read_fingerprint(self.spec_root)

    def load_splits(self, fingerprint: str | None = None) -> DatasetSplits:
        """Read every split back in generation order (TFDS shuffles records on disk),
        preparing it first if needed (recording `fingerprint`)."""
        self.prepare(fingerprint)
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


def staleness(recorded: str | None, current: str | None) -> str | None:
    """Why a copy recording code fingerprint `recorded` is stale for the code `current`
    (None: it is not, or `current` is None: not checked)."""
    if current is None or recorded == current:
        return None
    if recorded is None:
        return "prepared before code fingerprints were recorded"
    return f"prepared by other code (fingerprint {recorded} != {current})"


def mark_stale(splits: DatasetSplits, reason: str, log: Callable[[str], None]) -> DatasetSplits:
    """Log that `splits` come from a stale copy, and record it in `info["dataset_cache"]`."""
    log(f"warning: using a stale dataset cache {splits.info.get('data_dir')}: {reason}")
    splits.info["dataset_cache"] = f"stale ({reason})"
    return splits


@dataclasses.dataclass(frozen=True)
class PreparedCopy:
    """A complete preparation found under `<data_dir>/<name>/`: its folder and its spec
    (`DatasetSpec.to_dict()`; None for a copy prepared before specs were recorded)."""

    path: Path
    spec: dict[str, Any] | None
    fingerprint: str | None = None  # the code that prepared it (None: not recorded)


def prepared_copies(data_dir: Path, name: str) -> list[PreparedCopy]:
    """Every complete prepared copy of dataset `name` in `data_dir`, by folder name."""
    copies = []
    folder = Path(data_dir) / name
    for root in sorted(folder.iterdir()) if folder.is_dir() else ():
        if "." in root.name:  # a stale copy moved aside while it is prepared again
            continue
        if not root.is_dir() or not any(root.glob("*/*/dataset_info.json")):
            continue  # not a preparation, or one that did not finish
        try:
            spec = json.loads((root / SPEC_FILE).read_text())
        except (OSError, ValueError):
            spec = None
        copies.append(PreparedCopy(root, spec if isinstance(spec, dict) else None,
                                   read_fingerprint(root)))
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

    def serving_copy(self, spec: DatasetSpec, data_dir: Path,
                     fingerprint: str | None = None) -> PreparedCopy | None:
        """The smallest prepared copy with at least `spec.num_examples` and nothing else
        different, for a nested dataset (one prepared by the code `fingerprint`, when
        there is one and it is given); else None."""
        if self.nested is None:
            return None
        want = spec.to_dict()
        usable = [c for c in prepared_copies(data_dir, spec.name) if c.spec is not None
                  and isinstance(c.spec.get("num_examples"), int)
                  and c.spec["num_examples"] >= spec.num_examples
                  and {**c.spec, "num_examples": spec.num_examples} == want]
        return min(usable, key=lambda c: (fingerprint is not None and c.fingerprint != fingerprint,
                                          c.spec["num_examples"], c.path.name), default=None)

    def load(self, spec: DatasetSpec, *, data_dir: Path, manual_dir: Path | None = None,
             fingerprint: str | None = None, preparable: Callable[[], bool] | None = None,
             log: Callable[[str], None] = warn, **context) -> DatasetSplits:
        """The prepared copy of `spec`; else a subset of a larger copy (`serving_copy`);
        else a fresh preparation.

        fingerprint: the code that prepares `spec` now (None: copies are not checked). A
        copy recording another is stale: prepared again if `preparable()` (default: the
        builder's inputs are here), else used and logged; `info["dataset_cache"]` says so.
        """
        def build(s: DatasetSpec = spec) -> ArrayBuilder:
            return self.builder(s, data_dir=data_dir, manual_dir=manual_dir, **context)

        builder = build()
        can_prepare = preparable or (lambda: builder.missing_inputs() is None)
        if builder.is_prepared():
            reason = staleness(builder.recorded_fingerprint(), fingerprint)
            if reason is None:
                return builder.load_splits(fingerprint)
            if can_prepare():
                return self._prepare_again(builder, build, reason, fingerprint, log)
            return mark_stale(builder.load_splits(), f"{reason}; its inputs are not here to "
                              "prepare it again", log)
        copy = self.serving_copy(spec, data_dir, fingerprint)
        reason = None if copy is None else staleness(copy.fingerprint, fingerprint)
        if copy is None or (reason is not None and can_prepare()):
            return builder.load_splits(fingerprint)  # prepared afresh
        larger = dataclasses.replace(spec, num_examples=copy.spec["num_examples"])
        splits = build(larger).load_splits()
        subset = self.nested.take(splits, spec.num_examples, name=spec.name)
        subset.info["subset_of"] = {"num_examples": larger.num_examples,
                                    "data_dir": splits.info.get("data_dir")}
        if reason is not None:
            return mark_stale(subset, f"{reason}; its inputs are not here to prepare it again",
                              log)
        return subset

    @staticmethod
    def _prepare_again(builder: ArrayBuilder, build: Callable[[], ArrayBuilder], reason: str,
                       fingerprint: str | None, log: Callable[[str], None]) -> DatasetSplits:
        """Prepare a stale copy again, its old folder moved aside meanwhile: removed once the
        new copy is complete, moved back (and used, marked stale) if preparing fails."""
        root = builder.spec_root
        aside = root.with_name(f"{root.name}.stale{os.getpid()}")
        log(f"stale dataset cache {root}: {reason}; preparing it again")
        # the lock (re-entrant) is held until the new copy is complete, so another process
        # waits for it instead of finding the folder half-made
        with preparation_lock(root):
            if read_fingerprint(root) == fingerprint and build().is_prepared():
                return build().load_splits(fingerprint)  # another run prepared it again
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(root, aside)
            try:
                splits = build().load_splits(fingerprint)
            except Exception as e:  # noqa: BLE001 -- fall back to the old copy, loudly
                shutil.rmtree(root, ignore_errors=True)
                os.replace(aside, root)
                return mark_stale(build().load_splits(), f"{reason}; preparing it again "
                                  f"failed ({type(e).__name__}: {e})", log)
            shutil.rmtree(aside, ignore_errors=True)
        splits.info["dataset_cache"] = f"prepared again (the cached copy was {reason})"
        return splits

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
