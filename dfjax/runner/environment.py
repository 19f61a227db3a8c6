"""The environment block stored with every result row."""

from __future__ import annotations

import datetime
import functools
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from dfjax.fingerprint import code_fingerprint, combine
from dfjax.training.detectors import training_fingerprint


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


def provenance(splits, detector, training=None) -> dict[str, str]:
    """What one cell's numbers came from beyond the environment: the dataset's version
    (`splits.info["version"]`), whether the detector was trained in this run or loaded
    from the checkpoint cache, and when its training finished (ISO 8601, UTC).

    training (the cell's TrainSpec, optional): adds `detector_init`, where the weights
    started (`initialisation`). A dataset whose preparation trained a GAN (gan_fakes)
    adds `dataset_gan_history`: JSON [{epoch, d_loss, g_loss}, ...], the D and G losses
    per epoch the report draws as the paper's Fig. 4.
    """
    trained_at = detector.trained_at
    out = {
        "dataset_version": str(splits.info.get("version", "unknown")),
        "detector_source": "cache" if detector.from_cache else
        "retrained (stale cache)" if getattr(detector, "stale_replaced", False) else "trained",
        "detector_trained_at": "unknown" if trained_at is None else
        datetime.datetime.fromtimestamp(trained_at, datetime.UTC).isoformat(timespec="seconds"),
    }
    if "dataset_cache" in splits.info:  # a stale prepared copy, used or prepared again
        out["dataset_cache"] = str(splits.info["dataset_cache"])
    if training is not None:
        out["detector_init"] = initialisation(training)
    gan = (splits.info.get("report") or {}).get("gan")
    if isinstance(gan, dict) and isinstance(gan.get("history"), list):
        out["dataset_gan_history"] = json.dumps(
            [{"epoch": h["epoch"], "d_loss": h["d_loss"], "g_loss": h["g_loss"]}
             for h in gan["history"]], separators=(",", ":"))
    return out


def initialisation(training) -> str:
    """Where a detector's weights started, for its provenance: "init_from FILE (sha256
    PREFIX)" for pretrained weights, "warm start: standard, N epochs" for a fine-tuned
    detector of the matrix, else "from scratch". training: a TrainSpec."""
    init_from = training.option("init_from")
    if init_from:
        from dfjax.models.pretrained import weights_sha256

        try:
            digest = weights_sha256(init_from)[:16]
        except OSError as e:
            digest = f"unreadable now: {e.strerror or e}"
        return f"init_from {init_from} (sha256 {digest})"
    if training.option("warm_start_epochs"):
        return f"warm start: standard, {training.option('warm_start_epochs')} epochs"
    return "from scratch"


def evaluation_code_fingerprint() -> str:
    """The fingerprint of the evaluation code alone (the same for every cell): rows with
    different ones were scored by different code (the leaderboard warns)."""
    return code_fingerprint(["dfjax.runner.pipeline", "dfjax.data.subsets"],
                            stop=["dfjax.data", "dfjax.training"])


def evaluation_fingerprint(cell) -> str:
    """The fingerprint of the code that makes `cell`'s stored row (dfjax.fingerprint): the
    pipeline and what it imports (attacks, defences, metrics, models, losses, the store;
    not the data and training packages, which enter through) the detector's
    `training_fingerprint`, and for a transfer cell the source detector's too."""
    parts = [evaluation_code_fingerprint(), training_fingerprint(cell)]
    if cell.source is not None:
        parts.append(training_fingerprint(cell.source_cell()))
    return combine(*parts)
