"""Tiny fixture trees in the real datasets' download layouts (built with OpenCV)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest


def write_jpeg(path: Path, rng: np.random.Generator, *, bright: bool, size: int = 48,
               gray: bool = False) -> Path:
    """A smooth random image; bright ones (mean ~190) stand for one class, dark (~60) for
    the other, so a test can tell from the pixels which folder an example came from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    base = 190 if bright else 60
    coarse = rng.uniform(-30, 30, (4, 4, 1 if gray else 3)).astype(np.float32)
    image = np.clip(base + cv2.resize(coarse, (size, size)), 0, 255).astype(np.uint8)
    assert cv2.imwrite(str(path), image)
    return path


def truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture()
def kaggle_140k(tmp_path) -> Path:
    """train 4+4, valid 2+2, test 2+2; real images bright, fake dark. Faults in train: one
    truncated real JPEG, one garbage 'JPEG' fake, one CSV row naming a missing file."""
    rng = np.random.default_rng(0)
    root = tmp_path / "kaggle_140k"
    images = root / "real_vs_fake" / "real-vs-fake"
    counts = {"train": 4, "valid": 2, "test": 2}
    for folder, n in counts.items():
        rows = []
        for cls, kaggle_label in (("real", 1), ("fake", 0)):
            for i in range(n):
                rel = f"{folder}/{cls}/{cls[0]}{i:03d}.jpg"
                write_jpeg(images / rel, rng, bright=cls == "real")
                rows.append({"": len(rows), "original_path": f"/x/{rel}", "id": f"{cls[0]}{i:03d}",
                             "label": kaggle_label, "label_str": cls, "path": rel})
        if folder == "train":
            truncate(images / "train/real/r000.jpg")
            (images / "train/fake/f001.jpg").write_bytes(b"not a jpeg at all" * 10)
            rows.append({"": len(rows), "original_path": "/x/gone.jpg", "id": "gone",
                         "label": 1, "label_str": "real", "path": "train/real/gone.jpg"})
        with open(root / f"{folder}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["", "original_path", "id", "label",
                                                   "label_str", "path"])
            writer.writeheader()
            writer.writerows(rows)
    return root


@pytest.fixture()
def covid_tree(tmp_path) -> Path:
    """Covid19-dataset with grayscale X-rays: train 5 Covid (bright), 5 Normal (dark),
    2 Viral Pneumonia; test 2 of each; an empty test/Viral Pneumonia folder is avoided,
    but train/Viral Pneumonia holds one truncated file."""
    rng = np.random.default_rng(1)
    root = tmp_path / "covid" / "Covid19-dataset"
    for part, n in (("train", 5), ("test", 2)):
        for cls in ("Covid", "Normal"):
            for i in range(n):
                write_jpeg(root / part / cls / f"{cls}{i}.jpeg", rng, bright=cls == "Covid",
                           gray=True)
        for i in range(2):
            write_jpeg(root / part / "Viral Pneumonia" / f"v{i}.png", rng, bright=True, gray=True)
    return root.parent


@pytest.fixture(scope="session")
def dfdc_tree(tmp_path_factory) -> Path:
    """Two DFDC-like part folders: 3 real/fake pairs of 10-frame 128 px rendered clips,
    plus an undecodable MP4, a video without a face, and a listed file that is missing."""
    from dfjax.data.synthetic_videos import write_synthetic_videos
    from dfjax.data.video import write_video

    root = tmp_path_factory.mktemp("dfdc")
    write_synthetic_videos(root / "part_0", num_pairs=2, clip_frames=10, frame_size=128, seed=3)
    write_synthetic_videos(root / "part_1", num_pairs=1, clip_frames=10, frame_size=128, seed=4)
    meta_path = root / "part_1" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    (root / "part_1" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 100)
    flat = [np.full((96, 96, 3), 120 + 5 * i, np.uint8) for i in range(10)]
    write_video(root / "part_1" / "noface.mp4", flat)
    made_from = {"split": "train", "original": "real_00000.mp4"}  # all in one cluster
    meta.update({"broken.mp4": {"label": "FAKE", **made_from},
                 "noface.mp4": {"label": "FAKE", **made_from},
                 "gone.mp4": {"label": "FAKE", **made_from}})
    meta_path.write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="session")
def mutate():
    """mutate(data: bytes, edits) -> bytes: each edit (kind, where in [0, 1], junk bytes)
    flips (overwrites), cuts (truncates) or inserts `junk` at that fraction of the file."""

    def apply(data: bytes, edits) -> bytes:
        data = bytearray(data)
        for edit, where, junk in edits:
            at = int(where * len(data))
            if edit == "flip":
                data[at:at + len(junk)] = junk
            elif edit == "cut":
                del data[at:]
            else:
                data[at:at] = junk
        return bytes(data)

    return apply
