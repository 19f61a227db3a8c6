"""`image_folder`: a user's own images, `root/<class>/*.{jpg,jpeg,png}`.

`--manual-dir` is the root. By default the folder `real` holds label 0 and `fake`
label 1; options `real` and `fake` name other folders (a comma-separated list each,
e.g. `real=pristine,original`). Option `face_crop=True` crops the largest
Haar-cascade face (1.3x margin) from each image and skips images without one.
A symlinked class folder is followed; a symlinked image leading outside its folder is
skipped and counted ("outside_root"), never read.
Splits: per class, files ordered by a seeded hash of their name, cut 60/20/20.
`spec.num_examples` caps each split's share, half real and half fake.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dfjax.data._images import SkipLog, list_images, read_examples, stable_id, stable_unit
from dfjax.data._manual import ManualBuilder
from dfjax.data.faces import DEFAULT_MARGIN, face_cropper

SPLIT_FRACTIONS = {"train": 0.6, "validation": 0.2, "test": 0.2}


def _names(value: str | tuple | list) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    return tuple(v.strip() for v in value if v.strip())


def _as_bool(value) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")


class ImageFolderBuilder(ManualBuilder, skip_registration=True):
    """root/<class>/* images; options `real`, `fake` (folder names), `face_crop`."""

    description = "A user's own images in root/<class>/ folders (real -> 0, fake -> 1)."
    homepage = "(your own data)"
    layout = """\
  DIR/
    real/*.jpg|*.png     (or the folders named by option real=...)
    fake/*.jpg|*.png     (or the folders named by option fake=...)"""
    OPTIONS = {"real": "real", "fake": "fake", "face_crop": False, "margin": DEFAULT_MARGIN}

    def class_folders(self) -> dict[str, int]:
        real = _names(self.options["real"])
        fake = _names(self.options["fake"])
        for name in real + fake:
            if name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
                raise ValueError(f"image_folder: class folder {name!r} must be the name of a "
                                 "folder directly in the manual dir")
        if set(real) & set(fake):
            raise ValueError(f"image_folder: folders {set(real) & set(fake)} are both real "
                             "and fake")
        return {**{n: 0 for n in real}, **{n: 1 for n in fake}}

    def check_layout(self) -> None:
        folders = self.class_folders()
        present = [n for n in folders if (self.manual_path / n).is_dir()]
        labels = {folders[n] for n in present}
        if labels != {0, 1}:
            found = sorted(p.name for p in self.manual_path.iterdir() if p.is_dir())
            raise ValueError(
                f"image_folder: {self.manual_path} needs real folder(s) "
                f"{[n for n, lab in folders.items() if lab == 0]} and fake folder(s) "
                f"{[n for n, lab in folders.items() if lab == 1]}; it has the "
                f"folders {found}; name yours with the dataset options real=A,B and fake=C")

    def generate_split(self, split: str) -> Iterator[dict[str, Any]]:
        start, skips = time.perf_counter(), SkipLog()
        seed = self.spec.seed
        by_label: dict[int, list[Path]] = {0: [], 1: []}
        for name, label in self.class_folders().items():
            files = list_images(self.manual_path / name, skips)
            if not files and (self.manual_path / name).is_dir():
                skips.skip("empty_class_folder", self.manual_path / name)
            files.sort(key=lambda p: (stable_unit(p.name, seed), p.name))
            n = len(files)
            n_train, n_val = round(0.6 * n), round(0.2 * n)
            bounds = {"train": (0, n_train), "validation": (n_train, n_train + n_val),
                      "test": (n_train + n_val, n)}[split]
            by_label[label] += files[bounds[0]:bounds[1]]
        interleaved = []
        for i in range(max(len(by_label[0]), len(by_label[1]))):
            interleaved += [(by_label[lab][i], lab) for lab in (0, 1) if i < len(by_label[lab])]
        cap = round(SPLIT_FRACTIONS[split] * self.spec.num_examples)
        cropper = None
        if _as_bool(self.options["face_crop"]):
            cropper = face_cropper(size=self.spec.image_size, margin=float(self.options["margin"]))
        counts = {0: 0, 1: 0}
        for example in read_examples(
                ((p, lab, stable_id(f"{p.parent.name}/{p.name}")) for p, lab in interleaved),
                image_size=self.spec.image_size, skips=skips, face_cropper=cropper,
                limit_per_label={0: cap - cap // 2, 1: cap // 2}):
            counts[example["label"]] += 1
            yield example
        self.report[split] = {
            "listed": len(interleaved), "examples": counts[0] + counts[1], "real": counts[0],
            "fake": counts[1], "cap": cap, "face_crop": cropper is not None,
            "skipped": skips.as_dict(), "seconds": round(time.perf_counter() - start, 3)}

