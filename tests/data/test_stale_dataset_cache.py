"""A prepared dataset copy made by other code (another data fingerprint) is never reused
silently: prepared again where its inputs are here, else used and reported stale."""

import json
import shutil

import numpy as np
import pytest

from dfjax import fingerprint
from dfjax.config import DatasetSpec
from dfjax.data import dataset_fingerprint, load_dataset
from dfjax.data._tfds import FINGERPRINT_FILE
from dfjax.runner.environment import provenance
from dfjax.training.detectors import Detector
from tests.data.conftest import write_jpeg

FACES = DatasetSpec(name="synthetic_faces", image_size=32, num_examples=40)


@pytest.fixture
def fresh_fingerprints():
    fingerprint.clear_cache()
    yield
    fingerprint.clear_cache()


def _change_code(monkeypatch, module):
    """As if `module`'s code had been edited (one statement added)."""
    original = fingerprint.read_source
    monkeypatch.setattr(fingerprint, "read_source", lambda m: original(m) + "\nCHANGED = 1\n"
                        if m == module else original(m))
    fingerprint.clear_cache()


def _fingerprint_file(data_dir, spec):
    return data_dir / spec.name / spec.digest() / FINGERPRINT_FILE


def test_a_generated_set_made_by_other_code_is_prepared_again(tmp_path, monkeypatch,
                                                              fresh_fingerprints):
    first = load_dataset(FACES, data_dir=tmp_path)
    assert "dataset_cache" not in first.info
    written = json.loads(_fingerprint_file(tmp_path, FACES).read_text())["fingerprint"]
    assert written == dataset_fingerprint(FACES, data_dir=tmp_path)

    _change_code(monkeypatch, "dfjax.data.face_render.camera")  # in synthetic_faces' scope
    logs = []
    again = load_dataset(FACES, data_dir=tmp_path, log=logs.append)
    assert len(logs) == 1 and logs[0].startswith("stale dataset cache")
    assert "preparing it again" in logs[0] and written in logs[0]
    assert again.info["dataset_cache"].startswith("prepared again")
    now = json.loads(_fingerprint_file(tmp_path, FACES).read_text())["fingerprint"]
    assert now == dataset_fingerprint(FACES, data_dir=tmp_path) != written
    assert not [p for p in (tmp_path / FACES.name).iterdir() if ".stale" in p.name]
    np.testing.assert_array_equal(again.test.images, first.test.images)  # same generator
    logs.clear()
    assert "dataset_cache" not in load_dataset(FACES, data_dir=tmp_path, log=logs.append).info
    assert logs == []


def test_a_derived_set_is_prepared_again_when_its_source_code_changes(tmp_path, monkeypatch,
                                                                      fresh_fingerprints):
    """self_blended's fingerprint includes its source's: a change to synthetic_faces' code
    makes both copies stale, and both are prepared again."""
    spec = DatasetSpec(name="self_blended", image_size=32, num_examples=40)
    load_dataset(spec, data_dir=tmp_path)
    before = dataset_fingerprint(spec, data_dir=tmp_path)
    _change_code(monkeypatch, "dfjax.data.synthetic_faces")
    assert dataset_fingerprint(spec, data_dir=tmp_path) != before
    logs = []
    again = load_dataset(spec, data_dir=tmp_path, log=logs.append)
    assert again.info["dataset_cache"].startswith("prepared again")
    stale_folders = [line.split(":")[0] for line in logs]
    assert any("synthetic_faces" in f for f in stale_folders)
    assert any("self_blended" in f for f in stale_folders)


def test_a_stale_copy_whose_inputs_are_gone_is_used_and_reported(tmp_path, monkeypatch,
                                                                 fresh_fingerprints):
    """A real set whose download is no longer here cannot be prepared again: the stale
    copy is used, and the log and `info["dataset_cache"]` say so."""
    rng = np.random.default_rng(2)
    manual = tmp_path / "download"
    for name, bright in (("real", True), ("fake", False)):
        for i in range(5):
            write_jpeg(manual / name / f"{i}.png", rng, bright=bright)
    spec = DatasetSpec(name="image_folder", image_size=16)
    first = load_dataset(spec, data_dir=tmp_path / "d", manual_dir=manual)
    shutil.rmtree(manual)
    _change_code(monkeypatch, "dfjax.data.image_folder")
    logs = []
    used = load_dataset(spec, data_dir=tmp_path / "d", manual_dir=manual, log=logs.append)
    assert used.info["dataset_cache"].startswith("stale (prepared by other code")
    assert "inputs are not here" in used.info["dataset_cache"]
    assert len(logs) == 1 and logs[0].startswith("warning: using a stale dataset cache")
    np.testing.assert_array_equal(used.train.images, first.train.images)
    # the rows scored on it say so (their environment block)
    detector = Detector(None, {}, [], 0.0, True)
    assert provenance(used, detector)["dataset_cache"] == used.info["dataset_cache"]
    assert "dataset_cache" not in provenance(first, detector)


def test_a_failed_preparation_puts_the_stale_copy_back(tmp_path, monkeypatch,
                                                       fresh_fingerprints):
    """Inputs that look present but cannot be prepared from: the stale copy is moved back
    and used, reported stale with the preparation's error."""
    rng = np.random.default_rng(3)
    manual = tmp_path / "download"
    for name, bright in (("real", True), ("fake", False)):
        for i in range(5):
            write_jpeg(manual / name / f"{i}.png", rng, bright=bright)
    spec = DatasetSpec(name="image_folder", image_size=16)
    first = load_dataset(spec, data_dir=tmp_path / "d", manual_dir=manual)
    shutil.rmtree(manual)
    manual.mkdir()
    (manual / "notes.txt").write_text("the images were moved")  # not empty, not usable
    _change_code(monkeypatch, "dfjax.data.image_folder")
    logs = []
    used = load_dataset(spec, data_dir=tmp_path / "d", manual_dir=manual, log=logs.append)
    assert "preparing it again failed" in used.info["dataset_cache"]
    assert logs[0].startswith("stale dataset cache") and logs[1].startswith("warning:")
    np.testing.assert_array_equal(used.test.images, first.test.images)
    assert not [p for p in (tmp_path / "d" / spec.name).iterdir() if ".stale" in p.name]
