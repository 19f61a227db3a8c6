"""Content-addressed detector checkpoints: written atomically, verified on load.

A checkpoint is `<dir>/<detector_id>.msgpack` (flax serialization) beside
`<detector_id>.json` holding its sha256, the training spec and history. A file
whose hash does not match is reported corrupt and retrained, never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from flax import serialization

from dfjax import settings


class CorruptCheckpointError(RuntimeError):
    pass


def default_checkpoint_dir() -> Path:
    """`dfjax.settings.checkpoint_dir()`: $DFJAX_CHECKPOINT_DIR, else
    `~/.cache/dfjax/checkpoints`."""
    return settings.checkpoint_dir()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_checkpoint(directory: Path, detector_id: str, variables: Any, meta: dict) -> Path:
    """Write weights then metadata (the metadata names the weights' hash, so a crash
    between the two leaves a checkpoint that fails verification, not a wrong one)."""
    directory.mkdir(parents=True, exist_ok=True)
    blob = serialization.to_bytes(variables)
    weights = directory / f"{detector_id}.msgpack"
    _atomic_write(weights, blob)
    meta = {**meta, "sha256": hashlib.sha256(blob).hexdigest()}
    _atomic_write(directory / f"{detector_id}.json", json.dumps(meta, indent=1).encode())
    return weights


def load_checkpoint(directory: Path, detector_id: str, target: Any) -> tuple[Any, dict] | None:
    """(variables, meta) if a checkpoint exists; None if none does.

    Raises CorruptCheckpointError naming the file when the hash or structure is wrong.
    """
    weights = directory / f"{detector_id}.msgpack"
    meta_path = directory / f"{detector_id}.json"
    if not weights.exists() or not meta_path.exists():
        return None
    blob = weights.read_bytes()
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise CorruptCheckpointError(f"{meta_path}: unreadable metadata ({e})") from e
    if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
        raise CorruptCheckpointError(f"{weights}: sha256 does not match {meta_path.name}")
    try:
        variables = serialization.from_bytes(target, blob)
    except Exception as e:  # msgpack / structure mismatch
        raise CorruptCheckpointError(f"{weights}: cannot be restored ({e})") from e
    return variables, meta
