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
  claims(cell_id PK, owner, expires_at, claimed_at) -- a lease per cell being computed

Each cell is written in one transaction, so a killed run leaves every stored cell
whole, and a re-run skips the cells stored as 'ok'. The schema version is SQLite's
`user_version`: a store written by a newer dfjax is refused, an older one upgraded
(schema 1 lacks the examples and gallery tables, schema 2 the claims table; they are
added, empty).

Several runs may share one store. A run claims each cell just before computing it
(`Store.claim`: a lease with a time to live, renewed by a `ClaimHeartbeat` while the run
lives) and the cell's row releases it; a cell claimed by another live run is left to it.
A claim is dead once its lease expired or, on this host, once its process is gone (a
killed run's claims are taken over at once). Writes take SQLite's write lock up front
(BEGIN IMMEDIATE) and wait for it (busy timeout); the journal is WAL while the store is
open, and a store closed by its last user is left as one plain file (no -wal, no -shm).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dfjax import settings
from dfjax.config import Cell

SCHEMA_VERSION = 3
BUSY_TIMEOUT_SECONDS = 30.0  # how long a write waits for another writer
CLAIM_TTL_SECONDS = 120.0  # a claim not renewed for this long is dead

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
CREATE TABLE IF NOT EXISTS claims (
    cell_id TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL,
    claimed_at REAL NOT NULL
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
    "claims": {"cell_id", "owner", "expires_at", "claimed_at"},
}

EXAMPLE_KEYS = ("index", "label", "p_fake_clean", "p_fake_adv")
GALLERY_KEYS = ("index", "label", "p_fake_clean", "p_fake_adv", "clean_png", "adv_png",
                "perturbation_png")


class StoreError(ValueError):
    """A results store that cannot be used: not a SQLite database, damaged, or written by
    a newer dfjax. The message names the file."""


def _check_writable(path: Path) -> None:
    """Raise StoreError naming `path` when the store, or the folder that holds it (where
    SQLite keeps its journal), cannot be written. Tried for real (a root user passes every
    permission check, not a read-only mount)."""
    folder = path.parent
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise StoreError(f"results store {path}: its folder {folder} is not writable "
                         f"({e.strerror or e}); choose another --store") from e
    if path.exists():
        try:
            with open(path, "r+b"):
                pass
        except OSError as e:
            raise StoreError(f"results store {path}: the file is not writable "
                             f"({e.strerror or e})") from e


def _open(path: Path) -> sqlite3.Connection:
    """Connect to `path` and bring its schema to SCHEMA_VERSION, or raise StoreError."""
    if path.is_dir():
        raise StoreError(f"results store {path}: is a directory, not a SQLite file")
    _check_writable(path)
    try:
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS)
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
        with contextlib.suppress(sqlite3.OperationalError):  # else the rollback journal
            db.execute("PRAGMA journal_mode = WAL")  # readers and one writer at once
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
        """Close; the last user of the store also turns its journal back into a plain
        rollback journal, so no -wal or -shm file stays beside it."""
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA busy_timeout = 0")  # another user: leave it WAL
            self._db.execute("PRAGMA journal_mode = DELETE")
        self._db.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """One transaction holding SQLite's write lock from its start (BEGIN IMMEDIATE, so
        two writers queue on the busy timeout instead of failing); committed on success."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            yield

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

    def result_fingerprints(self) -> dict[str, str | None]:
        """cell_id -> the code fingerprint its 'ok' row records (`env["fingerprint"]`, see
        `put`; None for a row stored before fingerprints were kept)."""
        found = {}
        for cell_id, env_json in self._db.execute(
                "SELECT cell_id, env_json FROM cells WHERE status = 'ok'"):
            try:
                env = json.loads(env_json or "{}")
            except ValueError:
                env = {}
            value = env.get("fingerprint") if isinstance(env, dict) else None
            found[cell_id] = value if isinstance(value, str) else None
        return found

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
        (GALLERY_KEYS; the images as PNG bytes). An 'ok' row's env gets `fingerprint`, the
        code that made it (`evaluation_fingerprint(cell)`), and `evaluation_code`, the part
        every cell shares, unless env gives a fingerprint."""
        timings = timings or {}
        if status == "ok" and "fingerprint" not in (env or {}):
            # the code that made the row (dfjax.runner.environment); a run recomputes a
            # row recording another (dfjax.runner.local.plan)
            from dfjax.runner.environment import evaluation_code_fingerprint, evaluation_fingerprint

            env = {**(env or {}), "fingerprint": evaluation_fingerprint(cell),
                   "evaluation_code": evaluation_code_fingerprint()}
        for name, value in (metrics or {}).items():
            if not isinstance(value, (int, float)):
                raise TypeError(f"metric {name!r} must be a number, got {type(value).__name__}")
        cell_id = cell.cell_id  # a hash of the whole spec: computed once, not per row
        with self._write():
            self._db.execute("DELETE FROM cells WHERE cell_id = ?", (cell_id,))
            self._db.execute("DELETE FROM claims WHERE cell_id = ?", (cell_id,))
            self._db.execute(
                "INSERT INTO cells VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    cell_id, status, cell.dataset.label(), cell.model.label(),
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
                [(cell_id, k, None if math.isnan(float(v)) else float(v))
                 for k, v in (metrics or {}).items()],
            )
            if examples is not None:
                columns = [np.asarray(examples[k]) for k in EXAMPLE_KEYS]
                self._db.executemany("INSERT INTO examples VALUES (?, ?, ?, ?, ?)", [
                    (cell_id, int(i), int(y), _real(pc), _real(pa))
                    for i, y, pc, pa in zip(*columns)])
            self._db.executemany("INSERT INTO gallery VALUES (?,?,?,?,?,?,?,?,?)", [
                (cell_id, rank, int(g["index"]), int(g["label"]), _real(g["p_fake_clean"]),
                 _real(g["p_fake_adv"]), g["clean_png"], g["adv_png"], g["perturbation_png"])
                for rank, g in enumerate(gallery or [])])
            settings.kill_point("store.put")  # a kill here must leave no part of the cell

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

    # claims --------------------------------------------------------------------------
    def claim(self, cell_id: str, owner: str, ttl: float = CLAIM_TTL_SECONDS, *,
              planned_at: float | None = None) -> bool:
        """Take the lease on `cell_id` for `owner` (`claim_owner()`) for `ttl` seconds; True
        when taken (or renewed: `owner` held it). False when the cell is stored as 'ok' --
        with `planned_at`, stored at or after that time (an older row is one the run chose
        to compute again, e.g. a stale one) -- or claimed by another owner that is alive
        (`claim_is_live`). Atomic across processes (one write transaction)."""
        now = time.time()
        with self._write():
            stored = self._db.execute(
                "SELECT created_at FROM cells WHERE cell_id = ? AND status = 'ok'",
                (cell_id,)).fetchone()
            if stored is not None and (planned_at is None or stored[0] >= planned_at):
                return False
            held = self._db.execute("SELECT owner, expires_at FROM claims WHERE cell_id = ?",
                                    (cell_id,)).fetchone()
            if held is not None and held[0] != owner and claim_is_live(held[0], held[1], now):
                return False
            self._db.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?)",
                             (cell_id, owner, now + ttl, now))
        return True

    def renew(self, owner: str, ttl: float = CLAIM_TTL_SECONDS) -> int:
        """Extend every claim of `owner` to `ttl` seconds from now; returns how many."""
        return _renew(self._db, owner, ttl)

    def release(self, owner: str, cell_id: str | None = None) -> None:
        """Drop `owner`'s claim on `cell_id` (every claim of `owner` when None). Storing a
        cell (`put`) drops its claim too."""
        with self._write():
            if cell_id is None:
                self._db.execute("DELETE FROM claims WHERE owner = ?", (owner,))
            else:
                self._db.execute("DELETE FROM claims WHERE owner = ? AND cell_id = ?",
                                 (owner, cell_id))

    def claims(self) -> dict[str, tuple[str, float]]:
        """cell_id -> (owner, expires_at) of every claim, live or dead."""
        rows = self._db.execute("SELECT cell_id, owner, expires_at FROM claims").fetchall()
        return {cell_id: (owner, expires_at) for cell_id, owner, expires_at in rows}

    # detectors -----------------------------------------------------------------------
    def put_detector(self, detector_id: str, spec: dict, history: list[dict],
                     train_seconds: float | None) -> None:
        with self._write():
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


# claims ------------------------------------------------------------------------------
def _process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, /proc/<pid>/stat field 22), so a
    reused pid is told apart; "" where /proc is not available; None when there is no such
    running process (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
        try:  # no /proc (macOS): whether the pid exists is all we can know
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return ""
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (command) "
    return None if fields[0] == "Z" else fields[19]


def claim_owner() -> str:
    """This process as a claim owner: "host:pid:start" (start: `_process_start`)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_process_start(os.getpid()) or ''}"


def claim_is_live(owner: str, expires_at: float, now: float | None = None) -> bool:
    """Whether a claim still holds: its lease has not expired and, when its owner is a
    process on this host, that process (same pid, same start) still runs."""
    if expires_at <= (time.time() if now is None else now):
        return False
    host, pid, start = _split_owner(owner)
    if host != socket.gethostname() or pid is None:
        return True  # another machine's process: its lease decides
    running = _process_start(pid)
    if running is None:
        return False
    return running == start or "" in (running, start)  # "": a start time not known


def _split_owner(owner: str) -> tuple[str, int | None, str]:
    """("host", pid, "start") of an owner string; pid None when it is not one."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return owner, None, ""
    return parts[0], int(parts[1]), parts[2]


def _renew(db: sqlite3.Connection, owner: str, ttl: float) -> int:
    with db:
        db.execute("BEGIN IMMEDIATE")
        cursor = db.execute("UPDATE claims SET expires_at = ? WHERE owner = ?",
                            (time.time() + ttl, owner))
    return cursor.rowcount


class ClaimHeartbeat:
    """Renews `owner`'s claims in the store at `path` every ttl/3 seconds from a daemon
    thread with its own connection, while a `with` block runs (a long cell keeps its
    lease; a killed process stops renewing, and its claims die with it).

    Example:
        >>> with Store(path) as store, ClaimHeartbeat(path, owner, ttl=60):
        ...     store.claim(cell_id, owner, ttl=60)
    """

    def __init__(self, path: str | Path, owner: str, ttl: float = CLAIM_TTL_SECONDS):
        self.path, self.owner, self.ttl = Path(path), owner, ttl
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True,
                                        name=f"dfjax claims {owner}")

    def _beat(self) -> None:
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS)
        try:
            while not self._stop.wait(self.ttl / 3):
                with contextlib.suppress(sqlite3.Error):  # busy for long: next beat retries
                    _renew(db, self.owner, self.ttl)
        finally:
            db.close()

    def __enter__(self) -> ClaimHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
