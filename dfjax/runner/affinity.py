"""Pinning a worker process to its own cores, so that workers sharing a machine do not
oversubscribe it: XLA sizes its CPU thread pool from the process's CPU affinity, not from
OMP_NUM_THREADS, so a worker pins itself before JAX starts its backend.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path


def core_lock_dir() -> Path:
    """Where the workers of this node (of any run, this user) hold their core slots."""
    return Path(tempfile.gettempdir()) / f"dfjax-ray-cores-{os.getuid()}"


def pin_to_free_cores(count: int, lock_dir: Path | None = None):
    """Pin this process (every thread it has now, and so the threads they start) to
    `count` cores of the ones it may run on: slot k is cores [k*count, (k+1)*count) of
    `os.sched_getaffinity(0)`, held by an exclusive `flock` on lock_dir/slot-k. The kernel
    drops the lock when the process dies, so a restarted worker finds its slot free.

    Returns (cores, lock file or None): with every slot held by a live worker, this
    process keeps all its cores and holds none (it shares them). Keep the lock file open
    for as long as the process runs."""
    lock_dir = lock_dir or core_lock_dir()
    lock_dir.mkdir(parents=True, exist_ok=True)
    available = sorted(os.sched_getaffinity(0))
    for slot in range(len(available) // count):
        lock = open(lock_dir / f"slot-{slot}", "w")  # noqa: SIM115 -- held while we live
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        cores = set(available[slot * count:(slot + 1) * count])
        for thread_id in os.listdir("/proc/self/task"):
            try:
                os.sched_setaffinity(int(thread_id), cores)
            except OSError:  # a thread that ended meanwhile
                pass
        return cores, lock
    return set(available), None


def xla_thread_count() -> int:
    """The threads of XLA's CPU thread pool in this process (named tf_XLAEigen); 0 before
    JAX's CPU backend starts."""
    count = 0
    for thread_id in os.listdir("/proc/self/task"):
        try:
            name = Path(f"/proc/self/task/{thread_id}/comm").read_text().strip()
        except OSError:
            continue
        count += name.startswith("tf_XLAEigen")
    return count
