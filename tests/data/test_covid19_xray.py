import numpy as np
import pytest

from dfjax.config import DatasetSpec
from dfjax.data import load_dataset


def _load(tmp_path, manual, **options):
    spec = DatasetSpec(name="covid19_xray", image_size=24, options=options)
    return load_dataset(spec, data_dir=tmp_path / "data", manual_dir=manual)


def test_binary_covid_is_positive_and_grayscale_becomes_rgb(covid_tree, tmp_path):
    splits = _load(tmp_path, covid_tree)
    # train: 5 Covid + 5 Normal, 20% of each (1) to validation; test 2 + 2.
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (8, 2, 4)
    for split in (splits.train, splits.validation, splits.test):
        assert split.images.shape[1:] == (24, 24, 3)
        assert np.all(split.images[..., 0] == split.images[..., 2])  # replicated gray
        bright = split.images.reshape(len(split), -1).mean(axis=1) > 125
        np.testing.assert_array_equal(split.labels, bright.astype(np.int32))  # Covid = 1
    assert sorted(splits.validation.labels.tolist()) == [0, 1]
    assert not set(splits.train.groups.tolist()) & set(splits.validation.groups.tolist())
    assert splits.info["report"]["train"]["skipped"]["excluded_class"]["count"] == 2


def test_three_classes_and_a_bad_file(covid_tree, tmp_path):
    (covid_tree / "Covid19-dataset/train/Viral Pneumonia/v0.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    splits = _load(tmp_path, covid_tree, classes=3)
    assert set(splits.test.labels.tolist()) == {0, 1, 2}
    skipped = splits.info["report"]["train"]["skipped"]
    assert sum(v["count"] for v in skipped.values()) == 1
    assert "v0.png" in str(skipped)


def test_empty_class_folder_is_reported(covid_tree, tmp_path):
    for f in (covid_tree / "Covid19-dataset/test/Normal").iterdir():
        f.unlink()
    splits = _load(tmp_path, covid_tree)
    assert splits.test.labels.tolist() == [1, 1]
    assert "test/Normal" in str(splits.info["report"]["test"]["skipped"]["empty_class_folder"])


def test_wrong_layout_and_bad_option(tmp_path):
    (tmp_path / "m" / "images").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="pranavraikokte/covid19-image-dataset"):
        _load(tmp_path, tmp_path / "m")
