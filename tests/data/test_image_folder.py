import cv2
import numpy as np
import pytest

from dfjax.config import DatasetSpec
from dfjax.data import load_dataset
from tests.data.conftest import write_jpeg


def _tree(root, names=("real", "fake"), n=5):
    rng = np.random.default_rng(2)
    for name, bright in zip(names, (True, False)):
        for i in range(n):
            write_jpeg(root / name / f"{i}.png", rng, bright=bright)
    return root


def test_default_folders_split_60_20_20(tmp_path):
    root = _tree(tmp_path / "mine")
    splits = load_dataset(DatasetSpec(name="image_folder", image_size=16),
                          data_dir=tmp_path / "d", manual_dir=root)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (6, 2, 2)
    for split in (splits.train, splits.validation, splits.test):
        bright = split.images.reshape(len(split), -1).mean(axis=1) > 125
        np.testing.assert_array_equal(split.labels, np.where(bright, 0, 1))
    all_groups = np.concatenate([splits.train.groups, splits.validation.groups, splits.test.groups])
    assert len(set(all_groups.tolist())) == 10


def test_other_folder_names_and_wrong_layout(tmp_path):
    root = _tree(tmp_path / "mine", names=("pristine", "deepfake"))
    with pytest.raises(ValueError, match="pristine"):
        load_dataset(DatasetSpec(name="image_folder"), data_dir=tmp_path / "d", manual_dir=root)
    spec = DatasetSpec(name="image_folder", image_size=16,
                       options={"real": "pristine", "fake": "deepfake,other"})
    splits = load_dataset(spec, data_dir=tmp_path / "d", manual_dir=root)
    assert len(splits.train) == 6


def test_face_crop_skips_images_without_a_face(tmp_path):
    from dfjax.data.faces import FaceDetector
    from dfjax.data.synthetic_videos import render_pair

    root = tmp_path / "faces"
    real, fake, _ = render_pair(np.random.SeedSequence(0), clip_frames=5, frame_size=128,
                                strength=0.7, detector=FaceDetector())
    fake[4] = 90  # a blank image: no face
    for name, clip in (("real", real), ("fake", fake)):
        (root / name).mkdir(parents=True)
        for i, image in enumerate(clip):
            cv2.imwrite(str(root / name / f"{i}.png"), image[..., ::-1])
    spec = DatasetSpec(name="image_folder", image_size=32, options={"face_crop": True})
    splits = load_dataset(spec, data_dir=tmp_path / "d", manual_dir=root)
    total = sum(len(splits.split(s)) for s in ("train", "validation", "test"))
    report = splits.info["report"]
    no_face = sum(report[s]["skipped"].get("no_face", {"count": 0})["count"]
                  for s in ("train", "validation", "test"))
    assert no_face >= 1 and total + no_face == 10
    assert "fake/4.png" in str(report)
    assert total >= 6  # the rendered faces are found


def test_split_without_examples_is_a_clear_error(tmp_path):
    root = _tree(tmp_path / "mine", n=2)  # 2 per class: nothing left for validation
    with pytest.raises(ValueError, match="validation split has no usable examples"):
        load_dataset(DatasetSpec(name="image_folder", image_size=16),
                     data_dir=tmp_path / "d", manual_dir=root)
