"""Runs sharing one store: two `dfjax run` processes at once store every cell exactly once
(each cell claimed by one of them, `Store.claim`), leave the store whole, and both exit
0; in one process, a cell claimed by another live run is left to it and counted, and a
dead run's claim is taken over."""

import os
import re
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from dfjax.cli import main
from dfjax.configs import get_config
from dfjax.runner import expand
from dfjax.runner.expand import override, parse_only
from dfjax.store import Store, _process_start

pytestmark = pytest.mark.slow

SETTINGS = ["dataset.num_examples=120", "training.epochs=1", "n_eval=16", "eval_batch_size=16"]
ONLY = ["attack=noise,fgsm,pgd"]  # 3 attacks x 2 budgets: 6 cells on one detector
SUMMARY = re.compile(r"(\d+) cells: (\d+) run, (\d+) already stored, (\d+) failed")
CLAIMED = re.compile(r"(\d+) cells left to another run \(claimed\)")


def _args(store: Path, only: list[str] = ONLY) -> list[str]:
    return (["run", "--config", "smoke", "--store", str(store), "--no-progress"]
            + [a for s in SETTINGS for a in ("--set", s)]
            + [a for o in only for a in ("--only", o)])


def _env(caches: Path, xla_cache: Path) -> dict[str, str]:
    """Data and checkpoints in `caches`; compiled programs in `xla_cache` (the test
    session's, tests/conftest.py), shared by the runs as a user's runs share theirs."""
    return {**os.environ, "DFJAX_DATA_DIR": str(caches / "data"),
            "DFJAX_CHECKPOINT_DIR": str(caches / "ckpt"),
            "DFJAX_COMPILE_CACHE_DIR": str(xla_cache), "DFJAX_CPU_DEVICES": "2"}


@pytest.fixture(scope="module")
def caches(tmp_path_factory, xla_cache_dir) -> Path:
    """Data and checkpoint folders with the matrix's dataset prepared and detector trained
    (by a run of its noise cells into a scratch store)."""
    base = tmp_path_factory.mktemp("shared_caches")
    done = subprocess.run([sys.executable, "-m", "dfjax.cli",
                           *_args(base / "scratch.sqlite", ["attack=noise"])],
                          env=_env(base, xla_cache_dir), capture_output=True, text=True,
                          check=False, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return base


def _cell_ids() -> list[str]:
    return [c.cell_id for c in expand(override(get_config("smoke"), SETTINGS), parse_only(ONLY))]


def test_two_runs_on_one_store_compute_each_cell_once(caches, tmp_path, xla_cache_dir):
    """Two processes started together on one store: both exit 0, the cells they report
    computing ("N run") add up to the matrix (none computed twice), every cell is stored
    once, no claim is left and SQLite's integrity check passes."""
    store = tmp_path / "shared.sqlite"
    procs = [subprocess.Popen([sys.executable, "-m", "dfjax.cli", *_args(store)],
                              env=_env(caches, xla_cache_dir), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-3000:] for _, err in outputs]
    computed, claimed = [], []
    for out, _ in outputs:
        total, run, _, failed = map(int, SUMMARY.search(out).groups())
        assert total == len(_cell_ids()) and failed == 0
        computed.append(run)
        claimed.append(sum(int(n) for n in CLAIMED.findall(out)))
    assert sum(computed) == len(_cell_ids()), (computed, claimed)
    db = sqlite3.connect(store)
    ids = [r[0] for r in db.execute("SELECT cell_id FROM cells WHERE status = 'ok'")]
    assert sorted(ids) == sorted(_cell_ids())
    assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.sqlite"]  # no -wal, -shm


def test_a_cell_claimed_by_a_live_run_is_left_to_it_and_a_dead_runs_claim_taken(
        caches, tmp_path, monkeypatch, capsys, xla_cache_dir):
    """In-process `dfjax run`: a cell claimed by a live other process is not computed and
    is reported as left to another run; once that claim's lease is gone, the next run
    computes it. A claim of a process that has ended is taken over at once."""
    for name, value in _env(caches, xla_cache_dir).items():
        monkeypatch.setenv(name, value)
    store, (held, dead, *_) = tmp_path / "s.sqlite", _cell_ids()
    ppid = os.getppid()  # pytest's parent: alive, and not this process
    live_owner = f"{socket.gethostname()}:{ppid}:{_process_start(ppid)}"
    child = subprocess.Popen(["sleep", "30"])
    dead_owner = f"{socket.gethostname()}:{child.pid}:{_process_start(child.pid)}"
    child.kill()
    child.wait()
    with Store(store) as s:
        assert s.claim(held, live_owner, ttl=600) and s.claim(dead, dead_owner, ttl=600)

    assert main(_args(store)) == 0
    out = capsys.readouterr().out
    assert "1 cells left to another run (claimed)" in out
    assert SUMMARY.search(out).groups()[1:] == (str(len(_cell_ids()) - 1), "0", "0")
    with Store(store) as s:
        assert not s.has_result(held) and s.has_result(dead)
        assert s.claims() == {held: (live_owner, s.claims()[held][1])}
        s.renew(live_owner, ttl=-1)  # its lease runs out (the process stopped renewing)

    assert main(_args(store)) == 0
    out = capsys.readouterr().out
    assert SUMMARY.search(out).groups()[1:] == ("1", str(len(_cell_ids()) - 1), "0")
    assert "left to another run" not in out
    with Store(store) as s:
        assert s.has_result(held) and s.claims() == {}
