"""Fuzzing the results store's file: any damage to a store file gives a StoreError naming
it, or a store whose rows still read back; never another exception, never a hang."""

import sqlite3

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dfjax.config import AttackSpec, Cell, DatasetSpec, DefenceSpec, ModelSpec, TrainSpec
from dfjax.store import Store, StoreError

CASES = {"tried": 0, "refused": 0, "read": 0}


@pytest.fixture(scope="module")
def good_store(tmp_path_factory) -> bytes:
    """The bytes of a valid store with three cells, per-example rows and a gallery."""
    path = tmp_path_factory.mktemp("store") / "good.sqlite"
    with Store(path) as store:
        for eps in (0.0, 4 / 255, 8 / 255):
            cell = Cell(dataset=DatasetSpec(name="synthetic_faces"),
                        model=ModelSpec(name="cnn7"), training=TrainSpec(),
                        defence=DefenceSpec(), attack=AttackSpec(name="pgd", eps=eps),
                        n_eval=64, seed=0)
            n = 64
            store.put(cell, status="ok", metrics={"robust_accuracy": 1 - eps},
                      examples={"index": np.arange(n), "label": np.arange(n) % 2,
                                "p_fake_clean": np.linspace(0, 1, n),
                                "p_fake_adv": np.linspace(1, 0, n)},
                      gallery=[{"index": 1, "label": 1, "p_fake_clean": 0.9, "p_fake_adv": 0.1,
                                "clean_png": b"a" * 500, "adv_png": b"b" * 500,
                                "perturbation_png": b"c" * 500}])
    return path.read_bytes()


def _open_and_read(path) -> None:
    """Open the store and read everything a report reads."""
    with Store(path) as store:
        for row in store.rows():
            store.examples(row["cell_id"])
            store.gallery(row["cell_id"])
        store.detectors()


def _check(path) -> None:
    CASES["tried"] += 1
    try:
        _open_and_read(path)
        CASES["read"] += 1
    except StoreError as e:
        assert str(path) in str(e)
        CASES["refused"] += 1


@settings(max_examples=60, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0, 1), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)),
                                           max_size=8))
def test_damaged_store_file_is_refused_or_still_reads(good_store, tmp_path, cut, flips):
    """Truncated at a random point, then random bytes overwritten: StoreError naming the
    file, or it opens and every row, example and gallery entry reads back."""
    data = bytearray(good_store[: max(1, int(len(good_store) * (1 - cut * 0.99)))])
    for where, value in flips:
        data[int(where * (len(data) - 1))] = value
    path = tmp_path / "damaged.sqlite"
    path.write_bytes(bytes(data))
    _check(path)


@settings(max_examples=25, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=4096))
def test_random_bytes_are_refused(tmp_path, data):
    """Arbitrary bytes (empty included: a new store) never raise anything but StoreError."""
    path = tmp_path / "random.sqlite"
    path.write_bytes(data)
    _check(path)


def test_another_schema_is_refused(tmp_path):
    """A store whose cells table lacks our columns: StoreError naming the file."""
    path = tmp_path / "other.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE cells (cell_id TEXT PRIMARY KEY, score REAL)")
    db.execute("INSERT INTO cells VALUES ('a', 1.0)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="other.sqlite"):
        _open_and_read(path)


def test_cases_were_tried():
    """The fuzz tests above ran (the counts go into the closing note)."""
    print(f"store fuzz cases: {CASES}")
    assert CASES["tried"] >= 60
