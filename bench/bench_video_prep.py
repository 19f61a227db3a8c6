"""Video preparation speed: decode a DFDC-like 1080p clip, find and crop the face.

Not a test: run `python bench/bench_video_prep.py` (about a minute, most of it writing
the 1080p MP4). It writes a 1920x1080, 300-frame mp4v clip with a rendered face
drifting across a textured background (in a temporary directory), then times
`dfjax.data.video.video_face_crops` with 32 sampled frames at several detection
scales, with and without tracking (searching near the previous box first), and one
reference: seeking to each sampled frame and running the cascade on the full frame
(timed on a few frames, extrapolated to 32). Prints a JSON report; DFDC's target is
at most 4 s per video.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from dfjax.data.face_render import render_faces
from dfjax.data.faces import FaceDetector
from dfjax.data.synthetic_videos import detectable_start
from dfjax.data.video import sample_frame_indices, video_face_crops, write_video


def make_clip(path: Path, *, frames: int, width: int = 1920, height: int = 1080,
              face_px: int = 360, seed: int = 0) -> dict:
    """Writes the clip; returns the face's true centre per frame."""
    rng = np.random.default_rng(seed)
    identity, appearance, _ = detectable_start(rng, FaceDetector(), 192)
    params = {**identity, **appearance}
    face = render_faces(params, face_px, np.random.default_rng(1))["image"][0]
    face = (face * 255).astype(np.uint8)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    background = np.stack([90 + 60 * xx / width, 110 + 40 * yy / height,
                           140 - 50 * xx / width], -1)
    background += cv2.resize(rng.uniform(-25, 25, (9, 16, 3)).astype(np.float32), (width, height))
    background = np.clip(background, 0, 255).astype(np.uint8)
    t = np.linspace(0, 1, frames)
    xs = (200 + t * (width - face_px - 400)).astype(int)
    ys = (260 + 200 * np.sin(t * np.pi * 2)).astype(int)
    noise = rng.integers(-4, 5, (8, height, width, 3)).astype(np.int16)

    def frame_iter():
        for i in range(frames):
            frame = background.copy()
            frame[ys[i]:ys[i] + face_px, xs[i]:xs[i] + face_px] = face
            yield np.clip(frame.astype(np.int16) + noise[i % 8], 0, 255).astype(np.uint8)

    write_video(path, frame_iter(), fps=30.0)
    return {"centres": np.stack([xs + face_px / 2, ys + face_px / 2], 1), "face_px": face_px}


class _NoTracking(FaceDetector):
    def detect_near(self, image, previous, **kwargs):
        return None


def seek_reference(path: Path, *, frames_per_video: int, timed_frames: int = 3) -> dict:
    """Seek to sampled frames, cascade on the full-resolution frame; extrapolated to 32."""
    capture = cv2.VideoCapture(str(path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    detector = FaceDetector(detect_size=10_000)
    indices = sample_frame_indices(count, frames_per_video)[:timed_frames]
    start, found = time.perf_counter(), 0
    for index in indices:
        capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, frame = capture.read()
        found += ok and detector.detect(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)) is not None
    capture.release()
    per_frame = (time.perf_counter() - start) / len(indices)
    return {"seconds_per_frame": round(per_frame, 3),
            "seconds_per_video_extrapolated": round(per_frame * frames_per_video, 2),
            "detection_rate": found / len(indices), "timed_frames": len(indices)}


def run(args) -> dict:
    out = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                       "opencv": cv2.__version__, "load_avg": os.getloadavg()}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        start = time.perf_counter()
        truth = make_clip(path, frames=args.frames)
        out["write_seconds"] = round(time.perf_counter() - start, 2)
        out["file_mb"] = round(path.stat().st_size / 2**20, 2)
        indices = sample_frame_indices(args.frames, args.sample)
        results = []
        for size in args.detect_sizes:
            for tracking in (True, False):
                cls = FaceDetector if tracking else _NoTracking
                detector = cls(detect_size=size)
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    faces = video_face_crops(path, frames_per_video=args.sample,
                                             image_size=args.image_size, detector=detector)
                    times.append(time.perf_counter() - start)
                results.append({
                    "detect_size": size, "tracking": tracking,
                    "seconds_per_video": round(min(times), 3),
                    "detection_rate": round(len(faces.crops) / len(indices), 3),
                    "tracked_frames": faces.tracked})
        out["video_face_crops"] = results
        start = time.perf_counter()
        capture = cv2.VideoCapture(str(path))
        while capture.grab():
            pass
        capture.release()
        out["grab_all_frames_seconds"] = round(time.perf_counter() - start, 3)
        out["seek_full_frame_reference"] = seek_reference(path, frames_per_video=args.sample)
        del truth
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--sample", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--detect-sizes", type=int, nargs="+", default=[320, 480, 640])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args()
    report = run(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
