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
import math
from pathlib import Path

import cv2
import numpy as np

from dfjax.data.faces import DEFAULT_MARGIN, FaceDetector, FaceTracker, crop_face

MAX_VIDEO_FRAMES = 100_000  # ~1 hour at 25 fps; a video declaring more is refused
MAX_FRAME_PIXELS = 1 << 25  # 8K (7680 x 4320) fits; a larger declared frame is refused
_VIDEO_FORMATS = "MP4/MOV, Matroska/WebM, AVI, MPEG-PS/TS or FLV"


class VideoDecodeError(ValueError):
    """The file is not a video OpenCV can open, or no frame of it decodes."""


class VideoTooLargeError(VideoDecodeError):
    """The video declares more than MAX_VIDEO_FRAMES frames or MAX_FRAME_PIXELS pixels."""


def is_video_container(head: bytes) -> bool:
    """True if a file's first bytes (>= 189 for MPEG-TS) start a container FFmpeg should
    read: MP4/MOV (ISO BMFF), Matroska/WebM, AVI, MPEG-PS/TS or FLV. Anything else -- an
    HLS or concat playlist named .mp4, which would make FFmpeg open other files or
    URLs -- is refused before FFmpeg sees it."""
    return (head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide")
            or head[:4] == b"\x1a\x45\xdf\xa3"
            or (head[:4] == b"RIFF" and head[8:12] == b"AVI ")
            or head[:4] == b"\x00\x00\x01\xba"
            or (len(head) > 188 and head[0] == 0x47 and head[188] == 0x47)
            or head[:3] == b"FLV")


def open_video(path: Path) -> cv2.VideoCapture:
    """An opened FFmpeg capture of a regular file whose first bytes are a video container
    (`is_video_container`), by its absolute path (so no name is taken for a protocol
    such as `concat:`). Raises VideoDecodeError naming the file otherwise."""
    path = Path(path)
    try:
        if not path.is_file():
            raise VideoDecodeError(f"{path} is not a regular file")
        with open(path, "rb") as f:
            head = f.read(189)
        path = path.resolve()
    except (OSError, RuntimeError, ValueError) as e:
        raise VideoDecodeError(f"cannot read {path}: {e}") from None
    if not is_video_container(head):
        raise VideoDecodeError(f"{path} is not a {_VIDEO_FORMATS} file")
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture.release()
        raise VideoDecodeError(f"OpenCV cannot open {path}")
    return capture


def _declared(capture: cv2.VideoCapture, prop: int) -> int:
    value = capture.get(prop)
    return int(value) if math.isfinite(value) and value > 0 else 0


def sample_frame_indices(num_frames: int, n: int) -> np.ndarray:
    """int64 [min(n, num_frames)]: n indices spread evenly over [0, num_frames - 1]."""
    if num_frames <= 0:
        return np.zeros(0, np.int64)
    if num_frames <= n:
        return np.arange(num_frames, dtype=np.int64)
    return np.unique(np.round(np.linspace(0, num_frames - 1, n)).astype(np.int64))


def frame_count(path: Path) -> int:
    """The frame count the container declares (0 if it cannot be opened)."""
    try:
        capture = open_video(path)
    except VideoDecodeError:
        return 0
    try:
        return _declared(capture, cv2.CAP_PROP_FRAME_COUNT)
    finally:
        capture.release()


def read_sampled_frames(path: Path, frames_per_video: int
                        ) -> tuple[list[tuple[int, np.ndarray]], int]:
    """Decodes the sampled frames of a video.

    Returns:
      ([(frame_index, uint8 [h, w, 3] RGB), ...], declared frame count). Frames past a
      broken point (or past the real end of a video declaring too many) are missing from
      the list. Raises VideoDecodeError naming the file when nothing decodes, and
      VideoTooLargeError before decoding when the container declares more than
      MAX_VIDEO_FRAMES frames or frames over MAX_FRAME_PIXELS pixels; so at most
      MAX_VIDEO_FRAMES frames are ever grabbed.
    """
    capture = open_video(path)
    try:
        declared = _declared(capture, cv2.CAP_PROP_FRAME_COUNT)
        if declared <= 0:
            raise VideoDecodeError(f"{path} declares no frames")
        if declared > MAX_VIDEO_FRAMES:
            raise VideoTooLargeError(f"{path} declares {declared} frames, over the limit "
                                     f"of {MAX_VIDEO_FRAMES}")
        pixels = (_declared(capture, cv2.CAP_PROP_FRAME_WIDTH)
                  * _declared(capture, cv2.CAP_PROP_FRAME_HEIGHT))
        if pixels > MAX_FRAME_PIXELS:
            raise VideoTooLargeError(f"{path} declares frames of {pixels} pixels, over the "
                                     f"limit of {MAX_FRAME_PIXELS}")
        wanted = sample_frame_indices(declared, frames_per_video)
        out, want = [], 0
        for index in range(int(wanted[-1]) + 1):
            if not capture.grab():
                break
            if index == wanted[want]:
                ok, frame = capture.retrieve()
                if ok and frame is not None and frame.ndim == 3 and frame.shape[2] == 3:
                    out.append((index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
                want += 1
        if not out:
            raise VideoDecodeError(f"no frame of {path} decodes")
        return out, declared
    except cv2.error as e:
        raise VideoDecodeError(f"OpenCV fails on {path}: {str(e).strip()[:200]}") from None
    finally:
        capture.release()


@dataclasses.dataclass
class VideoFaces:
    """Face crops of one video: crops uint8 [n, s, s, 3], their frame indices [n],
    the sampled frames without a detected face, the declared frame count, and the
    sampled frames that did not decode (past a broken point or the real end)."""

    crops: np.ndarray
    frame_indices: np.ndarray
    missed_frames: list[int]
    num_frames: int
    tracked: int
    undecoded_frames: list[int] = dataclasses.field(default_factory=list)


def video_face_crops(path: Path, *, frames_per_video: int, image_size: int,
                     detector: FaceDetector | None = None, margin: float = DEFAULT_MARGIN
                     ) -> VideoFaces:
    """Samples frames, finds the largest face in each (tracking it), crops and resizes.

    A sampled frame without a face yields no crop and is listed in `missed_frames`; one
    that does not decode is listed in `undecoded_frames`. Raises VideoDecodeError (see
    `read_sampled_frames`).
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
    decoded = {index for index, _ in frames}
    undecoded = [int(i) for i in sample_frame_indices(declared, frames_per_video)
                 if int(i) not in decoded]
    return VideoFaces(crops_array, np.array(indices, np.int64), missed, declared,
                      tracker.tracked, undecoded)


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
