"""`real_vs_fake_140k`: Kaggle's "140k Real and Fake Faces" (xhlulu): 70k real faces
from Flickr-Faces-HQ and 70k StyleGAN faces, 256x256 JPEGs, the set the paper's CNN
and ResNet50 are trained on.

Layout (`--manual-dir DIR`, the unpacked Kaggle archive):

    DIR/train.csv, DIR/valid.csv, DIR/test.csv
    DIR/real_vs_fake/real-vs-fake/{train,valid,test}/{real,fake}/*.jpg

The CSVs' columns are an unnamed index, original_path, id, label, label_str, path,
where **label 1 = real, 0 = fake** and `path` is relative to
`real_vs_fake/real-vs-fake/`. dfjax's labels are the other way round (0 = real,
1 = fake); `kaggle_label_to_dfjax` maps them, and a row whose `label_str` disagrees
with its `label` is skipped as "label_conflict". A split without its CSV is read
from its folders. The given split is kept (train/valid/test -> train/validation/test,
100k/20k/20k). `spec.num_examples` caps the total: each split takes 60/20/20 of it,
half real and half fake, in a seeded-hash order of the paths (deterministic);
unreadable files are skipped and replaced by the next file of the same class.
A CSV row naming a path outside `real_vs_fake/real-vs-fake/` (absolute, `..`, or a
symlink leading out) is skipped and never read; so are duplicate rows, and an image
listed in two splits is dropped from both (see `read_split_csv`).
Each image is its own group (a stable hash of its path).
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dfjax.data._images import (
    SkipLog,
    contained_path,
    list_images,
    read_examples,
    stable_id,
    stable_unit,
)
from dfjax.data._manual import DataFileError, ManualBuilder, has_undecodable_bytes, read_label_text

IMAGE_ROOT = Path("real_vs_fake") / "real-vs-fake"
SPLIT_FOLDERS = {"train": "train", "validation": "valid", "test": "test"}
SPLIT_FRACTIONS = {"train": 0.6, "validation": 0.2, "test": 0.2}
LAYOUT = """\
  DIR/
    train.csv  valid.csv  test.csv     (,original_path,id,label,label_str,path; label 1 = real)
    real_vs_fake/real-vs-fake/
      train/real/*.jpg  train/fake/*.jpg
      valid/real/*.jpg  valid/fake/*.jpg
      test/real/*.jpg   test/fake/*.jpg"""


def kaggle_label_to_dfjax(label: int | str) -> int:
    """The Kaggle CSV's label (1 = real, 0 = fake) -> dfjax's (0 = real, 1 = fake).

    Raises ValueError for anything but 0 or 1 ("1", "1.0" and 1 are the same label).
    """
    try:
        value = float(label)
    except (TypeError, ValueError):
        raise ValueError(f"label must be 0 or 1, got {label!r}") from None
    if value not in (0.0, 1.0):
        raise ValueError(f"label must be 0 or 1, got {label!r}")
    return 1 - int(value)


def read_split_csv(csv_path: Path, image_root: Path, skips: SkipLog
                   ) -> list[tuple[Path, int]]:
    """(image_root / path, dfjax label) per usable row, in file order.

    A row is skipped and logged (as "file.csv:LINE") for: a label other than 0/1
    ("bad_label"), a `label_str` that disagrees ("label_conflict"), bytes that are not
    UTF-8 ("bad_encoding"), an empty path ("bad_path"), a path that is absolute or
    resolves outside `image_root`, through `..` or a symlink ("outside_root"; never
    read), or a path listed before ("duplicate_row"; with a different label, every row
    of that path is dropped as "label_conflict"). Raises DataFileError for a file that
    is not a readable CSV with the columns `label` and `path`.
    """
    reader = csv.DictReader(io.StringIO(read_label_text(csv_path), newline=""))
    try:
        header = reader.fieldnames
    except csv.Error as e:
        raise DataFileError(csv_path, f"is not a readable CSV ({e})") from None
    missing = {"label", "path"} - set(header or ())
    if missing:
        raise DataFileError(csv_path, f"lacks the column(s) {sorted(missing)}; its header is "
                                      f"{header}")
    base = image_root.resolve()
    first: dict[Path, tuple[int, str]] = {}  # relative path -> (label, where first listed)
    conflicting: set[Path] = set()
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataFileError(csv_path, f"line {reader.line_num} is not valid CSV ({e})"
                                ) from None
        where = f"{csv_path.name}:{reader.line_num}"
        cells = [row.get(k) for k in ("label", "label_str", "path")]
        if any(isinstance(c, str) and has_undecodable_bytes(c) for c in cells):
            skips.skip("bad_encoding", where)
            continue
        try:
            label = kaggle_label_to_dfjax(row["label"])
        except ValueError:
            skips.skip("bad_label", where)
            continue
        text = row.get("label_str")
        text = text.strip().lower() if isinstance(text, str) else ""
        if text and text != ("fake" if label else "real"):
            skips.skip("label_conflict", where)
            continue
        resolved, reason = contained_path(base, row["path"])
        if resolved is None:
            skips.skip(reason, f"{where} {row['path']!r}")
            continue
        relative = resolved.relative_to(base)
        if relative in first:
            same = first[relative][0] == label
            if not same:
                conflicting.add(relative)
            skips.skip("duplicate_row" if same else "label_conflict",
                       f"{where} (as {first[relative][1]})")
            continue
        first[relative] = (label, where)
    for relative in sorted(conflicting):
        skips.skip("label_conflict", first.pop(relative)[1])
    return [(image_root / relative, label) for relative, (label, _) in first.items()]


class RealVsFake140kBuilder(ManualBuilder, skip_registration=True):
    """The 140k Real and Fake Faces, given split, resized with INTER_AREA."""

    description = ("140k Real and Fake Faces (Kaggle, xhlulu): FFHQ reals and StyleGAN "
                   "fakes, 256x256; given train/valid/test split.")
    homepage = "https://www.kaggle.com/datasets/xhlulu/140k-real-and-fake-faces"
    layout = LAYOUT

    def check_layout(self) -> None:
        root = self.manual_path
        self.image_root = root / IMAGE_ROOT
        if not self.image_root.is_dir():
            inner = [p.name for p in sorted(root.iterdir())][:10]
            raise self.missing(f"{IMAGE_ROOT} is not in the manual download folder (it "
                               f"holds {inner})")
        absent = [folder for folder in SPLIT_FOLDERS.values()
                  if not (root / f"{folder}.csv").is_file()
                  and not (self.image_root / folder).is_dir()]
        if absent:
            raise self.missing(f"neither the CSV nor the folder of the split(s) {absent} exists")
        self.listed = self.list_splits()

    def list_splits(self) -> dict[str, tuple[list[tuple[Path, int]], str, SkipLog]]:
        """split -> (items, source, skips) for every split; an image listed in two splits
        is dropped from both (logged as "in_two_splits"), so no image leaks across them."""
        listed = {}
        for split in SPLIT_FOLDERS:
            skips = SkipLog()
            listed[split] = (*self.items(split, skips), skips)
        splits_of: dict[Path, set[str]] = {}
        for split, (items, _, _) in listed.items():
            for path, _ in items:
                splits_of.setdefault(path, set()).add(split)
        shared = {path for path, splits in splits_of.items() if len(splits) > 1}
        for items, _, skips in listed.values():
            for path in sorted(p for p, _ in items if p in shared):
                skips.skip("in_two_splits", path)
            items[:] = [it for it in items if it[0] not in shared]
        return listed

    def items(self, split: str, skips: SkipLog) -> tuple[list[tuple[Path, int]], str]:
        folder = SPLIT_FOLDERS[split]
        csv_path = self.manual_path / f"{folder}.csv"
        if csv_path.is_file():
            return read_split_csv(csv_path, self.image_root, skips), csv_path.name
        items = []
        for name, label in (("real", 0), ("fake", 1)):
            class_dir = self.image_root / folder / name
            files = list_images(class_dir, skips)
            if not files:
                skips.skip("empty_class_folder", class_dir)
            items += [(p, label) for p in files]
        return items, f"folders {IMAGE_ROOT / folder}"

    def generate_split(self, split: str) -> Iterator[dict[str, Any]]:
        start = time.perf_counter()
        items, source, skips = self.listed[split]
        seed = self.spec.seed
        items.sort(key=lambda it: (stable_unit(str(it[0].name) + str(it[1]), seed), str(it[0])))
        cap = round(SPLIT_FRACTIONS[split] * self.spec.num_examples)
        limits = {1: cap // 2, 0: cap - cap // 2}
        reals = [it for it in items if it[1] == 0]
        fakes = [it for it in items if it[1] == 1]
        interleaved = [it for pair in zip(reals, fakes) for it in pair]
        interleaved += (reals if len(reals) > len(fakes) else fakes)[min(len(reals), len(fakes)):]
        counts = {0: 0, 1: 0}
        root = self.image_root
        for example in read_examples(((p, lab, stable_id(os.path.relpath(p, root)))
                                      for p, lab in interleaved),
                                     image_size=self.spec.image_size, skips=skips,
                                     limit_per_label=limits):
            counts[example["label"]] += 1
            yield example
        self.report[split] = {
            "source": source, "listed": len(items), "examples": counts[0] + counts[1],
            "real": counts[0], "fake": counts[1], "cap": cap, "skipped": skips.as_dict(),
            "seconds": round(time.perf_counter() - start, 3)}

