"""Robust image reading for the file-backed datasets: decode, validate, resize, log skips.

A file that does not decode, a JPEG or PNG cut short, or a missing file is *skipped*
and recorded by reason with its path in a `SkipLog`, which the builders put into their
preparation report -- never silently replaced.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
_MAX_LISTED = 50  # file names kept per skip reason in a report


class SkipLog:
    """Counts skipped inputs by reason and keeps the first `_MAX_LISTED` paths of each.

    Example:
        >>> log = SkipLog(); log.skip("corrupt", "a.jpg"); log.as_dict()
        {'corrupt': {'count': 1, 'files': ['a.jpg']}}
    """

    def __init__(self):
        self._reasons: dict[str, dict] = {}

    def skip(self, reason: str, path: str | Path, count: int = 1) -> None:
        entry = self._reasons.setdefault(reason, {"count": 0, "files": []})
        entry["count"] += count
        if len(entry["files"]) < _MAX_LISTED:
            entry["files"].append(str(path))

    def count(self, reason: str | None = None) -> int:
        if reason is None:
            return sum(e["count"] for e in self._reasons.values())
        return self._reasons.get(reason, {"count": 0})["count"]

    def as_dict(self) -> dict:
        return {k: {"count": v["count"], "files": list(v["files"])}
                for k, v in sorted(self._reasons.items())}


def stable_unit(key: str, seed: int = 0) -> float:
    """A deterministic pseudo-random number in [0, 1) from a string (sha256, not hash())."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def stable_id(key: str) -> int:
    """A deterministic non-negative int63 id for a string (e.g. a video's relative path)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") >> 1


def list_images(folder: Path) -> list[Path]:
    """Image files (by suffix, case-insensitive) directly in `folder`, sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _truncated(data: bytes) -> bool:
    """True for a JPEG without its end-of-image marker or a PNG without its IEND chunk
    (OpenCV decodes such files with a grey or black tail and only prints a warning)."""
    if data[:2] == b"\xff\xd8":
        return b"\xff\xd9" not in data[-64:]
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return b"IEND" not in data[-32:]
    return False


def read_image(path: Path) -> tuple[np.ndarray | None, str | None]:
    """Reads an image file as RGB.

    Returns:
      (uint8 [h, w, 3], None) on success -- grayscale and RGBA files become 3-channel
      RGB -- or (None, reason) with reason in {"missing", "empty", "truncated",
      "undecodable"}.
    """
    path = Path(path)
    if not path.is_file():
        return None, "missing"
    data = path.read_bytes()
    if not data:
        return None, "empty"
    if _truncated(data):
        return None, "truncated"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        return None, "undecodable"
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    else:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(image), None


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 [h, w, 3] -> uint8 [size, size, 3]: a non-square image is squashed (all of
    it kept, as Keras' `target_size` does); INTER_AREA when shrinking, else linear."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    interpolation = cv2.INTER_AREA if size < max(h, w) else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def read_examples(items: Iterable[tuple[Path, int, int]], *, image_size: int, skips: SkipLog,
                  face_cropper=None, limit_per_label: dict[int, int] | None = None):
    """Yields {"image", "label", "group"} for each readable (path, label, group) item.

    Unreadable files are logged in `skips` by reason. `face_cropper(image) -> crop | None`
    (optional) crops the face; an image without a face is skipped as "no_face".
    `limit_per_label` stops taking a label once that many examples of it were yielded
    (unreadable files do not count, so a cap is met whenever enough files are good).
    """
    taken: dict[int, int] = {}
    for path, label, group in items:
        if limit_per_label is not None and taken.get(label, 0) >= limit_per_label.get(label, 0):
            continue
        image, reason = read_image(path)
        if image is None:
            skips.skip(reason, path)
            continue
        if face_cropper is not None:
            image = face_cropper(image)
            if image is None:
                skips.skip("no_face", path)
                continue
        taken[label] = taken.get(label, 0) + 1
        yield {"image": resize_square(image, image_size), "label": label, "group": group}
