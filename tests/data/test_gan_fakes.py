"""`gan_fakes`: the reals of synthetic_faces against samples of a DCGAN trained on the
train reals, at the same resolution; the GAN's losses kept with the dataset. Tiny: 32 px,
40 examples, a one-epoch GAN four channels wide."""

import json
from pathlib import Path

import numpy as np
import pytest

from dfjax.cli import main
from dfjax.config import DatasetSpec
from dfjax.data import DATASETS, load_dataset

SIZE = 32
OPTIONS = {"gan_epochs": 2, "gan_width": 4}
SPEC = DatasetSpec(name="gan_fakes", image_size=SIZE, num_examples=40, options=OPTIONS)
SOURCE = DatasetSpec(name="synthetic_faces", image_size=SIZE, num_examples=40)
SPLIT_NAMES = ("train", "validation", "test")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("gan_fakes_data")


@pytest.fixture(scope="module")
def splits(data_dir):
    return load_dataset(SPEC, data_dir=data_dir)


def test_each_split_pairs_the_source_reals_with_as_many_fakes_at_the_same_size(splits,
                                                                                data_dir):
    """Every split alternates real, fake; its reals are the source split's reals (same
    pixels, same groups); images are uint8 [n, 32, 32, 3] like the source's."""
    source = load_dataset(SOURCE, data_dir=data_dir)
    for name in SPLIT_NAMES:
        split, src = splits.split(name), source.split(name)
        reals = src.labels == 0
        assert len(split) == 2 * int(reals.sum()) > 0
        np.testing.assert_array_equal(split.labels[::2], 0)
        np.testing.assert_array_equal(split.labels[1::2], 1)
        np.testing.assert_array_equal(split.images[::2], src.images[reals])
        np.testing.assert_array_equal(split.groups[::2], src.groups[reals])
        assert split.images.dtype == np.uint8
        assert split.images.shape[1:] == src.images.shape[1:] == (SIZE, SIZE, 3)


def test_fakes_are_generated_images_each_its_own_group(splits):
    """Fakes are not copies of reals and vary; every fake has a group of its own, used by
    no real and by no other split."""
    groups = {name: splits.split(name).groups for name in SPLIT_NAMES}
    real_groups = set(np.concatenate([g[::2] for g in groups.values()]).tolist())
    fake_groups = [g[1::2].tolist() for g in groups.values()]
    everything = [g for gs in fake_groups for g in gs]
    assert len(set(everything)) == len(everything)
    assert not set(everything) & real_groups
    test = splits.test
    assert test.images[1::2].std() > 0
    assert not np.array_equal(test.images[1::2], test.images[::2])


def test_the_gan_history_is_kept_with_the_dataset(splits):
    """report['gan']['history'] has one record per GAN epoch with finite D and G losses,
    and the GAN saw only the train reals."""
    gan = splits.info["report"]["gan"]
    assert [h["epoch"] for h in gan["history"]] == [1, 2]
    for h in gan["history"]:
        assert np.isfinite(h["d_loss"]) and np.isfinite(h["g_loss"]) and h["d_loss"] > 0
    assert gan["train_reals"] == int((splits.train.labels == 0).sum())


def test_same_spec_same_dataset_in_another_folder(splits, tmp_path):
    """Prepared again from scratch elsewhere: identical images, labels, groups and GAN
    losses (everything follows from the spec's seed)."""
    again = load_dataset(SPEC, data_dir=tmp_path)
    for name in SPLIT_NAMES:
        a, b = splits.split(name), again.split(name)
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.groups, b.groups)
    losses = [(h["d_loss"], h["g_loss"]) for h in splits.info["report"]["gan"]["history"]]
    assert losses == [(h["d_loss"], h["g_loss"])
                      for h in again.info["report"]["gan"]["history"]]


def test_data_show_draws_it(splits, data_dir, tmp_path):
    """`dfjax data show gan_fakes` writes its picture (from the prepared copy)."""
    out = tmp_path / "gan.png"
    argv = ["data", "show", "gan_fakes", "--image-size", str(SIZE), "--num-examples", "40",
            "--data-dir", str(data_dir), "--out", str(out), "--no-progress"]
    for key, value in OPTIONS.items():
        argv += ["--option", f"{key}={value}"]
    assert main(argv) == 0
    assert out.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("options, message", [
    ({"real": "gan_fakes"}, "itself"),
    ({"gan_epochs": 0}, "gan_epochs must be an integer >= 1"),
    ({"gan_width": "wide"}, "gan_width"),
])
def test_bad_options_are_refused_by_name(options, message):
    with pytest.raises(ValueError, match=message):
        DATASETS.resolve("gan_fakes", options)


def test_an_image_size_the_generator_cannot_make_is_refused_before_any_work(tmp_path):
    """48 px is no 4 * 2**k: a ValueError naming gan_fakes and the size, and nothing is
    written."""
    spec = DatasetSpec(name="gan_fakes", image_size=48, num_examples=40)
    with pytest.raises(ValueError, match=r"gan_fakes: image_size must be 4 \* 2\*\*k.*got 48"):
        load_dataset(spec, data_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_preparation_report_on_disk_holds_the_history(splits):
    """The history is in the prepared copy's preparation_report.json, beside the data."""
    on_disk = json.loads(Path(splits.info["report_path"]).read_text())
    assert on_disk["gan"]["history"] == splits.info["report"]["gan"]["history"]
