import json

import numpy as np

from dfjax.config import DatasetSpec
from dfjax.data import load_dataset


def test_written_as_mp4_in_dfdc_layout_and_read_back(tmp_path):
    spec = DatasetSpec(name="synthetic_videos", image_size=32, num_examples=40,
                       options={"clip_frames": 8, "frame_size": 128, "frames_per_video": 4})
    splits = load_dataset(spec, data_dir=tmp_path)
    videos = tmp_path / "synthetic_videos" / spec.digest() / "videos"
    meta = json.loads((videos / "part_0" / "metadata.json").read_text())
    assert len(meta) == 10 and all((videos / "part_0" / n).stat().st_size > 1000 for n in meta)
    report = splits.info["report"]
    assert report["synthetic"]["pairs"] == 5
    groups = [set(splits.split(s).groups.tolist()) for s in ("train", "validation", "test")]
    assert not groups[0] & groups[1] and not groups[0] & groups[2] and not groups[1] & groups[2]
    frames = sum(len(splits.split(s)) for s in ("train", "validation", "test"))
    sampled = sum(report[s]["sampled_frames"] for s in ("train", "validation", "test"))
    assert sampled == 40 and frames / sampled > 0.6  # most rendered frames are detected
    assert set(splits.train.labels.tolist()) == {0, 1}
    again = load_dataset(spec, data_dir=tmp_path)  # prepared once, reused
    np.testing.assert_array_equal(again.test.images, splits.test.images)


def test_fake_boundary_flickers_more_than_real(tmp_path):
    from dfjax.data.faces import FaceDetector
    from dfjax.data.synthetic_videos import render_pair

    real, fake, _ = render_pair(np.random.SeedSequence(1), clip_frames=6, frame_size=96,
                                strength=0.7, detector=FaceDetector())
    assert real.shape == fake.shape == (6, 96, 96, 3)
    change = lambda clip: np.abs(np.diff(clip.astype(np.float32), axis=0)).mean()  # noqa: E731
    assert change(fake) > change(real)
