"""`synthetic_videos`: the embedded default for the video path -- rendered talking-head
clips written as real MP4 files in the DFDC layout and read back by the `dfdc` code.

Each pair is one identity filmed once: a *real* clip whose pose drifts over
`clip_frames` frames (translation, roll, scale, yaw), and a *fake* clip of the very
same frames with another person's inner face blended in (`face_render.face_swap`,
donor rendered in the target's pose). The fake's blending boundary flickers: its
strength and the mask's position are redrawn every frame -- the temporal trace video
detectors use. Both clips go through the same camera (blur, noise, JPEG) and the same
MP4 (mp4v) encoding. The files land in `<data_dir>/synthetic_videos/<digest>/videos/`
with a metadata.json (the fake's "original" is its real clip), and preparation then
runs `DfdcBuilder` on that folder: frame sampling, Haar face detection, cropping,
splits by video cluster -- so the embedded pipeline is exactly the real one.

The renderer's cartoon faces are not all found by the Haar cascade (about half of
random identities, fewer for dark skin and some hair styles). An identity (and a fake's
donor, rendered in the target's pose) is therefore re-drawn (up to `_MAX_TRIES`
times) until its first frame is detected; the report gives the redraw count and the
detection rate over all sampled frames, per label. This biases the identities towards
ones the cascade sees (lighter skin, in our checks) -- the bias a Haar-cascade DFDC
pipeline has too.

Options: `clip_frames` (16), `frame_size` (160 px), `frames_per_video` (8),
`difficulty` (as synthetic_faces), plus DfdcBuilder's. `spec.num_examples` is the
number of face crops wanted: ceil(num_examples / frames_per_video / 2) pairs.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from dfjax.config import DatasetSpec
from dfjax.data.dfdc import DfdcBuilder
from dfjax.data.face_render import (
    DEFAULT_DIFFICULTY,
    SCENE_KEYS,
    artifact_strength,
    camera,
    face_swap,
    render_faces,
    sample_appearances,
    sample_identities,
)
from dfjax.data.faces import FaceDetector
from dfjax.data.video import write_video

DEFAULT_CLIP_FRAMES = 16
DEFAULT_FRAME_SIZE = 160
DEFAULT_FRAMES_PER_VIDEO = 8
FACE_SCALE = 0.72  # faces fill less of a video frame than of a face crop
_MAX_TRIES = 12


def _frame_params(identity: dict, appearance: dict, rng: np.random.Generator, frames: int
                  ) -> dict[str, np.ndarray]:
    """Per-frame parameters [frames]: the identity held, the pose drifting linearly."""
    params = {k: np.repeat(v[:1], frames, axis=0) for k, v in {**identity, **appearance}.items()}
    t = np.linspace(0.0, 1.0, frames, dtype=np.float32)
    params["tx"] = params["tx"] + t * rng.uniform(-0.1, 0.1)
    params["ty"] = params["ty"] + t * rng.uniform(-0.06, 0.06)
    params["angle"] = params["angle"] + t * rng.uniform(-0.12, 0.12)
    params["yaw"] = params["yaw"] + t * rng.uniform(-0.04, 0.04)
    params["scale"] = params["scale"] * FACE_SCALE * (1.0 + t * rng.uniform(-0.06, 0.06))
    return {k: v.astype(np.float32) for k, v in params.items()}


def _render_frames(params: dict, size: int, seed: np.random.SeedSequence) -> dict[str, Any]:
    """Renders each frame with the same texture stream (static skin/background texture)."""
    outs = [render_faces({k: v[i:i + 1] for k, v in params.items()}, size,
                         np.random.default_rng(seed)) for i in range(len(params["angle"]))]
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def detectable_start(rng: np.random.Generator, detector: FaceDetector, size: int
                     ) -> tuple[dict, dict, int]:
    """(identity, appearance, redraws): the first drawn identity whose face is detected."""
    for tries in range(_MAX_TRIES):
        identity, appearance = sample_identities(rng, 1), sample_appearances(rng, 1)
        params = {**identity, **appearance, "scale": appearance["scale"] * FACE_SCALE}
        image = render_faces(params, size, np.random.default_rng(0))["image"][0]
        if detector.detect((image * 255).astype(np.uint8)) is not None:
            return identity, appearance, tries
    return identity, appearance, _MAX_TRIES


def detectable_donor(rng: np.random.Generator, params: dict, detector: FaceDetector, size: int
                     ) -> tuple[dict, int]:
    """(donor identity without background keys, redraws): the first donor whose face,
    rendered in the target's first-frame pose, is detected -- so fakes are not harder
    to detect than reals (which would tie the detection rate to the label)."""
    first = {k: v[:1] for k, v in params.items()}
    for tries in range(_MAX_TRIES):
        donor = {k: v for k, v in sample_identities(rng, 1).items() if k not in SCENE_KEYS}
        image = render_faces({**first, **donor}, size, np.random.default_rng(0))["image"][0]
        if detector.detect((image * 255).astype(np.uint8)) is not None:
            return donor, tries
    return donor, _MAX_TRIES


def render_pair(seed: np.random.SeedSequence, *, clip_frames: int, frame_size: int,
                strength: float, detector: FaceDetector) -> tuple[np.ndarray, np.ndarray, int]:
    """(real clip, fake clip, redraws): uint8 [clip_frames, s, s, 3] each."""
    streams = seed.spawn(4)
    rng = np.random.default_rng(streams[0])
    identity, appearance, redraws = detectable_start(rng, detector, frame_size)
    params = _frame_params(identity, appearance, rng, clip_frames)
    target = _render_frames(params, frame_size, streams[1])
    donor_identity, donor_redraws = detectable_donor(rng, params, detector, frame_size)
    donor_identity = {k: np.repeat(v, clip_frames, axis=0) for k, v in donor_identity.items()}
    donor = _render_frames({**params, **donor_identity}, frame_size, streams[1])["image"]
    flicker = np.clip(strength * (1.0 + 0.5 * rng.standard_normal(clip_frames)), 0.05, 1.0)
    mask_params = {**params, "yaw": params["yaw"] + rng.normal(0, 0.015, clip_frames)
                   .astype(np.float32)}
    # no exposure jump: the video swaps keep synthetic_faces 1.0.0's subtler traces
    fake = face_swap(target, donor.copy(), mask_params, flicker.astype(np.float32), rng,
                     exposure=0.0)
    camera_seed = streams[2]
    real_clip = camera(target["image"], np.random.default_rng(camera_seed))
    fake_clip = camera(fake, np.random.default_rng(camera_seed))
    return real_clip, fake_clip, redraws + donor_redraws


def write_synthetic_videos(directory: Path, *, num_pairs: int, clip_frames: int = 16,
                           frame_size: int = DEFAULT_FRAME_SIZE, seed: int = 0,
                           difficulty: float = DEFAULT_DIFFICULTY, fps: float = 25.0
                           ) -> dict[str, Any]:
    """Writes `num_pairs` real/fake MP4 pairs and a metadata.json into `directory`.

    Returns generation facts (pairs, redraws, seconds). Same arguments, same files'
    frames (MP4 bytes may differ across OpenCV builds).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    detector, strength = FaceDetector(), artifact_strength(difficulty)
    metadata, redraws, start = {}, 0, time.perf_counter()
    for i, pair_seed in enumerate(np.random.SeedSequence([seed, 7]).spawn(num_pairs)):
        real_clip, fake_clip, tries = render_pair(pair_seed, clip_frames=clip_frames,
                                                  frame_size=frame_size, strength=strength,
                                                  detector=detector)
        redraws += tries
        real_name, fake_name = f"real_{i:05d}.mp4", f"fake_{i:05d}.mp4"
        write_video(directory / real_name, real_clip, fps=fps)
        write_video(directory / fake_name, fake_clip, fps=fps)
        metadata[real_name] = {"label": "REAL", "split": "train", "original": None}
        metadata[fake_name] = {"label": "FAKE", "split": "train", "original": real_name}
    (directory / "metadata.json").write_text(json.dumps(metadata, indent=1))
    return {"pairs": num_pairs, "identity_redraws": redraws, "clip_frames": clip_frames,
            "frame_size": frame_size, "seconds": round(time.perf_counter() - start, 3)}


class SyntheticVideosBuilder(DfdcBuilder, skip_registration=True):
    """Writes synthetic MP4s in the DFDC layout, then prepares them as `dfdc` does."""

    description = ("Rendered face clips with pose drift, written as MP4 in the DFDC layout; "
                   "fakes are face swaps whose blending boundary flickers frame to frame.")
    homepage = ""
    OPTIONS = {**DfdcBuilder.OPTIONS, "frames_per_video": DEFAULT_FRAMES_PER_VIDEO,
               "clip_frames": DEFAULT_CLIP_FRAMES, "frame_size": DEFAULT_FRAME_SIZE,
               "difficulty": DEFAULT_DIFFICULTY}

    def __init__(self, *, spec: DatasetSpec, data_dir: Path, manual_dir: Path | None = None):
        del manual_dir  # the videos are made, not downloaded
        root = Path(data_dir) / spec.name / spec.digest()
        super().__init__(spec=spec, data_dir=data_dir, manual_dir=root / "videos")

    def before_generate(self) -> None:
        videos = self.manual_path
        facts_path = videos / "generation.json"
        if not facts_path.exists():  # write beside, rename when complete
            partial = videos.with_name("videos.incomplete")
            shutil.rmtree(partial, ignore_errors=True)
            shutil.rmtree(videos, ignore_errors=True)
            num_pairs = max(3, -(-self.spec.num_examples // (2 * self.frames_per_video)))
            facts = write_synthetic_videos(
                partial / "part_0", num_pairs=num_pairs,
                clip_frames=int(self.options["clip_frames"]),
                frame_size=int(self.options["frame_size"]),
                seed=self.spec.seed, difficulty=float(self.options["difficulty"]))
            (partial / "generation.json").write_text(json.dumps(facts))
            partial.rename(videos)
        self.report["synthetic"] = json.loads(facts_path.read_text())
        super().before_generate()

