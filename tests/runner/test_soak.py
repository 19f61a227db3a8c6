"""Soak: the same small matrix run again and again against one store (ROUNDS rounds), as a
many-hour run would exercise the runner. Nothing may accumulate: the process's memory
(RSS) and open file descriptors stay flat after the first rounds, and every round stores
the same numbers.

How each round redoes its work: before a round, every cell is written back as 'failed'
through the store's own API (`Store.put`), and a run retries failed cells. So each round
runs the very same cells (same ids, same keys: the numbers must be identical) on the
very same store (rows replaced, never added), through a fresh `run_matrix` -- a new
AttackEvaluator, its attacks compiled anew (XLA's executables loaded from the test
session's compilation cache, tests/conftest.py), the detector loaded from the checkpoint
cache -- which is where a leak of executables, arrays or file handles would show. (New cells
per round would need other seeds or budgets, whose numbers legitimately differ.)
"""

import ctypes
import gc
import math
import os
import time

import pytest

from dfjax.configs import get_config
from dfjax.runner import expand, run_matrix
from dfjax.store import Store

pytestmark = pytest.mark.slow

# A fixed count, not a duration: the rounds got faster once the session kept compiled
# programs (tests/conftest.py), and a leak shows per round. Twice the 4 rounds within which
# a leak of one round's attacks or arrays would break RSS_GROWTH_BOUND_MIB.
ROUNDS = 8
ONLY = {"attack": ["fgsm", "pgd"]}  # 4 cells of the smoke matrix: 2 attacks x 2 budgets
# RSS after the last round may exceed RSS after round 2 by at most this much. Round 1
# trains the detector and fills JAX's and XLA's one-time caches. RSS is read after
# gc.collect() and glibc's malloc_trim(0), which hands freed heap back to the OS: without
# it RSS wandered by +-50 MiB from round to round (740-845 MiB over 14 rounds, no trend),
# with it it rose 617 -> 627 MiB over 8 (JAX's bounded compile caches filling). A leak of
# a round's compiled attacks or arrays (tens of MiB each) would pass this within 4 rounds.
RSS_GROWTH_BOUND_MIB = 32
# Per-round values that are not results: timings, when the row was written, its environment
# block and extra_json (which records whether the detector came from cache: round 1 trains).
NOT_RESULTS = {"wall_time", "compile_time", "images_per_second", "created_at", "env_json",
               "extra_json"}


def _trim_heap() -> None:
    """Collect garbage and return freed heap pages to the OS (glibc's malloc_trim; a no-op
    where the C library has none), so RSS shows what is alive, not the allocator's cache."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss_mib() -> float:
    """This process's resident memory now (VmRSS, not the peak), in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _results(store: Store) -> dict[str, dict]:
    """cell_id -> its stored columns and metrics, less what varies from run to run (NaN as
    None, so equal NaNs compare equal)."""
    return {r["cell_id"]: {k: None if isinstance(v, float) and math.isnan(v) else v
                           for k, v in r.items() if k not in NOT_RESULTS}
            for r in store.rows()}


def test_repeated_rounds_keep_memory_fds_and_results_flat(tmp_path):
    config = get_config("smoke")
    cells = expand(config, ONLY)
    dirs = {"data_dir": tmp_path / "data", "checkpoint_dir": tmp_path / "ckpt"}
    rss, fds, results, seconds = [], [], [], []
    with Store(tmp_path / "soak.sqlite") as store:
        for _ in range(ROUNDS):
            start = time.perf_counter()
            for cell in cells:  # make the run redo every cell (failed cells are retried)
                store.put(cell, status="failed", error="soak: redo this cell")
            summary = run_matrix(config, store, only=ONLY, progress=False, log=lambda _: None,
                                 **dirs)
            assert summary.done == len(cells) and summary.failed == 0, summary.failures
            _trim_heap()
            rss.append(_rss_mib())
            fds.append(_open_fds())
            results.append(_results(store))
            assert store.count() == {"ok": len(cells)}  # replaced, never added
            seconds.append(time.perf_counter() - start)
    report = (f"{ROUNDS} rounds, seconds per round {[round(t, 1) for t in seconds]}; RSS MiB "
              f"per round {[round(r) for r in rss]}; open fds {fds}")
    print(report)
    assert rss[-1] - rss[1] <= RSS_GROWTH_BOUND_MIB, report
    assert fds[-1] <= fds[1], report
    for i, round_results in enumerate(results[1:], start=2):
        assert round_results == results[0], f"round {i} stored other numbers than round 1"
