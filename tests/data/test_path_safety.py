"""Paths named by label files and folder listings never lead outside the dataset root:
`..`, absolute paths and symlinks leading out are skipped by name and never read."""

import csv
import json
import os

import numpy as np
import pytest

from dfjax.config import DatasetSpec
from dfjax.data import _images, load_dataset
from dfjax.data._images import SkipLog, contained_path, list_images
from dfjax.data.dfdc import read_metadata
from tests.data.conftest import write_jpeg


def test_contained_path_refuses_every_way_out(tmp_path):
    """`..` out, absolute, a symlink out, a symlink loop, NUL, empty and non-strings are
    refused with a reason; `..` that stays inside and a symlink inside are allowed."""
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.jpg").write_bytes(b"x")
    (tmp_path / "secret.jpg").write_bytes(b"s")
    os.symlink(tmp_path / "secret.jpg", root / "a" / "out.jpg")
    os.symlink(root / "a" / "x.jpg", root / "a" / "in.jpg")
    os.symlink(tmp_path, root / "up")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    refused = {"../secret.jpg": "outside_root", "a/../../secret.jpg": "outside_root",
               str(tmp_path / "secret.jpg"): "outside_root", "/etc/passwd": "outside_root",
               "a/out.jpg": "outside_root", "up/secret.jpg": "outside_root",
               "loop1": "bad_path", "a/x\x00.jpg": "bad_path", "": "bad_path", " ": "bad_path",
               ".": "bad_path", None: "bad_path", 3: "bad_path"}
    for name, reason in refused.items():
        assert contained_path(root, name) == (None, reason), name
    assert contained_path(root, "a/../a/x.jpg") == ((root / "a" / "x.jpg").resolve(), None)
    assert contained_path(root, "a/in.jpg") == ((root / "a" / "x.jpg").resolve(), None)
    assert contained_path(root, "a/missing.jpg")[1] is None  # absence is read_image's call


def test_list_images_leaves_out_symlinks_leading_outside(tmp_path):
    """A symlinked image pointing out of its folder is logged "outside_root", not listed;
    one pointing to a sibling is listed; a symlinked folder is followed."""
    rng = np.random.default_rng(0)
    outside = write_jpeg(tmp_path / "elsewhere" / "private.jpg", rng, bright=True)
    folder = tmp_path / "data" / "real"
    write_jpeg(folder / "a.jpg", rng, bright=True)
    os.symlink(outside, folder / "leak.jpg")
    os.symlink(folder / "a.jpg", folder / "again.jpg")
    os.symlink(tmp_path / "elsewhere", tmp_path / "data" / "linked")
    skips = SkipLog()
    assert [p.name for p in list_images(folder, skips)] == ["a.jpg", "again.jpg"]
    assert skips.as_dict() == {"outside_root": {"count": 1, "files": [str(folder / "leak.jpg")]}}
    assert [p.name for p in list_images(tmp_path / "data" / "linked")] == ["private.jpg"]


@pytest.fixture()
def reads(monkeypatch):
    """The resolved path of every file read_image opens during a test."""
    opened = []
    original = _images.read_image

    def recording(path, **kwargs):
        opened.append(os.path.realpath(path))
        return original(path, **kwargs)

    monkeypatch.setattr(_images, "read_image", recording)
    return opened


def test_kaggle_csv_cannot_pull_in_images_from_outside(kaggle_140k, tmp_path, reads):
    """The issue's bug: CSV rows naming `../../../x.jpg`, an absolute path, and a symlink
    leading out are skipped as "outside_root" with their rows, and never read; the
    train split is the 6 good images it was."""
    rng = np.random.default_rng(9)
    stray = write_jpeg(tmp_path / "stray" / "x.jpg", rng, bright=True)
    images = kaggle_140k / "real_vs_fake" / "real-vs-fake"
    os.symlink(stray, images / "train" / "real" / "linked.jpg")
    rows = [[100, "", "", 1, "real", "../../../stray/x.jpg"],
            [101, "", "", 1, "real", str(stray)],
            [102, "", "", 1, "real", "train/real/linked.jpg"]]
    with open(kaggle_140k / "train.csv", "a", newline="") as f:
        csv.writer(f).writerows(rows)
    splits = load_dataset(DatasetSpec(name="real_vs_fake_140k", image_size=16),
                          data_dir=tmp_path / "d", manual_dir=kaggle_140k)
    assert len(splits.train) == 6
    skipped = splits.info["report"]["train"]["skipped"]["outside_root"]
    assert skipped["count"] == 3
    assert [f.split(" ")[0] for f in skipped["files"]] == ["train.csv:11", "train.csv:12",
                                                          "train.csv:13"]
    assert "../../../stray/x.jpg" in skipped["files"][0]
    assert reads and all(not p.startswith(str(tmp_path / "stray")) for p in reads)


def test_kaggle_image_in_two_splits_is_dropped_from_both(kaggle_140k, tmp_path):
    """A test.csv row naming a train image: the image leaks into neither split and is
    logged as "in_two_splits" in both."""
    with open(kaggle_140k / "test.csv", "a", newline="") as f:
        csv.writer(f).writerow([99, "", "", 0, "fake", "train/fake/f000.jpg"])
    splits = load_dataset(DatasetSpec(name="real_vs_fake_140k", image_size=16),
                          data_dir=tmp_path / "d", manual_dir=kaggle_140k)
    assert (len(splits.train), len(splits.test)) == (5, 4)
    for split in ("train", "test"):
        entry = splits.info["report"][split]["skipped"]["in_two_splits"]
        assert entry["count"] == 1 and entry["files"][0].endswith("train/fake/f000.jpg")


def test_dfdc_metadata_names_cannot_lead_outside(tmp_path, monkeypatch):
    """metadata.json keys `../x.mp4`, an absolute path and a symlink out are skipped by
    name ("outside_root"); a key with a NUL is "bad_path"; no video outside is opened."""
    root, outside = tmp_path / "dfdc", tmp_path / "outside"
    (root / "part").mkdir(parents=True)
    outside.mkdir()
    for path in (root / "part" / "ok.mp4", outside / "x.mp4"):
        path.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    os.symlink(outside / "x.mp4", root / "part" / "link.mp4")
    fake = {"label": "FAKE", "split": "train", "original": "ok.mp4"}
    meta = {"ok.mp4": {"label": "REAL"}, "../../outside/x.mp4": fake,
            str(outside / "x.mp4"): fake, "link.mp4": fake, "a\x00.mp4": fake}
    (root / "part" / "metadata.json").write_text(json.dumps(meta))
    skips = SkipLog()
    entries = read_metadata(root, skips)
    assert [e.relpath for e in entries] == ["part/ok.mp4"]
    report = skips.as_dict()
    assert report["outside_root"]["count"] == 3 and report["bad_path"]["count"] == 1
    assert any("link.mp4" in f for f in report["outside_root"]["files"])


def test_image_folder_symlink_out_is_skipped_and_class_names_must_be_plain(tmp_path):
    """image_folder: a symlinked image leading out of its class folder is an
    "outside_root" skip; a class folder option holding `..` or `/` is a ValueError."""
    rng = np.random.default_rng(4)
    root = tmp_path / "mine"
    for name, bright in (("real", True), ("fake", False)):
        for i in range(5):
            write_jpeg(root / name / f"{i}.jpg", rng, bright=bright)
    stray = write_jpeg(tmp_path / "stray.jpg", rng, bright=True)
    os.symlink(stray, root / "fake" / "stray.jpg")
    splits = load_dataset(DatasetSpec(name="image_folder", image_size=8),
                          data_dir=tmp_path / "d", manual_dir=root)
    assert sum(len(splits.split(s)) for s in ("train", "validation", "test")) == 10
    assert "fake/stray.jpg" in str(splits.info["report"])
    for bad in ("..", "../real", "sub/fake"):
        with pytest.raises(ValueError, match="class folder"):
            load_dataset(DatasetSpec(name="image_folder", options={"fake": bad}),
                         data_dir=tmp_path / "d", manual_dir=root)
