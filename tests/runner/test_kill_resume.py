"""`dfjax run` killed with SIGKILL at seven points -- mid dataset write, after the records
but before the report, mid training, mid checkpoint file, between checkpoint weights and
metadata, inside a cell's store transaction, between computing and storing a cell --
and resumed each time, ends with the store an uninterrupted run writes: the same cells,
each once, the same numbers, nothing failed; and only complete artifacts on disk.

The kills are deterministic: the test-only hook DFJAX_TEST_KILL_AFTER=<point>:<n>
(`dfjax.settings.kill_point`) makes the process SIGKILL itself the n-th time it reaches a
point, and each killed run must end by that signal (so the point was reached). The runs
share the test session's XLA compilation cache (tests/conftest.py), as a user's runs share
theirs: the first run compiles, the resumed ones load its programs.
"""

import hashlib
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from dfjax.configs import get_config
from dfjax.runner import expand
from dfjax.runner.expand import override, parse_only
from dfjax.store import Store

pytestmark = pytest.mark.slow

SETTINGS = ["dataset.num_examples=120", "training.epochs=2", "n_eval=16", "eval_batch_size=16"]
ONLY = ["attack=fgsm,pgd"]  # 2 attacks x 2 budgets: 4 cells on one detector
# (kill point, what the folders must show right after it, so the kill hit what it names)
KILLS = [
    ("data.example:30", "incomplete dataset folder"),
    ("data.prepared:1", "records without report"),
    ("training.epoch:1", "no checkpoint"),
    ("checkpoint.write:1", "temporary checkpoint file"),
    ("checkpoint.weights:1", "weights without metadata"),
    ("store.put:2", "1 cell stored"),
    ("cell.computed:1", "1 cell stored"),
]
# Per-run values that are not results: timings, when the row was written, its environment
# block and extra_json (which records whether the detector came from the cache).
NOT_RESULTS = {"wall_time", "compile_time", "images_per_second", "created_at", "env_json",
               "extra_json"}


def _dfjax_run(base: Path, xla_cache: Path, kill_after: str | None = None
               ) -> subprocess.CompletedProcess:
    """`dfjax run` of the small matrix with its store, data and checkpoints under `base`,
    its compiled programs in `xla_cache`."""
    env = {**os.environ, "DFJAX_DATA_DIR": str(base / "data"),
           "DFJAX_CHECKPOINT_DIR": str(base / "ckpt"), "DFJAX_COMPILE_CACHE_DIR": str(xla_cache),
           "DFJAX_CPU_DEVICES": "2"}
    env.pop("DFJAX_TEST_KILL_AFTER", None)
    if kill_after is not None:
        env["DFJAX_TEST_KILL_AFTER"] = kill_after
    args = ["run", "--config", "smoke", "--store", str(base / "s.sqlite"), "--no-progress"]
    args += [a for s in SETTINGS for a in ("--set", s)] + [a for o in ONLY for a in ("--only", o)]
    return subprocess.run([sys.executable, "-m", "dfjax.cli", *args], env=env,
                          capture_output=True, text=True, check=False, timeout=600)


def _results(path: Path) -> dict[str, dict]:
    """cell_id -> stored columns and metrics (less NOT_RESULTS; NaN as None) and the
    per-example arrays as lists."""
    with Store(path) as store:
        out = {}
        for row in store.rows():
            result = {k: None if isinstance(v, float) and math.isnan(v) else v
                      for k, v in row.items() if k not in NOT_RESULTS}
            examples = store.examples(row["cell_id"])
            result["examples"] = examples and {
                k: [None if isinstance(x, float) and math.isnan(x) else x for x in v.tolist()]
                for k, v in examples.items()}
            out[row["cell_id"]] = result
        return out


def _store_facts(path: Path) -> tuple[list[str], str, int]:
    """(cell ids of every row, in insertion order; integrity_check; ok rows whose
    examples are not all there)."""
    db = sqlite3.connect(path)
    try:
        ids = [r[0] for r in db.execute("SELECT cell_id FROM cells ORDER BY rowid")]
        check = db.execute("PRAGMA integrity_check").fetchone()[0]
        partial = db.execute(
            "SELECT COUNT(*) FROM cells c WHERE status = 'ok' AND n_examples != "
            "(SELECT COUNT(*) FROM examples e WHERE e.cell_id = c.cell_id)").fetchone()[0]
    finally:
        db.close()
    return ids, check, partial


def _folder_state(base: Path) -> set[str]:
    """What the data and checkpoint folders show, in KILLS' words."""
    state = set()
    data, ckpt = base / "data", base / "ckpt"
    if any(data.rglob("incomplete.*")):
        state.add("incomplete dataset folder")
    for info in data.rglob("dataset_info.json"):
        if not (info.parents[2] / "preparation_report.json").exists():
            state.add("records without report")
    weights = list(ckpt.glob("*.msgpack"))
    if not weights and not any(ckpt.glob("*.tmp*")):
        state.add("no checkpoint")
    if any(ckpt.glob("*.tmp*")):
        state.add("temporary checkpoint file")
    if any(not w.with_suffix(".json").exists() for w in weights):
        state.add("weights without metadata")
    if base.joinpath("s.sqlite").exists():
        state.add(f"{len(_store_facts(base / 's.sqlite')[0])} cell stored")
    return state


def _assert_only_complete_artifacts(base: Path) -> None:
    """Every prepared dataset copy is complete (records, spec, report) with no leftovers
    of a killed preparation; every checkpoint is a weights file whose sha256 its metadata
    names, with no temporary files beside them."""
    data, ckpt = base / "data", base / "ckpt"
    leftovers = [p for p in data.rglob("*") if p.name.startswith("incomplete.")
                 or ".tmp" in p.name or ".stale" in p.name]
    assert leftovers == []
    roots = [p for p in (data / "synthetic_faces").iterdir() if p.is_dir()]
    assert roots
    for root in roots:
        assert (root / "preparation_report.json").exists() and (root / "spec.json").exists()
        assert len(list(root.glob("*/*/dataset_info.json"))) == 1
    files = sorted(p.name for p in ckpt.iterdir())
    ids = sorted({Path(f).stem for f in files})
    assert files == sorted(f"{i}{ext}" for i in ids for ext in (".json", ".msgpack"))
    for detector_id in ids:
        meta = json.loads((ckpt / f"{detector_id}.json").read_text())
        blob = (ckpt / f"{detector_id}.msgpack").read_bytes()
        assert hashlib.sha256(blob).hexdigest() == meta["sha256"]


def test_sigkill_at_seven_points_and_resume_equals_an_uninterrupted_run(tmp_path,
                                                                          xla_cache_dir):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    done = _dfjax_run(reference, xla_cache_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = _results(reference / "s.sqlite")
    config = override(get_config("smoke"), SETTINGS)
    cell_ids = {c.cell_id for c in expand(config, parse_only(ONLY))}
    assert set(expected) == cell_ids and len(cell_ids) == 4

    for kill_after, shows in KILLS:
        run = _dfjax_run(killed, xla_cache_dir, kill_after)
        assert run.returncode == -signal.SIGKILL, (kill_after, run.stderr[-3000:])
        assert shows in _folder_state(killed), (kill_after, _folder_state(killed))
        if (killed / "s.sqlite").exists():  # whole cells only, never a part of one
            ids, check, partial = _store_facts(killed / "s.sqlite")
            assert check == "ok" and partial == 0 and len(ids) == len(set(ids))

    final = _dfjax_run(killed, xla_cache_dir)
    assert final.returncode == 0, final.stderr[-3000:]
    assert "0 failed" in final.stdout
    ids, check, partial = _store_facts(killed / "s.sqlite")
    assert check == "ok" and partial == 0
    assert sorted(ids) == sorted(cell_ids)  # each cell exactly once
    assert _results(killed / "s.sqlite") == expected  # the same numbers, exactly
    with Store(killed / "s.sqlite") as store:
        assert store.claims() == {}  # the killed runs' claims were taken over and released
    _assert_only_complete_artifacts(killed)
