"""dfjax's settings from the environment: the only module of dfjax that reads os.environ.

The edges (the command line, `run_all.py`, the benches) resolve these and pass explicit
values down. A library function whose argument is left None resolves it here, so the
Python API works without arguments; no other module reads the environment.

    DFJAX_DATA_DIR        prepared datasets          (default ~/.cache/dfjax/data)
    DFJAX_CHECKPOINT_DIR  trained detectors          (default ~/.cache/dfjax/checkpoints)
    DFJAX_CPU_DEVICES     JAX CPU devices to split attack batches across (default: the
                          cores this process may run on; see dfjax/xla.py)
    DFJAX_COMPILE_CACHE_DIR  XLA's persistent compilation cache for `dfjax run`
                          (default ~/.cache/dfjax/xla; "off" disables it)
    DFJAX_TEST_KILL_AFTER  tests only: "<point>:<n>" makes the process SIGKILL itself the
                          n-th time it reaches kill point <point> (`kill_point`)

Example:
    >>> from dfjax import settings
    >>> settings.data_dir("/tmp/d")  # an explicit value wins over the environment
    PosixPath('/tmp/d')
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter
from pathlib import Path

CACHE_DIR = Path.home() / ".cache" / "dfjax"


def _path(explicit: Path | str | None, variable: str, default: Path) -> Path:
    if explicit is not None:
        return Path(explicit)
    value = os.environ.get(variable)
    return Path(value) if value else default


def data_dir(explicit: Path | str | None = None) -> Path:
    """Where datasets are prepared: `explicit`, else $DFJAX_DATA_DIR, else
    ~/.cache/dfjax/data."""
    return _path(explicit, "DFJAX_DATA_DIR", CACHE_DIR / "data")


def checkpoint_dir(explicit: Path | str | None = None) -> Path:
    """Where trained detectors are cached: `explicit`, else $DFJAX_CHECKPOINT_DIR, else
    ~/.cache/dfjax/checkpoints."""
    return _path(explicit, "DFJAX_CHECKPOINT_DIR", CACHE_DIR / "checkpoints")


def compile_cache_dir(explicit: Path | str | None = None) -> Path | None:
    """Where `dfjax run` keeps compiled XLA programs between processes: `explicit`, else
    $DFJAX_COMPILE_CACHE_DIR, else ~/.cache/dfjax/xla; None when the setting is "off"."""
    if explicit is None and os.environ.get("DFJAX_COMPILE_CACHE_DIR", "").strip() == "off":
        return None
    return _path(explicit, "DFJAX_COMPILE_CACHE_DIR", CACHE_DIR / "xla")


def cpu_device_count(explicit: int | None = None) -> int:
    """How many JAX CPU devices to ask for: `explicit`, else $DFJAX_CPU_DEVICES, else the
    number of cores this process may run on. Raises ValueError for a count below 1 or a
    setting that is not a whole number (the message names the variable)."""
    if explicit is not None:
        if explicit < 1:
            raise ValueError(f"CPU device count must be >= 1, got {explicit}")
        return int(explicit)
    value = os.environ.get("DFJAX_CPU_DEVICES", "").strip()
    if not value:
        if hasattr(os, "sched_getaffinity"):  # Linux: the cores this process may run on
            return len(os.sched_getaffinity(0))
        return os.cpu_count() or 1
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"DFJAX_CPU_DEVICES must be a whole number of devices >= 1, "
                         f"got {value!r}")
    return int(value)


KILL_POINTS = {
    "data.example": "a dataset preparation wrote this many examples (mid-write)",
    "data.prepared": "a dataset's records are in place, its report not yet written",
    "training.epoch": "a detector finished this many training epochs",
    "checkpoint.write": "half of a checkpoint file's bytes are written",
    "checkpoint.weights": "a checkpoint's weights are written, its metadata not yet",
    "store.put": "a cell's row, metrics and examples are written, not yet committed",
    "cell.computed": "a cell is computed, not yet stored",
}
_kill_point_visits: Counter[str] = Counter()


def kill_point(point: str) -> None:
    """Tests only: SIGKILL this process the n-th time it reaches `point` when
    $DFJAX_TEST_KILL_AFTER is "<point>:<n>" (n >= 1; KILL_POINTS names the points), as a
    power cut or `kill -9` would; otherwise nothing. Lets a test kill `dfjax run` at a
    known place, deterministically. A malformed setting is a ValueError naming it."""
    value = os.environ.get("DFJAX_TEST_KILL_AFTER", "").strip()
    if not value:
        return
    name, _, count = value.rpartition(":")
    if name not in KILL_POINTS or not count.isdigit() or int(count) < 1:
        raise ValueError(f"DFJAX_TEST_KILL_AFTER must be <point>:<n> with n >= 1 and a point "
                         f"among {', '.join(KILL_POINTS)}; got {value!r}")
    if point != name:
        return
    _kill_point_visits[point] += 1
    if _kill_point_visits[point] == int(count):
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def keep_ray_usage_stats_local() -> None:
    """Turn Ray's usage statistics off unless the user set RAY_USAGE_STATS_ENABLED (they
    would be sent over the network, which a benchmark run must not need)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
