import json

import numpy as np
import pytest

from dfjax.config import DatasetSpec
from dfjax.data import load_dataset
from dfjax.data.real_vs_fake import RealVsFake140kBuilder, kaggle_label_to_dfjax


def test_kaggle_label_is_inverted():
    assert kaggle_label_to_dfjax(1) == 0  # Kaggle 1 = real -> dfjax 0 = real
    assert kaggle_label_to_dfjax("0") == 1
    with pytest.raises(ValueError):
        kaggle_label_to_dfjax(2)


def test_loads_given_splits_with_labels_from_csv(kaggle_140k, tmp_path):
    spec = DatasetSpec(name="real_vs_fake_140k", image_size=32)
    splits = load_dataset(spec, data_dir=tmp_path / "data", manual_dir=kaggle_140k)
    # train: 4 real (1 truncated) + 4 fake (1 garbage) -> 3 + 3; valid/test 2 + 2.
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (6, 4, 4)
    for split in (splits.train, splits.validation, splits.test):
        assert split.images.shape[1:] == (32, 32, 3) and split.images.dtype == np.uint8
        bright = split.images.reshape(len(split), -1).mean(axis=1) > 125
        np.testing.assert_array_equal(split.labels, np.where(bright, 0, 1))  # real = bright
    report = splits.info["report"]["train"]["skipped"]
    assert report["truncated"]["files"][0].endswith("train/real/r000.jpg")
    assert report["undecodable"]["files"][0].endswith("train/fake/f001.jpg")
    assert report["missing"]["files"][0].endswith("train/real/gone.jpg")
    groups = np.concatenate([splits.train.groups, splits.validation.groups, splits.test.groups])
    assert len(np.unique(groups)) == len(groups)


def test_cap_is_balanced_and_deterministic(kaggle_140k, tmp_path):
    spec = DatasetSpec(name="real_vs_fake_140k", image_size=16, num_examples=5)
    a = load_dataset(spec, data_dir=tmp_path / "a", manual_dir=kaggle_140k)
    b = load_dataset(spec, data_dir=tmp_path / "b", manual_dir=kaggle_140k)
    assert len(a.train) == 3 and sorted(a.train.labels.tolist()) == [0, 0, 1]
    np.testing.assert_array_equal(a.train.images, b.train.images)


def test_folders_without_csv(kaggle_140k, tmp_path):
    for name in ("train.csv", "valid.csv", "test.csv"):
        (kaggle_140k / name).unlink()
    splits = load_dataset(DatasetSpec(name="real_vs_fake_140k", image_size=16),
                          data_dir=tmp_path / "d", manual_dir=kaggle_140k)
    assert len(splits.validation) == 4 and splits.info["report"]["test"]["source"].startswith(
        "folders")


@pytest.mark.parametrize("state", ["missing", "empty", "wrong"])
def test_missing_download_explains_what_to_get(state, tmp_path):
    manual = tmp_path / "manual"
    if state != "missing":
        manual.mkdir()
    if state == "wrong":
        (manual / "faces").mkdir()
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(DatasetSpec(name="real_vs_fake_140k"), data_dir=tmp_path / "d",
                     manual_dir=manual)
    message = str(info.value)
    assert "kaggle.com/datasets/xhlulu/140k-real-and-fake-faces" in message
    assert "real_vs_fake/real-vs-fake/" in message and "--manual-dir" in message


def test_failure_halfway_leaves_nothing_that_looks_complete(kaggle_140k, tmp_path, monkeypatch):
    spec = DatasetSpec(name="real_vs_fake_140k", image_size=16)
    original = RealVsFake140kBuilder.generate_split

    def dies_at_validation(self, split):
        if split == "validation":
            raise RuntimeError("killed halfway")
        yield from original(self, split)

    monkeypatch.setattr(RealVsFake140kBuilder, "generate_split", dies_at_validation)
    with pytest.raises(RuntimeError, match="killed halfway"):
        load_dataset(spec, data_dir=tmp_path / "d", manual_dir=kaggle_140k)
    builder = RealVsFake140kBuilder(spec=spec, data_dir=tmp_path / "d", manual_dir=kaggle_140k)
    assert not builder.is_prepared()
    monkeypatch.setattr(RealVsFake140kBuilder, "generate_split", original)
    splits = load_dataset(spec, data_dir=tmp_path / "d", manual_dir=kaggle_140k)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (6, 4, 4)
    assert json.loads(builder.report_path.read_text())["validation"]["examples"] == 4
