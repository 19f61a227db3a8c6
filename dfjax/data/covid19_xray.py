"""`covid19_xray`: Kaggle's "COVID-19 Image Dataset" (Pranav Raikokte), chest X-rays,
the paper's third set.

Layout (`--manual-dir DIR`, the unpacked archive):

    DIR/Covid19-dataset/{train,test}/{Covid,Normal,Viral Pneumonia}/*.{jpeg,jpg,png}

Default (`classes=2`, the paper's binary variant): Covid vs Normal, **label 1 = Covid**
(the positive class, in the slot dfjax's metrics call "fake"), 0 = Normal; Viral
Pneumonia images are left out (counted in the report). `classes=3`: 0 = Normal,
1 = Covid, 2 = Viral Pneumonia -- note dfjax's runner metrics are binary-only, so a
3-class set is for users' own code. Grayscale X-rays are replicated to 3 channels.
The given test split is kept; validation is 20% of each train class, the files with
the smallest seeded hash of their name (deterministic). `spec.num_examples` caps the
total, 60/20/20 per split, taken in the same hash order. A symlinked image leading
outside its class folder is skipped and counted ("outside_root"), never read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dfjax.data._images import SkipLog, list_images, read_examples, stable_id, stable_unit
from dfjax.data._manual import ManualBuilder

ROOT = "Covid19-dataset"
CLASS_LABELS = {2: {"Normal": 0, "Covid": 1}, 3: {"Normal": 0, "Covid": 1, "Viral Pneumonia": 2}}
ALL_CLASSES = ("Covid", "Normal", "Viral Pneumonia")
VALIDATION_FRACTION = 0.2
SPLIT_FRACTIONS = {"train": 0.6, "validation": 0.2, "test": 0.2}
LAYOUT = """\
  DIR/
    Covid19-dataset/
      train/Covid/*.jpeg  train/Normal/*.jpeg  train/Viral Pneumonia/*.jpeg
      test/Covid/*.jpeg   test/Normal/*.jpeg   test/Viral Pneumonia/*.jpeg"""


class Covid19XrayBuilder(ManualBuilder, skip_registration=True):
    """COVID-19 chest X-rays; option `classes` in {2, 3}."""

    description = ("COVID-19 Image Dataset (Kaggle, pranavraikokte): chest X-rays; binary "
                   "Covid (1) vs Normal (0) by default, option classes=3 adds Viral Pneumonia.")
    homepage = "https://www.kaggle.com/datasets/pranavraikokte/covid19-image-dataset"
    layout = LAYOUT
    OPTIONS = {"classes": 2}

    @staticmethod
    def check_options(options):
        if options["classes"] not in CLASS_LABELS:
            raise ValueError(f"option classes must be 2 or 3, got {options['classes']!r}")

    @property
    def classes(self) -> int:
        return int(self.options["classes"])

    def check_layout(self) -> None:
        self.data_root = self.manual_path / ROOT
        if not self.data_root.is_dir() and (self.manual_path / "train").is_dir():
            self.data_root = self.manual_path  # pointed at Covid19-dataset itself
        for part in ("train", "test"):
            if not (self.data_root / part).is_dir():
                raise self.missing(f"{ROOT}/{part} is not in the manual download folder")

    def items(self, split: str, skips: SkipLog) -> list[tuple[Path, int]]:
        part = "test" if split == "test" else "train"
        labels = CLASS_LABELS[self.classes]
        items = []
        for name in ALL_CLASSES:
            folder = self.data_root / part / name
            files = list_images(folder, skips)
            if not files:
                skips.skip("empty_class_folder", folder)
            if name not in labels:
                if files:
                    skips.skip("excluded_class", folder, count=len(files))
                continue
            files.sort(key=lambda p: (stable_unit(p.name, self.spec.seed), p.name))
            if part == "train":
                n_val = round(VALIDATION_FRACTION * len(files))
                files = files[:n_val] if split == "validation" else files[n_val:]
            items += [(p, labels[name]) for p in files]
        return items

    def generate_split(self, split: str) -> Iterator[dict[str, Any]]:
        start, skips = time.perf_counter(), SkipLog()
        items = self.items(split, skips)
        cap = round(SPLIT_FRACTIONS[split] * self.spec.num_examples)
        items = sorted(items, key=lambda it: (stable_unit(it[0].name, self.spec.seed + 1),
                                              it[0].name))
        counts: dict[int, int] = {}
        for example in read_examples(((p, lab, stable_id(f"{p.parent.name}/{p.name}"))
                                      for p, lab in items),
                                     image_size=self.spec.image_size, skips=skips):
            if sum(counts.values()) >= cap:
                break
            counts[example["label"]] = counts.get(example["label"], 0) + 1
            yield example
        self.report[split] = {
            "classes": self.classes, "listed": len(items), "examples": sum(counts.values()),
            "per_label": {str(k): v for k, v in sorted(counts.items())}, "cap": cap,
            "skipped": skips.as_dict(), "seconds": round(time.perf_counter() - start, 3)}

