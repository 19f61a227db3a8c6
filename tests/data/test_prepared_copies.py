"""A prepared copy serves a spec asking for fewer examples (nested datasets), and a spec
nothing serves gets a message listing the copies found and how they differ."""

import dataclasses
import json
import shlex

import numpy as np
import pytest

from dfjax.config import DatasetSpec
from dfjax.data import DATASETS, load_dataset, missing_data
from dfjax.data.base import SPLITS
from tests.data.conftest import write_jpeg


def _image_tree(root, n=6):
    rng = np.random.default_rng(5)
    for name, bright in (("real", True), ("fake", False)):
        for i in range(n):
            write_jpeg(root / name / f"{name}{i}.png", rng, bright=bright)
    return root


def _assert_same_splits(got, want):
    for split in SPLITS:
        g, w = got.split(split), want.split(split)
        np.testing.assert_array_equal(g.images, w.images)
        np.testing.assert_array_equal(g.labels, w.labels)
        np.testing.assert_array_equal(g.groups, w.groups)
        np.testing.assert_array_equal(g.frames, w.frames)


def _spec_folders(data_dir, name):
    return sorted(p.name for p in (data_dir / name).iterdir() if p.is_dir())


@pytest.mark.parametrize("name", ["image_folder", "real_vs_fake_140k", "covid19_xray"])
def test_larger_copy_gives_the_arrays_preparing_the_smaller_spec_gives(
        name, tmp_path, kaggle_140k, covid_tree):
    """Every nested dataset: a subset of a preparation at 10,000 examples equals, array for
    array, a preparation at 10 from the same download; no copy at 10 is written."""
    manual = {"image_folder": _image_tree(tmp_path / "mine"), "real_vs_fake_140k": kaggle_140k,
              "covid19_xray": covid_tree}[name]
    small = DatasetSpec(name=name, image_size=16, num_examples=10)
    large = DatasetSpec(name=name, image_size=16, num_examples=10_000)
    prepared_small = load_dataset(small, data_dir=tmp_path / "a", manual_dir=manual)
    load_dataset(large, data_dir=tmp_path / "b", manual_dir=manual)
    served = load_dataset(small, data_dir=tmp_path / "b")  # no manual folder needed
    _assert_same_splits(served, prepared_small)
    full = load_dataset(large, data_dir=tmp_path / "b")
    assert sum(map(len, (served.train, served.validation, served.test))) < sum(
        map(len, (full.train, full.validation, full.test)))  # the subset did cut
    assert served.info["subset_of"]["num_examples"] == 10_000
    assert _spec_folders(tmp_path / "b", name) == [large.digest()]


def test_prepare_default_size_then_a_smaller_run_finds_it(tmp_path):
    """The issue's steps: prepare image_folder at image size 64 with the default
    num_examples and a --manual-dir; smoke's 400 examples are then found without one."""
    manual = _image_tree(tmp_path / "mine")
    load_dataset(DatasetSpec(name="image_folder", image_size=64), data_dir=tmp_path / "d",
                 manual_dir=manual)
    run_spec = DatasetSpec(name="image_folder", image_size=64, num_examples=400)
    assert missing_data(run_spec, data_dir=tmp_path / "d") is None
    splits = load_dataset(run_spec, data_dir=tmp_path / "d")
    assert splits.train.images.shape[1:] == (64, 64, 3) and len(splits.train) > 0


def test_no_serving_copy_lists_the_copies_and_their_differences(tmp_path):
    """A copy at another image size, and one with fewer examples, serve nothing; the error
    says the manual folder is missing and names each copy's differing fields."""
    manual = _image_tree(tmp_path / "mine")
    data_dir = tmp_path / "d"
    other_size = DatasetSpec(name="image_folder", image_size=32, num_examples=20)
    fewer = DatasetSpec(name="image_folder", image_size=16, num_examples=4)
    for spec in (other_size, fewer):
        load_dataset(spec, data_dir=data_dir, manual_dir=manual)
    wanted = DatasetSpec(name="image_folder", image_size=16, num_examples=10)
    with pytest.raises(FileNotFoundError) as error:
        load_dataset(wanted, data_dir=data_dir)
    message = str(error.value)
    assert "the manual download folder does not exist" in message
    assert "dfjax data prepare image_folder --manual-dir DIR" in message
    assert f"{other_size.digest()}: image_size 32 (wanted 16), num_examples 20 (wanted 10)" \
        in message
    assert f"{fewer.digest()}: num_examples 4 (wanted 10)" in message
    assert missing_data(wanted, data_dir=data_dir) == message


def test_preparation_records_its_spec_and_backfills_an_old_copy(tmp_path):
    """spec.json holds the spec's dict after preparing; a copy without one (an older
    dfjax's) gets it the next time it is loaded."""
    manual = _image_tree(tmp_path / "mine")
    spec = DatasetSpec(name="image_folder", image_size=16, num_examples=10)
    load_dataset(spec, data_dir=tmp_path / "d", manual_dir=manual)
    spec_file = tmp_path / "d" / "image_folder" / spec.digest() / "spec.json"
    assert json.loads(spec_file.read_text()) == spec.to_dict()
    spec_file.unlink()
    load_dataset(spec, data_dir=tmp_path / "d")
    assert json.loads(spec_file.read_text()) == spec.to_dict()


def test_dfdc_is_not_served_by_a_larger_copy(tmp_path):
    """dfdc is not nested: a complete-looking copy differing only by more examples is not
    used for a smaller spec."""
    spec = DatasetSpec(name="dfdc", image_size=16, num_examples=10)
    larger = DatasetSpec(name="dfdc", image_size=16, num_examples=100)
    root = tmp_path / "dfdc" / larger.digest()
    (root / "dfdc_builder" / "1.0.0").mkdir(parents=True)
    (root / "dfdc_builder" / "1.0.0" / "dataset_info.json").write_text("{}")
    (root / "spec.json").write_text(json.dumps(larger.to_dict()))
    assert DATASETS.get("dfdc").serving_copy(spec, tmp_path) is None
    assert "num_examples 100 (wanted 10)" in missing_data(spec, data_dir=tmp_path)


def test_missing_data_of_generated_real_and_derived_datasets(tmp_path):
    """None for synthetic_faces (generated) and for a real set whose manual folder exists;
    the missing-folder message for one without; self_blended inherits its source's."""
    assert missing_data(DatasetSpec(name="synthetic_faces"), data_dir=tmp_path) is None
    covid = DatasetSpec(name="covid19_xray")
    message = missing_data(covid, data_dir=tmp_path)
    assert message.startswith("covid19_xray: the manual download folder does not exist")
    (tmp_path / "manual" / "covid19_xray").mkdir(parents=True)
    assert "the manual download folder is empty" in missing_data(covid, data_dir=tmp_path)
    (tmp_path / "manual" / "covid19_xray" / "Covid19-dataset").mkdir()
    assert missing_data(covid, data_dir=tmp_path) is None
    blended = DatasetSpec(name="self_blended", options={"source": "image_folder"})
    assert missing_data(blended, data_dir=tmp_path).startswith(
        "image_folder: the manual download folder does not exist")
    blended_synthetic = DatasetSpec(name="self_blended")
    assert missing_data(blended_synthetic, data_dir=tmp_path) is None


def test_the_command_in_the_message_prepares_what_was_asked_for(tmp_path):
    """The `dfjax data prepare` line of the missing-data message, run with DIR filled in,
    prepares exactly the spec asked for (size, count, options, data dir)."""
    from dfjax.cli import main

    manual = _image_tree(tmp_path / "mine")
    (manual / "real").rename(manual / "pristine")
    spec = DatasetSpec(name="image_folder", image_size=16, num_examples=10,
                       options={"real": "pristine"})
    data_dir = tmp_path / "d"
    message = missing_data(spec, data_dir=data_dir)
    line = next(x for x in message.splitlines() if x.startswith("  dfjax data prepare"))
    argv = shlex.split(line)[1:]
    argv[argv.index("DIR")] = str(manual)
    assert main(argv + ["--no-progress"]) == 0
    assert (data_dir / "image_folder" / spec.digest() / "spec.json").is_file()
    assert missing_data(spec, data_dir=data_dir) is None


def test_a_subset_leaving_a_split_empty_is_an_error_as_preparing_it_is(tmp_path):
    """num_examples=1 leaves validation empty: preparing it raises ValueError, and so does
    serving it from a larger copy (naming the split), instead of an empty split."""
    manual = _image_tree(tmp_path / "mine")
    tiny = DatasetSpec(name="image_folder", image_size=16, num_examples=1)
    with pytest.raises(ValueError, match="validation split"):
        load_dataset(tiny, data_dir=tmp_path / "a", manual_dir=manual)
    load_dataset(dataclasses.replace(tiny, num_examples=10), data_dir=tmp_path / "b",
                 manual_dir=manual)
    with pytest.raises(ValueError, match="image_folder: the validation split keeps no example"):
        load_dataset(tiny, data_dir=tmp_path / "b")
