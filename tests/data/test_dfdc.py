import json

import numpy as np
import pytest

from dfjax.config import DatasetSpec
from dfjax.data import load_dataset
from dfjax.data._images import SkipLog
from dfjax.data.dfdc import assign_splits, read_metadata
from dfjax.data.video import read_sampled_frames, sample_frame_indices


def test_sample_frame_indices_are_evenly_spaced():
    assert sample_frame_indices(300, 4).tolist() == [0, 100, 199, 299]
    assert sample_frame_indices(3, 32).tolist() == [0, 1, 2]
    idx = sample_frame_indices(300, 32)
    assert len(idx) == 32 and np.ptp(np.diff(idx)) <= 1


def test_read_sampled_frames(dfdc_tree):
    frames, declared = read_sampled_frames(dfdc_tree / "part_0" / "real_00000.mp4", 4)
    assert declared == 10 and [i for i, _ in frames] == [0, 3, 6, 9]
    assert frames[0][1].shape == (128, 128, 3)


@pytest.fixture(scope="module")
def dfdc_splits(dfdc_tree, tmp_path_factory):
    spec = DatasetSpec(name="dfdc", image_size=32, options={"frames_per_video": 5})
    return load_dataset(spec, data_dir=tmp_path_factory.mktemp("data"), manual_dir=dfdc_tree)


def test_frames_keep_their_video_and_no_video_leaks(dfdc_splits, dfdc_tree):
    report = dfdc_splits.info["report"]
    videos = {s: set(dfdc_splits.split(s).groups.tolist()) for s in ("train", "validation", "test")}
    assert not videos["train"] & videos["validation"] and not videos["train"] & videos["test"]
    assert not videos["validation"] & videos["test"]
    names = {s: {report["videos"][str(g)] for g in videos[s]} for s in videos}
    for s, files in names.items():  # a fake's original is in the fake's split
        for name in files:
            if "fake_" in name:
                assert name.replace("fake_", "real_") in files, (s, name)
    for s in videos:
        split = dfdc_splits.split(s)
        assert split.images.shape[1:] == (32, 32, 3)
        for g in videos[s]:
            rows = split.groups == g
            assert len(set(split.labels[rows].tolist())) == 1
            assert set(split.frames[rows].tolist()) <= {0, 2, 4, 7, 9}
            expected = 1 if "fake_" in report["videos"][str(g)] else 0
            assert split.labels[rows][0] == expected
    assert sum(len(v) for v in videos.values()) == 6  # 3 pairs; the 3 bad videos skipped


def test_bad_videos_are_reported_by_name(dfdc_splits):
    report = dfdc_splits.info["report"]
    text = json.dumps(report)
    assert report["skipped_before_reading"]["missing_video"]["files"] == ["part_1/gone.mp4"]
    assert "part_1/broken.mp4" in text and "undecodable_video" in text
    assert "part_1/noface.mp4" in text and "video_without_face" in text
    frames = sum(report[s]["frames"] for s in ("train", "validation", "test"))
    sampled = sum(report[s]["sampled_frames"] for s in ("train", "validation", "test"))
    assert sampled == 6 * 5 + 5  # 6 good videos and the faceless one, 5 frames each
    assert frames / (sampled - 5) > 0.6  # most frames of the rendered faces are detected


def test_metadata_test_split_is_kept(dfdc_tree):
    entries = read_metadata(dfdc_tree, SkipLog())
    entries = [e.__class__(e.relpath, e.path, e.label, e.cluster,
                           "test" if e.cluster.endswith("real_00001.mp4") else "train")
               for e in entries]
    splits = assign_splits(entries, seed=0)
    assert {e.relpath for e in splits["test"]} == {"part_0/real_00001.mp4",
                                                   "part_0/fake_00001.mp4"}
    assert splits["train"] and splits["validation"]


def test_missing_and_wrong_layout(tmp_path):
    spec = DatasetSpec(name="dfdc")
    with pytest.raises(FileNotFoundError, match="deepfake-detection-challenge"):
        load_dataset(spec, data_dir=tmp_path / "d", manual_dir=tmp_path / "nothing")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.mp4").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="metadata.json"):
        load_dataset(spec, data_dir=tmp_path / "d", manual_dir=tmp_path / "m")
    (tmp_path / "m" / "metadata.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_dataset(spec, data_dir=tmp_path / "d", manual_dir=tmp_path / "m")
