"""The environment block stored with every result row."""

from __future__ import annotations

import datetime
import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_state(cwd: Path) -> tuple[str, str]:
    """(short revision, "true"/"false": tracked files differ from it) of the git work tree
    at `cwd`; ("unknown", "unknown") outside one or without git."""
    try:
        revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                  text=True, timeout=5, cwd=cwd)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, cwd=cwd)
    except (OSError, subprocess.SubprocessError):
        return "unknown", "unknown"
    if revision.returncode != 0 or status.returncode != 0:
        return "unknown", "unknown"
    return revision.stdout.strip(), str(bool(status.stdout.strip())).lower()


@functools.cache
def environment() -> dict[str, str]:
    import jax

    revision, dirty = git_state(Path(__file__).resolve().parent)
    env = {"python": platform.python_version(), "platform": platform.platform(),
           "cpu": _cpu_model(), "git_revision": revision, "git_dirty": dirty,
           "device": str(jax.devices()[0].device_kind), "device_count": str(jax.device_count())}
    for package in ("dfjax", "jax", "jaxlib", "flax", "optax", "numpy"):
        try:
            env[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            env[package] = "not installed"
    return env


def provenance(splits, detector) -> dict[str, str]:
    """What one cell's numbers came from beyond the environment: the dataset's version
    (`splits.info["version"]`), whether the detector was trained in this run or loaded
    from the checkpoint cache, and when its training finished (ISO 8601, UTC)."""
    trained_at = detector.trained_at
    return {
        "dataset_version": str(splits.info.get("version", "unknown")),
        "detector_source": "cache" if detector.from_cache else "trained",
        "detector_trained_at": "unknown" if trained_at is None else
        datetime.datetime.fromtimestamp(trained_at, datetime.UTC).isoformat(timespec="seconds"),
    }
