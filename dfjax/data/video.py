"""Video frame sampling and per-frame face crops (the DFDC protocol).

`frames_per_video` frames are sampled evenly over the video (DeepfakeBench pins 32
evenly spaced frames). The video is decoded sequentially -- `grab()` every frame,
`retrieve()` (colour-convert) only the sampled ones -- which is cheaper than seeking
to each sampled frame in a long-GOP MP4. Faces are found by a `FaceTracker`.

Example:
    >>> sample_frame_indices(300, 4).tolist()
    [0, 100, 199, 299]
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from dfjax.data.faces import DEFAULT_MARGIN, FaceDetector, FaceTracker, crop_face


class VideoDecodeError(ValueError):
    """The file is not a video OpenCV can open, or no frame of it decodes."""


def sample_frame_indices(num_frames: int, n: int) -> np.ndarray:
    """int64 [min(n, num_frames)]: n indices spread evenly over [0, num_frames - 1]."""
    if num_frames <= 0:
        return np.zeros(0, np.int64)
    if num_frames <= n:
        return np.arange(num_frames, dtype=np.int64)
    return np.unique(np.round(np.linspace(0, num_frames - 1, n)).astype(np.int64))


def frame_count(path: Path) -> int:
    """The frame count the container declares (0 if it cannot be opened)."""
    capture = cv2.VideoCapture(str(path))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()


def read_sampled_frames(path: Path, frames_per_video: int
                        ) -> tuple[list[tuple[int, np.ndarray]], int]:
    """Decodes the sampled frames of a video.

    Returns:
      ([(frame_index, uint8 [h, w, 3] RGB), ...], declared frame count). Frames past a
      broken point are missing from the list. Raises VideoDecodeError when nothing decodes.
    """
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoDecodeError(f"OpenCV cannot open {path}")
        declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if declared <= 0:
            raise VideoDecodeError(f"{path} declares no frames")
        wanted = sample_frame_indices(declared, frames_per_video)
        out, want = [], 0
        for index in range(int(wanted[-1]) + 1):
            if not capture.grab():
                break
            if index == wanted[want]:
                ok, frame = capture.retrieve()
                if ok and frame is not None:
                    out.append((index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
                want += 1
        if not out:
            raise VideoDecodeError(f"no frame of {path} decodes")
        return out, declared
    finally:
        capture.release()


@dataclasses.dataclass
class VideoFaces:
    """Face crops of one video: crops uint8 [n, s, s, 3], their frame indices [n],
    the sampled frames without a detected face, and the declared frame count."""

    crops: np.ndarray
    frame_indices: np.ndarray
    missed_frames: list[int]
    num_frames: int
    tracked: int


def video_face_crops(path: Path, *, frames_per_video: int, image_size: int,
                     detector: FaceDetector | None = None, margin: float = DEFAULT_MARGIN
                     ) -> VideoFaces:
    """Samples frames, finds the largest face in each (tracking it), crops and resizes.

    A sampled frame without a face yields no crop and is listed in `missed_frames`.
    """
    frames, declared = read_sampled_frames(path, frames_per_video)
    tracker = FaceTracker(detector or FaceDetector())
    crops, indices, missed = [], [], []
    for index, frame in frames:
        box = tracker(frame)
        if box is None:
            missed.append(index)
            continue
        crops.append(crop_face(frame, box, size=image_size, margin=margin))
        indices.append(index)
    crops_array = (np.stack(crops) if crops
                   else np.zeros((0, image_size, image_size, 3), np.uint8))
    return VideoFaces(crops_array, np.array(indices, np.int64), missed, declared, tracker.tracked)


def write_video(path: Path, frames_rgb, *, fps: float = 25.0) -> None:
    """Writes uint8 [h, w, 3] RGB frames as an MP4 (fourcc mp4v) with OpenCV."""
    frames_rgb = iter(frames_rgb)
    first = next(frames_rgb)
    h, w = first.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} with the mp4v codec")
    try:
        writer.write(cv2.cvtColor(first, cv2.COLOR_RGB2BGR))
        for frame in frames_rgb:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
