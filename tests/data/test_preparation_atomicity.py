"""A dataset copy is complete only once its preparation report, written last, is there:
leftovers of a killed preparation are removed and it is prepared again; two processes
preparing one copy at once prepare it once."""

import subprocess
import sys
import threading

import numpy as np

from dfjax.config import DatasetSpec
from dfjax.data import DATASETS, load_dataset
from dfjax.data._tfds import preparation_lock

SPEC = DatasetSpec(name="synthetic_faces", image_size=32, num_examples=60)


def test_records_without_their_report_are_prepared_again_and_leftovers_removed(tmp_path):
    """Killed after TFDS renamed its records into place but before the report: not
    prepared; the next load prepares it again (same arrays), removing the records and an
    `incomplete.*` folder a killed TFDS left."""
    first = load_dataset(SPEC, data_dir=tmp_path)
    root = tmp_path / "synthetic_faces" / SPEC.digest()
    (root / "preparation_report.json").unlink()
    leftover = root / "synthetic_faces_builder" / "incomplete.KILLED_1.1.0"
    leftover.mkdir()
    (leftover / "part.array_record").write_bytes(b"half")
    builder = DATASETS.get("synthetic_faces").builder(SPEC, data_dir=tmp_path)
    assert not builder.is_prepared()
    again = load_dataset(SPEC, data_dir=tmp_path)
    assert builder.is_prepared() and not leftover.exists()
    assert np.array_equal(first.train.images, again.train.images)
    assert np.array_equal(first.test.labels, again.test.labels)


_LOAD = """
import sys
from dfjax.config import DatasetSpec
from dfjax.data import load_dataset
splits = load_dataset(DatasetSpec(name="synthetic_faces", image_size=32, num_examples=60),
                      data_dir=sys.argv[1])
print(int(splits.train.images.sum()))
"""


def test_two_processes_loading_an_unprepared_copy_prepare_it_once(tmp_path):
    """Both processes get the same arrays; TFDS announces exactly one preparation (the
    other process waits on `preparation_lock`, then reads the finished copy)."""
    procs = [subprocess.Popen([sys.executable, "-c", _LOAD, str(tmp_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert outputs[0].splitlines()[-1] == outputs[1].splitlines()[-1]
    assert sum(o.count("Downloading and preparing dataset") for o in outputs) == 1


def test_preparation_lock_is_reentrant_within_a_process(tmp_path):
    """Taking the lock again while holding it (a stale copy prepared again under it)
    returns at once instead of waiting on itself."""
    def nested():
        with preparation_lock(tmp_path / "x" / "abc"), preparation_lock(tmp_path / "x" / "abc"):
            pass

    thread = threading.Thread(target=nested, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
