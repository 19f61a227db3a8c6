"""The results store (SQLite): one row per cell, metrics as real floats; the truth
from which every table, plot and leaderboard is derived.

Tables:
  cells(cell_id PK, status 'ok'|'failed', axes..., eps, delta, seed, n_examples,
        spec_json, error, wall_time, compile_time, images_per_second, extra_json,
        env_json, schema_version, created_at)
  metrics(cell_id, name, value REAL)          -- long format, one float per row
  detectors(detector_id PK, spec_json, history_json, train_seconds, created_at)
  examples(cell_id, idx, label, p_fake_clean, p_fake_adv) -- per evaluated example:
        idx indexes the test split, so two runs of one cell pair up (dfjax compare)
  gallery(cell_id, rank, idx, label, p_fake_clean, p_fake_adv, clean_png,
        adv_png, perturbation_png)                -- a few adversarial examples, PNG

Each cell is written in one transaction, so a killed run leaves every stored cell
whole, and a re-run skips the cells stored as 'ok'. The schema version is SQLite's
`user_version`: a store written by a newer dfjax is refused, an older one upgraded
(schema 1 lacks the examples and gallery tables; they are added, empty).
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np

from dfjax.config import Cell

SCHEMA_VERSION = 2

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
CREATE TABLE IF NOT EXISTS examples (
    cell_id TEXT NOT NULL REFERENCES cells(cell_id) ON DELETE CASCADE,
    idx INTEGER NOT NULL, label INTEGER NOT NULL, p_fake_clean REAL, p_fake_adv REAL,
    PRIMARY KEY (cell_id, idx)
);
CREATE TABLE IF NOT EXISTS gallery (
    cell_id TEXT NOT NULL REFERENCES cells(cell_id) ON DELETE CASCADE,
    rank INTEGER NOT NULL, idx INTEGER NOT NULL, label INTEGER NOT NULL,
    p_fake_clean REAL, p_fake_adv REAL,
    clean_png BLOB NOT NULL, adv_png BLOB NOT NULL, perturbation_png BLOB NOT NULL,
    PRIMARY KEY (cell_id, rank)
);
"""

# the columns each table must have (a same-named table of another schema is refused)
_COLUMNS = {
    "cells": {"cell_id", "status", "dataset", "model", "training", "defence", "attack",
              "norm", "eps", "delta", "seed", "n_examples", "detector_id", "spec_json",
              "error", "wall_time", "compile_time", "images_per_second", "extra_json",
              "env_json", "schema_version", "created_at"},
    "metrics": {"cell_id", "name", "value"},
    "detectors": {"detector_id", "spec_json", "history_json", "train_seconds", "created_at"},
    "examples": {"cell_id", "idx", "label", "p_fake_clean", "p_fake_adv"},
    "gallery": {"cell_id", "rank", "idx", "label", "p_fake_clean", "p_fake_adv", "clean_png",
                "adv_png", "perturbation_png"},
}

EXAMPLE_KEYS = ("index", "label", "p_fake_clean", "p_fake_adv")
GALLERY_KEYS = ("index", "label", "p_fake_clean", "p_fake_adv", "clean_png", "adv_png",
                "perturbation_png")


class StoreError(ValueError):
    """A results store that cannot be used: not a SQLite database, damaged, or written by
    a newer dfjax. The message names the file."""


def _open(path: Path) -> sqlite3.Connection:
    """Connect to `path` and bring its schema to SCHEMA_VERSION, or raise StoreError."""
    if path.is_dir():
        raise StoreError(f"results store {path}: is a directory, not a SQLite file")
    try:
        db = sqlite3.connect(path, timeout=30)
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            db.close()
            raise StoreError(
                f"results store {path}: written by a newer dfjax (schema {version}; this "
                f"one reads up to {SCHEMA_VERSION}): upgrade dfjax or use another --store")
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "cells" not in tables:
            db.close()
            raise StoreError(f"results store {path}: a SQLite database, but not a dfjax "
                             f"store (tables: {', '.join(sorted(tables))})")
        db.execute("PRAGMA foreign_keys = ON")
        db.executescript(_SCHEMA)
        for table, columns in _COLUMNS.items():
            found = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
            if not columns <= found:
                db.close()
                raise StoreError(f"results store {path}: table {table} lacks columns "
                                 f"{', '.join(sorted(columns - found))} (another schema)")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        problems = db.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as e:  # "file is not a database", "malformed", ...
        raise StoreError(f"results store {path}: not a usable SQLite database ({e})") from e
    except OSError as e:
        raise StoreError(f"results store {path}: cannot be opened ({e})") from e
    if problems != "ok":
        db.close()
        raise StoreError(f"results store {path}: damaged ({problems})")
    return db


class Store:
    """A SQLite results store at `path` (created with its parent directory)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"results store {self.path}: its folder cannot be created "
                             f"({e})") from e
        self._db = _open(self.path)

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
        examples: dict[str, np.ndarray] | None = None, gallery: list[dict] | None = None,
    ) -> None:
        """Write (or replace) one cell's row and metrics in a single transaction. The row's
        n_examples is timings["n_evaluated"] (the examples actually evaluated) where
        given, else the cell's n_eval.

        examples: equal-length arrays per evaluated example (EXAMPLE_KEYS: index into the
        test split, label, p_fake_clean, p_fake_adv); gallery: up to a few dicts
        (GALLERY_KEYS; the images as PNG bytes)."""
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
            if examples is not None:
                columns = [np.asarray(examples[k]) for k in EXAMPLE_KEYS]
                self._db.executemany("INSERT INTO examples VALUES (?, ?, ?, ?, ?)", [
                    (cell.cell_id, int(i), int(y), _real(pc), _real(pa))
                    for i, y, pc, pa in zip(*columns)])
            self._db.executemany("INSERT INTO gallery VALUES (?,?,?,?,?,?,?,?,?)", [
                (cell.cell_id, rank, int(g["index"]), int(g["label"]), _real(g["p_fake_clean"]),
                 _real(g["p_fake_adv"]), g["clean_png"], g["adv_png"], g["perturbation_png"])
                for rank, g in enumerate(gallery or [])])

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

    def examples(self, cell_id: str) -> dict[str, np.ndarray] | None:
        """The cell's per-example arrays (EXAMPLE_KEYS) in evaluation order, or None when
        it stored none (a failed cell, a schema-1 store)."""
        found = self._db.execute(
            "SELECT idx, label, p_fake_clean, p_fake_adv FROM examples WHERE cell_id = ? "
            "ORDER BY rowid", (cell_id,)).fetchall()
        if not found:
            return None
        idx, label, clean, adv = zip(*found)
        return {"index": np.array(idx, np.int64), "label": np.array(label, np.int64),
                "p_fake_clean": _floats(clean), "p_fake_adv": _floats(adv)}

    def gallery(self, cell_id: str) -> list[dict[str, Any]]:
        """The cell's gallery entries (GALLERY_KEYS) by rank; [] when none."""
        found = self._db.execute(
            "SELECT idx, label, p_fake_clean, p_fake_adv, clean_png, adv_png, perturbation_png"
            " FROM gallery WHERE cell_id = ? ORDER BY rank", (cell_id,)).fetchall()
        return [dict(zip(GALLERY_KEYS, row)) for row in found]

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


def _real(value) -> float | None:
    """A float for SQLite; NaN as NULL (SQLite has no NaN)."""
    value = float(value)
    return None if math.isnan(value) else value


def _floats(values) -> np.ndarray:
    """float64 array with SQL NULL back as NaN."""
    return np.array([np.nan if v is None else v for v in values], np.float64)
