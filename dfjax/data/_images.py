"""Robust image reading for the file-backed datasets: decode, validate, resize, log skips.

A file that does not decode, a JPEG or PNG cut short, a missing file, a file that is not
a JPEG, PNG or BMP by its content, or one whose header declares more than
`MAX_IMAGE_PIXELS` pixels (refused before decoding, so a forged header cannot make the
decoder allocate gigabytes) is *skipped* and recorded by reason with its path in a
`SkipLog`, which the builders put into their preparation report -- never silently
replaced. Paths named by a label file are joined to the dataset root with
`contained_path`, which refuses any that resolve (symlinks followed) outside it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
MAX_IMAGE_PIXELS = 1 << 26  # 8192 x 8192; a larger declared image is skipped as "too_large"
MAX_IMAGE_BYTES = 256 << 20  # a larger file is skipped as "too_large" without being read
_MAX_LISTED = 50  # file names kept per skip reason in a report
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_MAX_SEGMENTS = 4096  # real JPEGs have a few dozen segments before the frame header


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


def _key_bytes(key: str) -> bytes:
    """UTF-8, keeping the raw bytes of a file name that is not UTF-8 (surrogateescape)."""
    return key.encode("utf-8", "surrogateescape")


def stable_unit(key: str, seed: int = 0) -> float:
    """A deterministic pseudo-random number in [0, 1) from a string (sha256, not hash())."""
    digest = hashlib.sha256(f"{seed}:".encode() + _key_bytes(key)).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def stable_id(key: str) -> int:
    """A deterministic non-negative int63 id for a string (e.g. a video's relative path)."""
    return int.from_bytes(hashlib.sha256(_key_bytes(key)).digest()[:8], "big") >> 1


def contained_path(root: Path, name: object) -> tuple[Path | None, str | None]:
    """`root / name` resolved, if it stays inside `root` once symlinks are followed.

    `name` is a path read from a label file (a CSV cell, a metadata.json key). Returns
    (resolved path, None), or (None, reason): "bad_path" for a name that is not a
    non-empty string or holds a NUL byte, "outside_root" for an absolute name or one that
    resolves (through `..` or a symlink) outside `root`. Nothing is read.

    Example:
        >>> contained_path(Path("/data"), "../etc/passwd")
        (None, 'outside_root')
    """
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        return None, "bad_path"
    if os.path.isabs(name):
        return None, "outside_root"
    try:
        base = Path(root).resolve()
        resolved = (base / name).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a name too long
        return None, "bad_path"
    if resolved == base:
        return None, "bad_path"
    if not resolved.is_relative_to(base):
        return None, "outside_root"
    return resolved, None


def list_images(folder: Path, skips: SkipLog | None = None) -> list[Path]:
    """Image files (by suffix, case-insensitive) directly in `folder`, sorted by name.

    A symlink resolving outside `folder` is left out (logged as "outside_root" in
    `skips`); a symlinked `folder` itself is followed.
    """
    if not folder.is_dir():
        return []
    base = folder.resolve()
    files = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.is_symlink():
            _, reason = contained_path(base, path.name)
            if reason is not None:
                if skips is not None:
                    skips.skip(reason, path)
                continue
        if path.is_file():
            files.append(path)
    return files


def image_format(data: bytes) -> str | None:
    """"jpeg", "png" or "bmp" from a file's first bytes (its content, not its name)."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:2] == b"BM":
        return "bmp"
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first frame header (SOFn) of a JPEG, walking its markers;
    None if no frame header comes before the scan data or within `_JPEG_MAX_SEGMENTS`."""
    i, n = 2, len(data)
    for _ in range(_JPEG_MAX_SEGMENTS):
        i = data.find(b"\xff", i)  # bytes between segments are skipped, as libjpeg does
        if i < 0 or i + 4 > n:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:  # segments without a length
            i += 2
        elif marker in (0xD9, 0xDA):  # end of image or start of scan before a frame header
            return None
        elif marker in _JPEG_FRAME_MARKERS:
            if i + 9 > n:
                return None
            return (int.from_bytes(data[i + 7:i + 9], "big"),
                    int.from_bytes(data[i + 5:i + 7], "big"))
        else:
            i += 2 + max(2, int.from_bytes(data[i + 2:i + 4], "big"))
    return None


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) a JPEG, PNG or BMP header declares, before any decoding; None if
    the header is cut short or missing."""
    kind = image_format(data)
    if kind == "jpeg":
        return _jpeg_size(data)
    if kind == "png" and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if kind == "bmp" and len(data) >= 26:
        if int.from_bytes(data[14:18], "little") == 12:  # OS/2 core header: 16-bit sides
            return (int.from_bytes(data[18:20], "little"),
                    int.from_bytes(data[20:22], "little"))
        return (abs(int.from_bytes(data[18:22], "little", signed=True)),
                abs(int.from_bytes(data[22:26], "little", signed=True)))
    return None


def _truncated(data: bytes) -> bool:
    """True for a JPEG without its end-of-image marker or a PNG without its IEND chunk
    (OpenCV decodes such files with a grey or black tail and only prints a warning)."""
    if data[:2] == b"\xff\xd8":
        return b"\xff\xd9" not in data[-64:]
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return b"IEND" not in data[-32:]
    return False


def _read_bounded(path: Path) -> tuple[bytes | None, str | None]:
    """The bytes of a regular file of at most MAX_IMAGE_BYTES, or (None, reason)."""
    try:
        if not path.is_file():  # also keeps FIFOs and devices from being read
            return None, "missing"
        if path.stat().st_size > MAX_IMAGE_BYTES:
            return None, "too_large"
        data = path.read_bytes()
    except (OSError, ValueError):  # no permission, a NUL in the name
        return None, "unreadable"
    return (data, None) if data else (None, "empty")


def read_image(path: Path, *, max_pixels: int = MAX_IMAGE_PIXELS
               ) -> tuple[np.ndarray | None, str | None]:
    """Reads an image file as RGB.

    Returns:
      (uint8 [h, w, 3], None) on success -- grayscale, 16-bit, CMYK and RGBA files become
      8-bit 3-channel RGB -- or (None, reason) with reason in {"missing", "unreadable",
      "empty", "too_large", "truncated", "undecodable"}. "too_large" is a file over
      MAX_IMAGE_BYTES or a header declaring more than `max_pixels` pixels, refused before
      decoding; "undecodable" includes content that is not a JPEG, PNG or BMP.
    """
    data, reason = _read_bounded(Path(path))
    if data is None:
        return None, reason
    size = declared_size(data)  # None too for content that is not a JPEG, PNG or BMP
    if size is None or 0 in size:
        return None, "undecodable"
    if size[0] * size[1] > max_pixels:
        return None, "too_large"
    if _truncated(data):
        return None, "truncated"
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None, "undecodable"
    if image is None or image.size == 0 or image.dtype not in (np.uint8, np.uint16):
        return None, "undecodable"
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    elif image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    else:
        return None, "undecodable"
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
