import math
import sqlite3

import pytest

from dfjax.config import AttackSpec, Cell, DatasetSpec, DefenceSpec, ModelSpec, TrainSpec
from dfjax.store import Store


def _cell(eps):
    return Cell(dataset=DatasetSpec(name="synthetic_faces"), model=ModelSpec(name="cnn7"),
                training=TrainSpec(), defence=DefenceSpec(), attack=AttackSpec(name="fgsm", eps=eps),
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
