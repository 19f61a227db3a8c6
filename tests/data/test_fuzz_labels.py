"""Label files a user hands dfjax (the Kaggle CSVs, DFDC's metadata.json, COVID's class
folders): each row is used or skipped by name, a file that cannot be used at all is a
DataFileError naming it -- never a traceback, never a row outside the dataset root.

Fuzzed with hypothesis (deterministic: derandomize, no example database).
"""

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dfjax.cli import main
from dfjax.config import DatasetSpec
from dfjax.data import load_dataset
from dfjax.data._images import SkipLog
from dfjax.data._manual import DataFileError
from dfjax.data.covid19_xray import ALL_CLASSES, Covid19XrayBuilder
from dfjax.data.dfdc import read_metadata
from dfjax.data.real_vs_fake import read_split_csv
from tests.data.conftest import write_jpeg

FUZZ = settings(max_examples=50, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
HEADER = ["", "original_path", "id", "label", "label_str", "path"]
NOT_UTF8 = "\udcff\udcfe"  # written with surrogateescape: the raw bytes 0xff 0xfe


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """root/images/train/{real,fake}/ with two images, a symlink leading out to
    root/outside/, and a DFDC-like root/part/ with two (empty) videos and a symlink out."""
    root = tmp_path_factory.mktemp("labels")
    images = root / "images"
    for rel in ("train/real/a.jpg", "train/fake/b.jpg", "../outside/out.jpg"):
        (images / rel).parent.mkdir(parents=True, exist_ok=True)
        (images / rel).write_bytes(b"\xff\xd8\xff")
    os.symlink(root / "outside" / "out.jpg", images / "train/real/link.jpg")
    (root / "part").mkdir()
    for name in ("real.mp4", "fake.mp4", "../outside/out.mp4"):
        (root / "part" / name).write_bytes(b"\x00\x00\x00\x18ftypmp42")
    os.symlink(root / "outside" / "out.mp4", root / "part" / "link.mp4")
    return root


def _inside(path: Path, root: Path) -> bool:
    return Path(path).resolve().is_relative_to(Path(root).resolve())


text = st.text(max_size=8)
csv_label = st.one_of(st.sampled_from(["0", "1", "1.0", "0.0", " 1", "2", "-1", "nan", "inf",
                                       "", "real", "1e400", NOT_UTF8]), text)
csv_label_str = st.one_of(st.sampled_from(["real", "fake", "REAL", "", "other", NOT_UTF8]), text)
csv_path = st.one_of(st.sampled_from([
    "train/real/a.jpg", "train/fake/b.jpg", "train/real/../fake/b.jpg", "./train/real/a.jpg",
    "../outside/out.jpg", "../../../../etc/passwd", "/etc/passwd", "train/real/link.jpg",
    "", "train", "gone.jpg", "a\x00b.jpg", "train/real/" + NOT_UTF8 + ".jpg"]), text)
csv_row = st.tuples(csv_label, csv_label_str, csv_path, st.integers(1, 6))


@FUZZ
@given(header=st.sampled_from([HEADER, HEADER[:-1], [h for h in HEADER if h != "label"],
                               list(reversed(HEADER))]),
       rows=st.lists(csv_row, max_size=12), bom=st.booleans())
def test_kaggle_csv_rows_are_used_or_skipped_and_never_escape(tree, header, rows, bom):
    """Any CSV: a header without `label`/`path` is a DataFileError naming the file; else
    every data row is either one item or one skip, every item lies inside the image root
    with the label the row gave (inverted), and no file is listed twice."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for i, (label, label_str, path, width) in enumerate(rows):
        by_name = {"": str(i), "original_path": "x", "id": str(i), "label": label,
                   "label_str": label_str, "path": path}
        writer.writerow([by_name.get(h, "") for h in header][:width])
    csv_file = tree / "fuzz.csv"
    csv_file.write_bytes((b"\xef\xbb\xbf" if bom else b"")
                         + buffer.getvalue().encode("utf-8", "surrogateescape"))
    skips = SkipLog()
    if not {"label", "path"} <= set(header):
        with pytest.raises(DataFileError, match="fuzz.csv"):
            read_split_csv(csv_file, tree / "images", skips)
        return
    items = read_split_csv(csv_file, tree / "images", skips)
    assert len(items) + skips.count() == len(rows)
    resolved = [p.resolve() for p, _ in items]
    assert len(set(resolved)) == len(resolved)
    allowed = set()
    for label, _, path, _ in rows:
        try:
            allowed.add((os.path.normpath(path), 1 - int(float(label))))
        except (ValueError, OverflowError):
            pass
    for (path, label), real_path in zip(items, resolved):
        assert _inside(real_path, tree / "images") and label in (0, 1)
        assert (str(path.relative_to(tree / "images")), label) in allowed


json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                        text)
meta_value = st.one_of(
    st.fixed_dictionaries({}, optional={
        "label": st.one_of(st.sampled_from(["REAL", "FAKE", "fake", "x", NOT_UTF8]), json_scalar,
                           st.lists(st.just("FAKE"), max_size=1)),
        "original": st.one_of(st.sampled_from(["real.mp4", "../../x.mp4", "/abs.mp4"]),
                              json_scalar, st.lists(text, max_size=1)),
        "split": st.one_of(st.sampled_from(["train", "test", "TEST"]), json_scalar)}),
    json_scalar, st.lists(json_scalar, max_size=2))
meta_name = st.one_of(st.sampled_from([
    "real.mp4", "fake.mp4", "link.mp4", "../outside/out.mp4", "/etc/passwd", "",
    "./real.mp4", "sub/../fake.mp4", "gone.mp4", "a\x00.mp4", NOT_UTF8 + ".mp4", "."]), text)


@FUZZ
@given(meta=st.dictionaries(meta_name, meta_value, max_size=8))
def test_metadata_entries_are_used_or_skipped_and_never_escape(tree, meta):
    """Any JSON object as a metadata.json: every key is one entry or one skip; entries
    are existing files inside the metadata's folder with label 0 or 1, each file once."""
    (tree / "part" / "metadata.json").write_bytes(
        json.dumps(meta, ensure_ascii=False).encode("utf-8", "surrogateescape"))
    skips = SkipLog()
    entries = read_metadata(tree / "part", skips)
    assert len(entries) + skips.count() == len(meta)
    for entry in entries:
        assert _inside(entry.path, tree / "part") and entry.path.is_file()
        assert entry.label in (0, 1) and isinstance(entry.meta_split, str)
    assert len({e.path.resolve() for e in entries}) == len(entries)


@FUZZ
@given(data=st.one_of(st.binary(max_size=200),
                      st.sampled_from([b"[" * 100_000, b"[1, 2]", b'"text"', b"\xff\xfe{}",
                                       b"{" + b'"a": {' * 5000]),
                      st.builds(lambda t: json.dumps(t).encode(), st.lists(json_scalar))))
def test_unusable_metadata_file_is_one_named_skip(tree, data):
    """Bytes that are not a JSON object (random, non-UTF-8, nested 100000 deep, a list):
    read_metadata skips the file as one "bad_metadata" naming it, or reads an object."""
    folder = tree / "bad_part"
    folder.mkdir(exist_ok=True)
    (folder / "metadata.json").write_bytes(data)
    skips = SkipLog()
    entries = read_metadata(folder, skips)
    try:
        usable = isinstance(json.loads(data.decode("utf-8")), dict)
    except (ValueError, RecursionError):
        usable = False
    if not usable:
        assert entries == [] and skips.count("bad_metadata") == 1
        assert "metadata.json" in skips.as_dict()["bad_metadata"]["files"][0]


def test_only_metadata_unusable_is_a_data_file_error(tmp_path):
    """A DFDC download whose one metadata.json is not UTF-8 fails with a DataFileError
    naming that file, not a UnicodeDecodeError."""
    (tmp_path / "m" / "part").mkdir(parents=True)
    (tmp_path / "m" / "part" / "metadata.json").write_bytes(b'{"a.mp4": {"label": "\xff"}')
    with pytest.raises(DataFileError, match="part/metadata.json"):
        load_dataset(DatasetSpec(name="dfdc"), data_dir=tmp_path / "d",
                     manual_dir=tmp_path / "m")


def test_broken_kaggle_csv_is_named_by_the_cli(kaggle_140k, tmp_path, capsys):
    """`dfjax data prepare` on a download whose train.csv lacks the path column: exit
    status 2 and a message naming train.csv and the missing column."""
    text = (kaggle_140k / "train.csv").read_text().replace(",path", ",where")
    (kaggle_140k / "train.csv").write_text(text)
    rc = main(["data", "prepare", "real_vs_fake_140k", "--manual-dir", str(kaggle_140k),
               "--data-dir", str(tmp_path / "d"), "--image-size", "8"])
    err = capsys.readouterr().err
    assert rc == 2 and "train.csv" in err and "'path'" in err


def test_kaggle_csv_with_bad_rows_keeps_the_good_ones(kaggle_140k, tmp_path):
    """Rows with a non-UTF-8 path, an infinite label, a duplicate and a conflicting
    duplicate: each skipped by name; the 6 good train images are still the train split."""
    with open(kaggle_140k / "train.csv", "ab") as f:
        f.write(b"90,x,x,1,real,train/real/\xff.jpg\n91,x,x,inf,real,train/real/r001.jpg\n"
                b"92,x,x,1,real,train/real/r002.jpg\n93,x,x,0,fake,train/fake/f002.jpg\n"
                b"94,x,x,1,real,train/fake/f002.jpg\n")
    splits = load_dataset(DatasetSpec(name="real_vs_fake_140k", image_size=8),
                          data_dir=tmp_path / "d", manual_dir=kaggle_140k)
    skipped = splits.info["report"]["train"]["skipped"]
    assert skipped["bad_encoding"]["count"] == 1 and skipped["bad_label"]["count"] == 1
    assert skipped["duplicate_row"]["count"] == 2  # r002 again, f002 again as fake
    assert skipped["label_conflict"]["count"] == 2  # f002 as real, and its first row
    assert len(splits.train) == 5  # f002 is dropped: its label is in doubt


COVID_STATES = ["absent", "empty", "a_file", "good", "good_and_bad"]


@FUZZ
@given(states=st.lists(st.sampled_from(COVID_STATES), min_size=6, max_size=6),
       classes=st.sampled_from([2, 3]))
def test_covid_class_folders_in_any_state(tmp_path_factory, states, classes):
    """Each of the six class folders absent, empty, a plain file, or holding good and bad
    images: every split yields only good images (labels of its classes), and every bad
    file of an included class is named in that split's skip report."""
    root = tmp_path_factory.mktemp("covid") / "Covid19-dataset"
    rng = np.random.default_rng(0)
    good, bad = {}, []
    for (part, cls), state in zip([(p, c) for p in ("train", "test") for c in ALL_CLASSES],
                                  states):
        folder = root / part / cls
        (root / part).mkdir(parents=True, exist_ok=True)
        if state == "a_file":
            folder.write_bytes(b"not a folder")
        elif state != "absent":
            folder.mkdir()
        if state.startswith("good"):
            for i in range(5):
                write_jpeg(folder / f"{i}.jpeg", rng, bright=True, size=8, gray=True)
            good[(part, cls)] = 5
        if state == "good_and_bad":
            (folder / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n")
            (folder / "zero.jpg").write_bytes(b"")
            bad += [(part, cls, "cut.png"), (part, cls, "zero.jpg")]
    spec = DatasetSpec(name="covid19_xray", image_size=8, options={"classes": classes})
    builder = Covid19XrayBuilder(spec=spec, data_dir=tmp_path_factory.mktemp("d"),
                                 manual_dir=root.parent)
    builder.check_layout()
    labels = {2: {"Normal": 0, "Covid": 1}, 3: {"Normal": 0, "Covid": 1,
                                                "Viral Pneumonia": 2}}[classes]
    total = 0
    for split in ("train", "validation", "test"):
        examples = list(builder.generate_split(split))
        assert all(e["image"].shape == (8, 8, 3) for e in examples)
        assert {e["label"] for e in examples} <= set(labels.values())
        total += len(examples)
    assert total == sum(n for (_, cls), n in good.items() if cls in labels)
    report = str(builder.report)
    for part, cls, name in bad:
        if cls in labels:
            assert f"{part}/{cls}/{name}" in report


def test_file_names_that_are_not_utf8_are_read_or_skipped_by_name(tmp_path):
    """A class folder holding a good image and an empty file whose names are not UTF-8
    (bytes 0xff, 0xfe): the image becomes an example, the empty file a named skip, and
    the report is written (hashing such a name raised UnicodeEncodeError before)."""
    rng = np.random.default_rng(3)
    root = tmp_path / "mine"
    for name, bright in (("real", True), ("fake", False)):
        for i in range(5):
            write_jpeg(root / name / f"{i}.jpg", rng, bright=bright)
    good = os.fsencode(root / "fake") + b"/\xff.jpg"
    write_jpeg(root / "fake" / "tmp.jpg", rng, bright=False).rename(os.fsdecode(good))
    with open(os.fsencode(root / "fake") + b"/\xfe.jpg", "wb"):
        pass
    splits = load_dataset(DatasetSpec(name="image_folder", image_size=8),
                          data_dir=tmp_path / "d", manual_dir=root)
    assert sum(len(splits.split(s)) for s in ("train", "validation", "test")) == 11
    report = splits.info["report"]
    empty = [f for s in report.values() for f in s["skipped"].get("empty", {}).get("files", [])]
    assert [os.fsencode(f) for f in empty] == [os.fsencode(root / "fake") + b"/\xfe.jpg"]
