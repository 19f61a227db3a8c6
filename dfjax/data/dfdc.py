"""`dfdc`: the Deepfake Detection Challenge videos (Dolhansky et al., arXiv:2006.07397),
read from the folders Kaggle ships, frame by frame with OpenCV face crops.

Layout (`--manual-dir DIR`; any depth, every folder with a metadata.json is read):

    DIR/dfdc_train_part_0/metadata.json   {"abc.mp4": {"label": "FAKE", "split": "train",
                                                       "original": "xyz.mp4"}, ...}
    DIR/dfdc_train_part_0/abc.mp4, xyz.mp4, ...

Per video, `frames_per_video` (option, default 32, DeepfakeBench's protocol) evenly
spaced frames are decoded; the largest Haar-cascade face is cropped with a 1.3x margin
(option `margin`) and resized to `spec.image_size`. Every example keeps its video id
(`group`, a stable hash of the video's path) and frame index (`frame`); a sampled
frame without a detected face is skipped and counted, never centre-cropped.

Splits are by video *cluster*: a fake and the original it was made from share a
cluster, so no face and no video appears in two splits. Clusters are ordered by a
seeded hash and cut 60/20/20. If the metadata carries both "train" and "test"
splits, those are kept (a cluster takes its original's split) and validation is the
20% of train clusters with the smallest hash. (Kaggle's training parts say "train"
throughout, so they are cut 60/20/20.) `spec.num_examples` caps the frames: each
split takes at most its share / frames_per_video videos, alternating real and fake.

Bad inputs are skipped and counted by name in the preparation report, never read
past: a metadata.json that is not a JSON object, an entry with a bad label or type,
a name leading outside its metadata.json's folder (absolute, `..`, a symlink), a
missing or duplicate video (`read_metadata`); a file that is not a video container,
does not decode, or declares too many frames or pixels (`dfjax.data.video`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dfjax.data._images import SkipLog, contained_path, stable_id, stable_unit
from dfjax.data._manual import DataFileError, ManualBuilder, has_undecodable_bytes, read_label_text
from dfjax.data.base import SPLITS
from dfjax.data.faces import DEFAULT_MARGIN, FaceDetector
from dfjax.data.video import VideoDecodeError, VideoTooLargeError, video_face_crops

DEFAULT_FRAMES_PER_VIDEO = 32
SPLIT_FRACTIONS = {"train": 0.6, "validation": 0.2, "test": 0.2}
LABELS = {"REAL": 0, "FAKE": 1}
LAYOUT = """\
  DIR/
    dfdc_train_part_0/
      metadata.json     {"abc.mp4": {"label": "REAL"|"FAKE", "split": "train",
                                     "original": "xyz.mp4"|null}, ...}
      abc.mp4
      xyz.mp4
    dfdc_train_part_1/ ...   (any number of such folders)"""


@dataclasses.dataclass(frozen=True)
class VideoEntry:
    """One video listed in a metadata.json: `relpath` relative to the manual dir."""

    relpath: str
    path: Path
    label: int
    cluster: str
    meta_split: str


def _load_metadata(meta_path: Path) -> dict:
    """A metadata.json's object; raises DataFileError naming the file and the problem."""
    text = read_label_text(meta_path)
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise DataFileError(meta_path, f"is not valid JSON ({type(e).__name__}: "
                                       f"{str(e)[:200]})") from None
    if not isinstance(meta, dict):
        raise DataFileError(meta_path, f"must be a JSON object mapping video file names to "
                                       f"objects, not a {type(meta).__name__}")
    return meta


def _entry_fields(info: object) -> tuple[int, str | None, str] | str:
    """(label, original or None, split) of one metadata value, or the skip reason."""
    if not isinstance(info, dict):
        return "bad_entry"
    label = info.get("label")
    label = LABELS.get(label.upper()) if isinstance(label, str) else None
    if label is None:
        return "bad_label"
    original, split = info.get("original"), info.get("split", "train")
    if (original is not None and not isinstance(original, str)) or not isinstance(split, str):
        return "bad_entry"
    return label, (original or None) if label == 1 else None, split.lower()


def read_metadata(root: Path, skips: SkipLog) -> list[VideoEntry]:
    """Every video named by a metadata.json under `root` whose file exists.

    A metadata.json that cannot be used (not UTF-8 JSON, not an object, unreadable) is
    skipped whole and logged as "bad_metadata" with the problem. An entry is skipped and
    logged by its path for: a value that is not an object, or an `original`/`split` that
    is not a string ("bad_entry"), a label other than REAL/FAKE ("bad_label"), a name with
    bytes that are not UTF-8 ("bad_encoding"), a name that is absolute or resolves
    (through `..` or a symlink) outside its metadata.json's folder ("outside_root",
    "bad_path"; never read), a file listed before ("duplicate_entry"), a missing file
    ("missing_video").
    """
    entries, seen = [], set()
    for meta_path in sorted(root.rglob("metadata.json")):
        try:
            meta = _load_metadata(meta_path)
        except DataFileError as e:
            skips.skip("bad_metadata", f"{meta_path.relative_to(root)}: {e.problem}")
            continue
        folder = meta_path.parent
        folder_rel = folder.relative_to(root)
        for name, info in sorted(meta.items()):
            shown = os.path.join(folder_rel, name)
            if has_undecodable_bytes(name):
                skips.skip("bad_encoding", repr(shown))
                continue
            resolved, reason = contained_path(folder, name)
            if resolved is None:
                skips.skip(reason, repr(shown))
                continue
            relpath = str(folder_rel / resolved.relative_to(folder.resolve()))
            fields = _entry_fields(info)
            if isinstance(fields, str):
                skips.skip(fields, relpath)
                continue
            if relpath in seen:
                skips.skip("duplicate_entry", relpath)
                continue
            if not resolved.is_file():
                skips.skip("missing_video", relpath)
                continue
            seen.add(relpath)
            label, original, meta_split = fields
            cluster = os.path.normpath(os.path.join(folder_rel, original)) if original else relpath
            entries.append(VideoEntry(relpath, root / relpath, label, cluster, meta_split))
    return entries


def _cut(clusters: list[str], fractions: dict[str, float]) -> dict[str, list[str]]:
    """Consecutive cuts of an ordered list; each split gets >= 1 when there are enough."""
    n, names = len(clusters), list(fractions)
    sizes = {k: round(fractions[k] * n) for k in names}
    if n >= len(names):
        for k in names[1:]:
            sizes[k] = max(1, sizes[k])
    sizes[names[0]] = n - sum(sizes[k] for k in names[1:])
    out, start = {}, 0
    for k in names:
        out[k] = clusters[start:start + sizes[k]]
        start += sizes[k]
    return out


def assign_splits(entries: list[VideoEntry], *, seed: int) -> dict[str, list[VideoEntry]]:
    """Splits videos by cluster (see the module docstring); deterministic in `seed`."""
    by_cluster: dict[str, list[VideoEntry]] = {}
    for e in entries:
        by_cluster.setdefault(e.cluster, []).append(e)
    ordered = sorted(by_cluster, key=lambda c: (stable_unit(c, seed), c))
    cluster_split = {}
    for c in ordered:  # the original's own metadata split, else its first member's
        members = by_cluster[c]
        own = [e for e in members if e.relpath == c]
        cluster_split[c] = (own or members)[0].meta_split
    if {"train", "test"} <= set(cluster_split.values()):
        test = [c for c in ordered if cluster_split[c] == "test"]
        rest = [c for c in ordered if cluster_split[c] != "test"]
        cut = _cut(rest, {"train": 0.75, "validation": 0.25})
        cut["test"] = test
    else:
        cut = _cut(ordered, SPLIT_FRACTIONS)
    return {s: [e for c in cut[s] for e in by_cluster[c]] for s in SPLITS}


def balanced_take(entries: list[VideoEntry], limit: int, *, seed: int) -> list[VideoEntry]:
    """At most `limit` videos alternating real, fake (each class in seeded-hash order)."""
    classes = [sorted((e for e in entries if e.label == lab),
                      key=lambda e: (stable_unit(e.relpath, seed), e.relpath)) for lab in (0, 1)]
    out = []
    for i in range(max(len(c) for c in classes) if entries else 0):
        out += [c[i] for c in classes if i < len(c)]
    return out[:limit]


class DfdcBuilder(ManualBuilder, skip_registration=True):
    """DFDC videos -> face crops per sampled frame. Options: `frames_per_video` (32),
    `margin` (1.3), `detect_size` (640, the long side the full-frame search runs at)."""

    description = ("Deepfake Detection Challenge videos: evenly sampled frames, largest "
                   "Haar-cascade face cropped with a 1.3x margin; splits by video cluster.")
    homepage = "https://www.kaggle.com/competitions/deepfake-detection-challenge/data"
    layout = LAYOUT
    OPTIONS = {"frames_per_video": DEFAULT_FRAMES_PER_VIDEO, "margin": DEFAULT_MARGIN,
               "detect_size": 640}

    @staticmethod
    def check_options(options):
        if int(options["frames_per_video"]) < 1:
            raise ValueError(f"option frames_per_video must be >= 1, got "
                             f"{options['frames_per_video']!r}")

    @property
    def frames_per_video(self) -> int:
        return int(self.options["frames_per_video"])

    def check_layout(self) -> None:
        if not any(self.manual_path.rglob("metadata.json")):
            raise self.missing("no metadata.json was found under the manual download folder")
        self.skips = SkipLog()
        entries = read_metadata(self.manual_path, self.skips)
        if not entries:
            bad = self.skips.as_dict().get("bad_metadata")
            if bad:
                raise DataFileError(self.manual_path, f"no usable metadata.json: {bad['files']}")
            raise self.missing("no video named in a metadata.json exists")
        self.splits = assign_splits(entries, seed=self.spec.seed)
        self.detector = FaceDetector(detect_size=int(self.options["detect_size"]))
        self.report.update({"frames_per_video": self.frames_per_video,
                            "skipped_before_reading": self.skips.as_dict(), "videos": {}})

    def generate_split(self, split: str) -> Iterator[dict[str, Any]]:
        limit = max(1, round(SPLIT_FRACTIONS[split] * self.spec.num_examples
                             / self.frames_per_video))
        chosen = balanced_take(self.splits[split], limit, seed=self.spec.seed)
        skips, start = SkipLog(), time.perf_counter()
        counts = {"videos": 0, "frames": 0, "sampled_frames": 0, "real": 0, "fake": 0,
                  "tracked": 0}
        sampled_by_label = {"real": 0, "fake": 0}
        margin = float(self.options["margin"])
        for entry in chosen:
            try:
                faces = video_face_crops(entry.path, frames_per_video=self.frames_per_video,
                                         image_size=self.spec.image_size,
                                         detector=self.detector, margin=margin)
            except VideoTooLargeError:
                skips.skip("too_large_video", entry.relpath)
                continue
            except VideoDecodeError:
                skips.skip("undecodable_video", entry.relpath)
                continue
            if faces.undecoded_frames:
                skips.skip("frames_not_decoded",
                           f"{entry.relpath} frames {faces.undecoded_frames}",
                           count=len(faces.undecoded_frames))
            counts["sampled_frames"] += len(faces.crops) + len(faces.missed_frames)
            sampled_by_label["fake" if entry.label else "real"] += (
                len(faces.crops) + len(faces.missed_frames))
            counts["tracked"] += faces.tracked
            if faces.missed_frames:
                skips.skip("frames_without_face", f"{entry.relpath} frames {faces.missed_frames}",
                           count=len(faces.missed_frames))
            if not len(faces.crops):
                skips.skip("video_without_face", entry.relpath)
                continue
            group = stable_id(entry.relpath)
            self.report["videos"][str(group)] = entry.relpath
            counts["videos"] += 1
            counts["frames"] += len(faces.crops)
            counts["fake" if entry.label else "real"] += len(faces.crops)
            for crop, index in zip(faces.crops, faces.frame_indices):
                yield {"image": crop, "label": entry.label, "group": group, "frame": int(index)}
        sampled = counts["sampled_frames"]
        self.report[split] = {
            **counts, "videos_listed": len(self.splits[split]), "videos_chosen": len(chosen),
            "face_detection_rate": round(counts["frames"] / sampled, 4) if sampled else None,
            "face_detection_rate_by_label": {
                k: round(counts[k] / n, 4) if n else None for k, n in sampled_by_label.items()},
            "skipped": skips.as_dict(), "seconds": round(time.perf_counter() - start, 3)}

