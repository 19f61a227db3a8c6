"""The results store (SQLite): one row per cell, metrics as real floats; the truth
from which every table, plot and leaderboard is derived.

Tables:
  cells(cell_id PK, status 'ok'|'failed', axes..., eps, delta, seed, n_examples,
        spec_json, error, wall_time, compile_time, images_per_second, extra_json,
        env_json, schema_version, created_at)
  metrics(cell_id, name, value REAL)          -- long format, one float per row
  detectors(detector_id PK, spec_json, history_json, train_seconds, created_at)

Each cell is written in one transaction, so a killed run leaves every stored cell
whole, and a re-run skips the cells stored as 'ok'.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from pathlib import Path
from typing import Any

from dfjax.config import Cell

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    cell_id TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    dataset TEXT NOT NULL, model TEXT NOT NULL, training TEXT NOT NULL,
    defence TEXT NOT NULL, attack TEXT NOT NULL, norm TEXT NOT NULL,
    eps REAL NOT NULL, delta REAL NOT NULL, seed INTEGER NOT NULL,
    n_examples INTEGER NOT NULL, detector_id TEXT NOT NULL,
    spec_json TEXT NOT NULL, error TEXT,
    wall_time REAL, compile_time REAL, images_per_second REAL,
    extra_json TEXT, env_json TEXT,
    schema_version INTEGER NOT NULL, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS metrics (
    cell_id TEXT NOT NULL REFERENCES cells(cell_id) ON DELETE CASCADE,
    name TEXT NOT NULL, value REAL,
    PRIMARY KEY (cell_id, name)
);
CREATE TABLE IF NOT EXISTS detectors (
    detector_id TEXT PRIMARY KEY, spec_json TEXT NOT NULL, history_json TEXT NOT NULL,
    train_seconds REAL, created_at REAL NOT NULL
);
"""


class Store:
    """A SQLite results store at `path` (created with its parent directory)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # cells -------------------------------------------------------------------------
    def has_result(self, cell_id: str) -> bool:
        """True when the cell is stored as 'ok' (failed cells are retried by a re-run)."""
        row = self._db.execute(
            "SELECT 1 FROM cells WHERE cell_id = ? AND status = 'ok'", (cell_id,)).fetchone()
        return row is not None

    def put(
        self, cell: Cell, *, status: str, metrics: dict[str, float] | None = None,
        error: str | None = None, timings: dict[str, float] | None = None,
        extra: dict[str, Any] | None = None, env: dict[str, Any] | None = None,
    ) -> None:
        """Write (or replace) one cell's row and metrics in a single transaction. The row's
        n_examples is timings["n_evaluated"] (the examples actually evaluated) where
        given, else the cell's n_eval."""
        timings = timings or {}
        for name, value in (metrics or {}).items():
            if not isinstance(value, (int, float)):
                raise TypeError(f"metric {name!r} must be a number, got {type(value).__name__}")
        with self._db:
            self._db.execute("DELETE FROM cells WHERE cell_id = ?", (cell.cell_id,))
            self._db.execute(
                "INSERT INTO cells VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    cell.cell_id, status, cell.dataset.label(), cell.model.label(),
                    cell.training.label(), cell.defence.label(), cell.attack.label(),
                    cell.attack.norm, cell.attack.eps, cell.attack.delta, cell.seed,
                    int(timings.get("n_evaluated", cell.n_eval)), cell.detector_id,
                    json.dumps(cell.to_dict(), sort_keys=True),
                    error, timings.get("wall_time"), timings.get("compile_time"),
                    timings.get("images_per_second"), json.dumps(extra or {}),
                    json.dumps(env or {}), SCHEMA_VERSION, time.time(),
                ),
            )
            self._db.executemany(
                "INSERT INTO metrics VALUES (?, ?, ?)",
                [(cell.cell_id, k, None if math.isnan(float(v)) else float(v))
                 for k, v in (metrics or {}).items()],
            )

    def rows(self, *, status: str | None = None) -> list[dict[str, Any]]:
        """Every cell as a flat dict: its columns plus one key per metric."""
        query = "SELECT * FROM cells" + (" WHERE status = ?" if status else "")
        cur = self._db.execute(query + " ORDER BY dataset, model, training, defence, attack, eps",
                               (status,) if status else ())
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
        metric_rows = self._db.execute("SELECT cell_id, name, value FROM metrics").fetchall()
        by_cell: dict[str, dict[str, float]] = {}
        for cell_id, name, value in metric_rows:
            by_cell.setdefault(cell_id, {})[name] = float("nan") if value is None else value
        for row in rows:
            row.update(by_cell.get(row["cell_id"], {}))
        return rows

    def count(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT status, COUNT(*) FROM cells GROUP BY status"))

    # detectors -----------------------------------------------------------------------
    def put_detector(self, detector_id: str, spec: dict, history: list[dict],
                     train_seconds: float | None) -> None:
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO detectors VALUES (?, ?, ?, ?, ?)",
                (detector_id, json.dumps(spec, sort_keys=True), json.dumps(history),
                 train_seconds, time.time()))

    def detectors(self) -> list[dict[str, Any]]:
        cur = self._db.execute("SELECT * FROM detectors ORDER BY detector_id")
        names = [d[0] for d in cur.description]
        out = []
        for r in cur.fetchall():
            row = dict(zip(names, r))
            row["spec"] = json.loads(row.pop("spec_json"))
            row["history"] = json.loads(row.pop("history_json"))
            out.append(row)
        return out
