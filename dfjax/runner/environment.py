"""The environment block stored with every result row."""

from __future__ import annotations

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


def _git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@functools.cache
def environment() -> dict[str, str]:
    import jax

    env = {"python": platform.python_version(), "platform": platform.platform(),
           "cpu": _cpu_model(), "git_revision": _git_revision(),
           "device": str(jax.devices()[0].device_kind), "device_count": str(jax.device_count())}
    for package in ("dfjax", "jax", "jaxlib", "flax", "optax", "numpy"):
        try:
            env[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            env[package] = "not installed"
    return env
