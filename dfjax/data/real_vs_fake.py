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
Each image is its own group (a stable hash of its path).
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dfjax.data._images import SkipLog, list_images, read_examples, stable_id, stable_unit
from dfjax.data._manual import ManualBuilder

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
    """The Kaggle CSV's label (1 = real, 0 = fake) -> dfjax's (0 = real, 1 = fake)."""
    value = int(float(label))
    if value not in (0, 1):
        raise ValueError(f"label must be 0 or 1, got {label!r}")
    return 1 - value


def read_split_csv(csv_path: Path, image_root: Path, skips: SkipLog
                   ) -> list[tuple[Path, int]]:
    """(path, dfjax label) per row; a row with a bad or conflicting label is skipped."""
    items = []
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"label", "path"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{csv_path} lacks the column(s) {sorted(missing)}; its header is "
                             f"{reader.fieldnames}")
        for row in reader:
            where = f"{csv_path.name}:{reader.line_num}"
            try:
                label = kaggle_label_to_dfjax(row["label"])
            except (TypeError, ValueError):
                skips.skip("bad_label", where)
                continue
            text = (row.get("label_str") or "").strip().lower()
            if text and text != ("fake" if label else "real"):
                skips.skip("label_conflict", where)
                continue
            items.append((image_root / row["path"], label))
    return items


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

    def items(self, split: str, skips: SkipLog) -> tuple[list[tuple[Path, int]], str]:
        folder = SPLIT_FOLDERS[split]
        csv_path = self.manual_path / f"{folder}.csv"
        if csv_path.is_file():
            return read_split_csv(csv_path, self.image_root, skips), csv_path.name
        items = []
        for name, label in (("real", 0), ("fake", 1)):
            class_dir = self.image_root / folder / name
            files = list_images(class_dir)
            if not files:
                skips.skip("empty_class_folder", class_dir)
            items += [(p, label) for p in files]
        return items, f"folders {IMAGE_ROOT / folder}"

    def generate_split(self, split: str) -> Iterator[dict[str, Any]]:
        start, skips = time.perf_counter(), SkipLog()
        items, source = self.items(split, skips)
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

