import math
import sqlite3

import pytest

from dfjax.config import AttackSpec, Cell, DatasetSpec, DefenceSpec, ModelSpec, TrainSpec
from dfjax.store import Store


def _cell(eps):
    return Cell(dataset=DatasetSpec(name="synthetic_faces"), model=ModelSpec(name="cnn7"),
                training=TrainSpec(), defence=DefenceSpec(),
                attack=AttackSpec(name="fgsm", eps=eps),
                n_eval=4, seed=0)


def test_put_rows_and_resume_flags(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        ok, bad = _cell(0.1), _cell(0.2)
        store.put(ok, status="ok", metrics={"robust_accuracy": 0.25, "roc_auc": float("nan")},
                  timings={"wall_time": 1.5})
        store.put(bad, status="failed", error="ValueError: boom")
        assert store.has_result(ok.cell_id) and not store.has_result(bad.cell_id)
        rows = {r["cell_id"]: r for r in store.rows()}
        assert rows[ok.cell_id]["robust_accuracy"] == 0.25
        assert math.isnan(rows[ok.cell_id]["roc_auc"])
        assert rows[ok.cell_id]["delta"] == pytest.approx(25.5)
        assert rows[bad.cell_id]["error"] == "ValueError: boom"
        # replacing a failed cell with a success keeps one row
        store.put(bad, status="ok", metrics={"robust_accuracy": 0.5})
        assert store.count() == {"ok": 2}
    # metrics are REAL columns in SQLite, not strings
    db = sqlite3.connect(tmp_path / "s.sqlite")
    assert db.execute("SELECT typeof(value) FROM metrics WHERE name='robust_accuracy'"
                      ).fetchall() == [("real",), ("real",)]


def test_non_numeric_metric_rejected(tmp_path):
    with Store(tmp_path / "s.sqlite") as store, pytest.raises(TypeError, match="must be a number"):
        store.put(_cell(0.1), status="ok", metrics={"robust_accuracy": "0.5"})


def _examples(n, offset=0.0):
    import numpy as np

    return {"index": np.arange(n) * 3, "label": np.arange(n) % 2,
            "p_fake_clean": np.linspace(0, 1, n) + offset, "p_fake_adv": np.full(n, np.nan)}


def test_examples_and_gallery_round_trip_and_go_with_their_row(tmp_path):
    """Per-example arrays come back in order (NaN kept), gallery entries by rank with their
    PNG bytes; replacing the cell replaces both; a cell that stored none gives None / []."""
    import numpy as np

    entry = {"index": 6, "label": 1, "p_fake_clean": 0.9, "p_fake_adv": 0.1,
             "clean_png": b"\x89PNG-a", "adv_png": b"\x89PNG-b", "perturbation_png": b"c"}
    with Store(tmp_path / "s.sqlite") as store:
        cell, other = _cell(0.1), _cell(0.2)
        store.put(cell, status="ok", examples=_examples(5), gallery=[entry, entry | {"index": 9}])
        store.put(other, status="failed", error="boom")
        got = store.examples(cell.cell_id)
        np.testing.assert_array_equal(got["index"], [0, 3, 6, 9, 12])
        np.testing.assert_array_equal(got["label"], [0, 1, 0, 1, 0])
        np.testing.assert_allclose(got["p_fake_clean"], np.linspace(0, 1, 5))
        assert np.isnan(got["p_fake_adv"]).all()
        assert [g["index"] for g in store.gallery(cell.cell_id)] == [6, 9]
        assert store.gallery(cell.cell_id)[0]["clean_png"] == b"\x89PNG-a"
        assert store.examples(other.cell_id) is None and store.gallery(other.cell_id) == []
        store.put(cell, status="ok", examples=_examples(2, offset=0.5))
        assert len(store.examples(cell.cell_id)["index"]) == 2
        assert store.gallery(cell.cell_id) == []


def test_bad_store_files_are_refused_naming_the_file(tmp_path):
    """Not SQLite, truncated, another program's SQLite, a newer dfjax's schema, a folder:
    each a StoreError naming the path, before anything is written."""
    from dfjax.store import SCHEMA_VERSION, StoreError

    text = tmp_path / "notes.sqlite"
    text.write_text("this is not a database\n" * 50)
    good = tmp_path / "good.sqlite"
    with Store(good) as store:
        for eps in (0.1, 0.2, 0.3):
            store.put(_cell(eps), status="ok", metrics={"robust_accuracy": eps},
                      examples=_examples(200))
    truncated = tmp_path / "truncated.sqlite"
    truncated.write_bytes(good.read_bytes()[:3000])
    foreign = tmp_path / "foreign.sqlite"
    sqlite3.connect(foreign).execute("CREATE TABLE songs (title TEXT)").connection.commit()
    newer = tmp_path / "newer.sqlite"
    newer.write_bytes(good.read_bytes())
    db = sqlite3.connect(newer)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    cases = {text: "not a usable SQLite", truncated: "SQLite", foreign: "not a dfjax store",
             newer: "newer dfjax", tmp_path: "is a directory"}
    for path, message in cases.items():
        before = path.read_bytes() if path.is_file() else None
        with pytest.raises(StoreError, match=message) as info:
            Store(path)
        assert str(path) in str(info.value)
        assert before is None or path.read_bytes() == before


def test_schema_1_store_is_upgraded_and_keeps_its_rows(tmp_path):
    """A store written before the examples/gallery tables existed opens, keeps its cells,
    and reports no per-example data for them."""
    path = tmp_path / "old.sqlite"
    with Store(path) as store:
        cell = _cell(0.1)
        store.put(cell, status="ok", metrics={"robust_accuracy": 0.5})
    db = sqlite3.connect(path)
    db.executescript("DROP TABLE examples; DROP TABLE gallery; PRAGMA user_version = 0;")
    db.close()
    with Store(path) as store:
        assert store.rows()[0]["robust_accuracy"] == 0.5
        assert store.examples(cell.cell_id) is None
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 2
