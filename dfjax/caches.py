"""What dfjax keeps on disk between runs, listed and cleared (`dfjax cache list|clear`).

Three caches: prepared datasets (`<data_dir>/<name>/<spec digest>/`), trained detectors
(`<checkpoint_dir>/<detector_id>.msgpack` + `.json`) and XLA's compiled programs (the
compile cache folder). A dataset copy or detector is *current* when the code fingerprint
it records is the one the current code gives its spec (dfjax.fingerprint), *stale* when
it records another or none (a run prepares or trains it again), *orphaned* when no spec
of the current code maps to it any more (its data version or spec format changed: no run
will read it). Compiled programs are keyed by XLA on the program itself, never stale.

Clearing removes only entries listed here, each checked to lie inside its cache folder;
the downloads a real dataset is prepared from (`<data_dir>/manual/`) are never touched.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from dfjax.config import AttackSpec, Cell, DatasetSpec, DefenceSpec, ModelSpec, TrainSpec
from dfjax.data import dataset_fingerprint
from dfjax.data._tfds import prepared_copies
from dfjax.training.detectors import meta_fingerprint, training_fingerprint

KINDS = ("datasets", "detectors", "xla")


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    """One cached thing. kind: one of KINDS; state: "current", "stale", "orphaned" or
    "unknown" (the current fingerprint could not be computed), "-" for XLA programs;
    paths: what clearing it removes; size: bytes on disk."""

    kind: str
    label: str
    state: str
    detail: str
    size: int
    paths: tuple[Path, ...]


def _size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() or p.is_symlink())


def _spec(cls, found: dict):
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in found.items() if k in fields})


def _state(recorded: str | None, current: str | None) -> str:
    if current is None:
        return "unknown"
    return "current" if recorded == current else "stale"


def dataset_entries(data_dir: Path) -> list[CacheEntry]:
    """Every complete prepared copy under `data_dir` (not the manual downloads)."""
    entries = []
    names = sorted(p.name for p in Path(data_dir).iterdir() if p.is_dir() and p.name != "manual") \
        if Path(data_dir).is_dir() else []
    for name in names:
        for copy in prepared_copies(data_dir, name):
            # no spec recorded: prepared before specs (and fingerprints) were kept
            state, detail, label = "stale", "spec not recorded", f"{name} ({copy.path.name})"
            if copy.spec is not None:
                try:
                    spec = _spec(DatasetSpec, copy.spec)
                    label = f"{spec.label()} {spec.image_size}px n={spec.num_examples}"
                    if spec.digest() != copy.path.name:
                        state, detail = "orphaned", "no current spec maps here (data version?)"
                    else:
                        current = dataset_fingerprint(spec, data_dir=data_dir)
                        state = _state(copy.fingerprint, current)
                        detail = f"fingerprint {copy.fingerprint or 'not recorded'}" + (
                            "" if state == "current" else f" (current code: {current})")
                except Exception as e:  # noqa: BLE001 -- an unknown dataset or option
                    state, detail = "unknown", f"cannot check: {type(e).__name__}: {e}"
            entries.append(CacheEntry("datasets", label, state, detail, _size(copy.path),
                                      (copy.path,)))
    return entries


def detector_entries(checkpoint_dir: Path) -> list[CacheEntry]:
    """Every detector checkpoint (`<id>.json` metadata and its `<id>.msgpack` weights)."""
    entries = []
    folder = Path(checkpoint_dir)
    for meta_path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        weights = meta_path.with_suffix(".msgpack")
        paths = tuple(p for p in (weights, meta_path) if p.exists())
        state, detail, label = "unknown", "unreadable metadata", meta_path.stem
        try:
            meta = json.loads(meta_path.read_text())
            cell = Cell(dataset=_spec(DatasetSpec, meta["dataset"]),
                        model=_spec(ModelSpec, meta["model"]),
                        training=_spec(TrainSpec, meta["training"]), defence=DefenceSpec(),
                        attack=AttackSpec(name="noise"), n_eval=1, seed=0)
            label = (f"{cell.dataset.label()} {cell.model.label()}/{cell.training.label()} "
                     f"({meta_path.stem})")
            recorded = meta_fingerprint(meta)
            trained = meta.get("trained_at")
            when = "" if not isinstance(trained, (int, float)) else \
                f"trained {_iso(trained)}, "
            if cell.detector_id != meta_path.stem:
                state, detail = "orphaned", when + "no current spec maps here"
            else:
                current = training_fingerprint(cell)
                state = _state(recorded, current)
                detail = when + f"fingerprint {recorded or 'not recorded'}" + (
                    "" if state == "current" else f" (current code: {current})")
        except Exception as e:  # noqa: BLE001 -- another tool's file, an unknown model
            detail = f"cannot check: {type(e).__name__}: {e}"
        entries.append(CacheEntry("detectors", label, state, detail,
                                  sum(_size(p) for p in paths), paths))
    return entries


def _iso(seconds: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(timespec="seconds")


def xla_entries(compile_cache_dir: Path | None) -> list[CacheEntry]:
    """The XLA compile cache as one entry (its program count and size), if it exists."""
    if compile_cache_dir is None or not Path(compile_cache_dir).is_dir():
        return []
    files = tuple(sorted(p for p in Path(compile_cache_dir).iterdir()))
    return [CacheEntry("xla", str(compile_cache_dir), "-", f"{len(files)} entries",
                       sum(_size(p) for p in files), files)]


def list_caches(*, data_dir: Path, checkpoint_dir: Path, compile_cache_dir: Path | None
                ) -> list[CacheEntry]:
    """Every entry of the three caches."""
    return (dataset_entries(data_dir) + detector_entries(checkpoint_dir)
            + xla_entries(compile_cache_dir))


def _inside(path: Path, root: Path) -> bool:
    """`path` lies strictly inside `root` (its parent folder resolved; a link itself
    counts as inside when its own location is)."""
    try:
        where = path.parent.resolve() / path.name
        return where.is_relative_to(root.resolve()) and where != root.resolve()
    except (OSError, RuntimeError):
        return False


def clear_caches(entries: list[CacheEntry], *, roots: dict[str, Path | None]) -> list[Path]:
    """Remove each entry's paths; returns what was removed. roots: kind -> its cache
    folder. Raises ValueError, before removing anything, for a path outside its folder
    (or a kind without one) or inside the data dir's manual downloads."""
    for entry in entries:
        root = roots.get(entry.kind)
        for path in entry.paths:
            manual = root is not None and entry.kind == "datasets" and \
                _inside(path, Path(root) / "manual")
            if root is None or not _inside(path, Path(root)) or manual:
                raise ValueError(f"cache clear: {path} is not inside the {entry.kind} cache "
                                 f"{root}; nothing removed")
    removed = []
    for entry in entries:
        for path in entry.paths:
            if path.is_symlink() or path.is_file():
                path.unlink(missing_ok=True)
            elif path.is_dir():
                shutil.rmtree(path)
            else:
                continue
            removed.append(path)
    return removed


def human_size(size: int) -> str:
    """1536 -> "1.5 KiB"."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
