"""Content-addressed detector checkpoints: written atomically, verified on load.

A checkpoint is `<dir>/<detector_id>.msgpack` (flax serialization: msgpack, which holds
data only, never code) beside `<detector_id>.json` holding its sha256, the training spec,
history and the fingerprint of the code that trained it (checked by
`dfjax.training.detectors.get_detector`: a checkpoint of other code is retrained). A
checkpoint whose metadata is unreadable, whose hash does not match, or whose arrays
are not the target's tree (names, shapes, dtypes) is reported corrupt
(`CorruptCheckpointError`, naming the file) and retrained, never loaded.

Each file is written to `<name>.tmp<pid>` and renamed into place, the metadata last: a
process killed mid-save leaves either no checkpoint (retrained) or a whole one, never a
half-written file under a checkpoint's name. Temporary files of processes that are gone
are removed by the next save.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from dfjax import settings

_SHA256 = re.compile(r"[0-9a-f]{64}")


class CorruptCheckpointError(RuntimeError):
    """A checkpoint that exists but cannot be trusted; the message names the file."""


def default_checkpoint_dir() -> Path:
    """`dfjax.settings.checkpoint_dir()`: $DFJAX_CHECKPOINT_DIR, else
    `~/.cache/dfjax/checkpoints`."""
    return settings.checkpoint_dir()


_TEMPORARY = re.compile(r".+\.tmp(\d+)")


def _atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file renamed into place (flushed to disk
    first), so `path` holds either its old bytes or all of `data`."""
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data[:len(data) // 2])
        f.flush()
        settings.kill_point("checkpoint.write")
        f.write(data[len(data) // 2:])
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete the temporary files (`*.tmp<pid>`) in `directory` left by processes that are
    no longer running (killed mid-save); returns them. A live writer's are kept."""
    removed = []
    for path in directory.glob("*.tmp*"):
        match = _TEMPORARY.fullmatch(path.name)
        if match and not _pid_running(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def save_checkpoint(directory: Path, detector_id: str, variables: Any, meta: dict) -> Path:
    """Write weights then metadata (the metadata names the weights' hash, so a crash
    between the two leaves a checkpoint that fails verification, not a wrong one)."""
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(directory)
    blob = serialization.to_bytes(variables)
    weights = directory / f"{detector_id}.msgpack"
    _atomic_write(weights, blob)
    settings.kill_point("checkpoint.weights")
    meta = {**meta, "sha256": hashlib.sha256(blob).hexdigest()}
    _atomic_write(directory / f"{detector_id}.json", json.dumps(meta, indent=1).encode())
    return weights


def _read_meta(meta_path: Path) -> dict:
    """The metadata JSON object, with a well-formed `sha256`; CorruptCheckpointError if not."""
    try:
        meta = json.loads(meta_path.read_bytes())
    except (OSError, ValueError, RecursionError) as e:  # ValueError: not UTF-8 or not JSON
        raise CorruptCheckpointError(f"{meta_path}: unreadable metadata ({e})") from e
    if not isinstance(meta, dict):
        raise CorruptCheckpointError(f"{meta_path}: metadata is a JSON "
                                     f"{type(meta).__name__}, not an object")
    if not isinstance(meta.get("sha256"), str) or not _SHA256.fullmatch(meta["sha256"]):
        raise CorruptCheckpointError(f"{meta_path}: no sha256 of the weights in the metadata")
    return meta


def _check_tree(weights: Path, variables: Any, target: Any) -> None:
    """Every restored leaf has its target leaf's shape and dtype (flax checks names only)."""
    restored = jax.tree_util.tree_flatten_with_path(variables)[0]
    expected = jax.tree_util.tree_flatten_with_path(target)[0]
    if [p for p, _ in restored] != [p for p, _ in expected]:
        raise CorruptCheckpointError(f"{weights}: its arrays are not the model's")
    for (path, got), (_, want) in zip(restored, expected):
        if np.shape(got) != np.shape(want) or np.result_type(got) != np.result_type(want):
            raise CorruptCheckpointError(
                f"{weights}: {jax.tree_util.keystr(path)} is {np.result_type(got)} "
                f"{np.shape(got)}, the model has {np.result_type(want)} {np.shape(want)} "
                "(another model's checkpoint?)")


def load_checkpoint(directory: Path, detector_id: str, target: Any) -> tuple[Any, dict] | None:
    """(variables, meta) if a checkpoint exists; None if none does.

    target: the model's freshly initialised variables (their tree, shapes and dtypes are
    what the checkpoint must hold). Raises CorruptCheckpointError naming the file when
    either file is unreadable, the hash does not match, or the tree is not the target's.
    """
    weights = directory / f"{detector_id}.msgpack"
    meta_path = directory / f"{detector_id}.json"
    if not weights.exists() or not meta_path.exists():
        return None
    meta = _read_meta(meta_path)
    try:
        blob = weights.read_bytes()
    except OSError as e:
        raise CorruptCheckpointError(f"{weights}: unreadable ({e})") from e
    if hashlib.sha256(blob).hexdigest() != meta["sha256"]:
        raise CorruptCheckpointError(f"{weights}: sha256 does not match {meta_path.name}")
    try:
        variables = serialization.from_bytes(target, blob)
    except Exception as e:  # msgpack format or tree mismatch; msgpack never runs code
        raise CorruptCheckpointError(f"{weights}: cannot be restored ({e})") from e
    _check_tree(weights, variables, target)
    return variables, meta
