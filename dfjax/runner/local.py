"""Run a matrix on this machine: load each dataset and detector once, then run every
cell that uses them through the pipeline (`dfjax.runner.pipeline.run_cell`).

Cells already stored as 'ok' are skipped (a killed run resumes); a cell that raises
is stored as 'failed' with its error and the run goes on. Before any work, each dataset
is checked (`dfjax.data.missing_data`): one that is neither prepared nor preparable here
(a real set not downloaded) is reported once, and its cells are neither run nor stored.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from dfjax import settings
from dfjax.attacks.evaluate import AttackEvaluator
from dfjax.config import Cell, MatrixConfig
from dfjax.data import load_dataset, missing_data
from dfjax.data.base import DatasetSplits
from dfjax.runner.environment import environment, provenance
from dfjax.runner.expand import expand
from dfjax.runner.pipeline import run_cell, store_cell
from dfjax.store import Store
from dfjax.training.detectors import Detector, get_detector


@dataclasses.dataclass
class RunSummary:
    """What a run did, and where its time went (seconds)."""

    total: int = 0
    skipped: int = 0
    done: int = 0
    failed: int = 0
    seconds: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"data": 0.0, "training": 0.0, "attacks": 0.0})
    failures: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    # (dataset label, cells not run, message) per dataset whose data is not here
    unavailable: list[tuple[str, int, str]] = dataclasses.field(default_factory=list)

    @property
    def not_run(self) -> int:
        """Cells neither run nor stored because their data is not here."""
        return sum(n for _, n, _ in self.unavailable)


def _raise_if_failed(value, what: str):
    """Cached results may be the exception that building them raised: re-raise it per cell."""
    if isinstance(value, Exception):
        raise RuntimeError(f"{what} could not be built: {type(value).__name__}: {value}") from value
    return value


def _drop_unavailable(todo: list[Cell], data_dir: Path, summary: RunSummary,
                      log: Callable[[str], None]) -> list[Cell]:
    """The cells of `todo` whose dataset is here or can be prepared; each other dataset is
    logged once and counted in summary.unavailable. A check that raises (e.g. bad options)
    leaves its cells in, to fail with that error."""
    by_dataset: dict[str, list[Cell]] = {}
    for cell in todo:
        by_dataset.setdefault(cell.dataset.canonical(), []).append(cell)
    kept = set()
    for dataset_id, cells in by_dataset.items():
        try:
            message = missing_data(cells[0].dataset, data_dir=data_dir)
        except Exception:  # noqa: BLE001 -- the cells will fail with it, stored
            message = None
        if message is None:
            kept.add(dataset_id)
            continue
        label = cells[0].dataset.label()
        summary.unavailable.append((label, len(cells), message))
        log(f"dataset {label} is not here; its {len(cells)} cells are skipped, not stored:\n"
            f"{message}")
    return [c for c in todo if c.dataset.canonical() in kept]


class _Timed:
    """Adds the seconds of a `with` block to summary.seconds[stage]."""

    def __init__(self, summary: RunSummary, stage: str):
        self.summary, self.stage = summary, stage

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        self.summary.seconds[self.stage] += time.perf_counter() - self.start


def run_matrix(
    config: MatrixConfig, store: Store, *, only: Mapping[str, Sequence[str]] | None = None,
    data_dir: Path | None = None, checkpoint_dir: Path | None = None, progress: bool = True,
    log: Callable[[str], None] = print,
) -> RunSummary:
    """Run every cell of `config` not yet stored; returns what happened and the time split.

    data_dir, checkpoint_dir: where datasets and detectors are cached (None:
    dfjax.settings' defaults)."""
    cells = expand(config, only)
    data_dir, checkpoint_dir = settings.data_dir(data_dir), settings.checkpoint_dir(checkpoint_dir)
    todo = [c for c in cells if not store.has_result(c.cell_id)]
    summary = RunSummary(total=len(cells), skipped=len(cells) - len(todo))
    todo = _drop_unavailable(todo, data_dir, summary, log)
    datasets: dict[str, DatasetSplits | Exception] = {}
    detectors: dict[str, Detector | Exception] = {}
    evaluator = AttackEvaluator()
    bar = tqdm(total=len(todo), disable=not progress, desc=config.name, unit="cell")

    def dataset_of(cell: Cell) -> DatasetSplits:
        dataset_id = cell.dataset.canonical()
        if dataset_id not in datasets:
            bar.set_description(f"data {cell.dataset.name}")
            with _Timed(summary, "data"):
                try:
                    datasets[dataset_id] = load_dataset(cell.dataset, data_dir=data_dir)
                except Exception as e:  # every cell on this dataset fails with it
                    datasets[dataset_id] = e
        return _raise_if_failed(datasets[dataset_id], f"dataset {cell.dataset.label()}")

    def detector_of(cell: Cell, splits: DatasetSplits) -> Detector:
        if cell.detector_id not in detectors:
            bar.set_description(f"train {cell.model.label()}/{cell.training.label()}")
            with _Timed(summary, "training"):
                try:
                    d = get_detector(cell, splits, checkpoint_dir=checkpoint_dir, log=log,
                                     on_epoch=lambda h: bar.set_postfix_str(
                                         f"epoch {h['epoch']}/{cell.training.epochs} val acc "
                                         f"{h['val_accuracy']:.3f} ({h['seconds']:.0f} s)"))
                    store.put_detector(cell.detector_id, {
                        "dataset": cell.dataset.to_dict(), "model": cell.model.to_dict(),
                        "training": cell.training.to_dict()}, d.history, d.train_seconds)
                    detectors[cell.detector_id] = d
                except Exception as e:  # every cell of this detector fails with it
                    detectors[cell.detector_id] = e
        return _raise_if_failed(detectors[cell.detector_id], f"detector {cell.detector_id}")

    for cell in todo:
        start = time.perf_counter()
        bar.set_postfix_str(f"{cell.model.label()}/{cell.training.label()} "
                            f"{cell.attack.label()} delta={cell.attack.delta:g}")
        try:
            splits = dataset_of(cell)
            detector = detector_of(cell, splits)
            bar.set_description(config.name)
            with _Timed(summary, "attacks"):
                metrics, timings, extra = run_cell(cell, detector, splits.test, evaluator,
                                                   config.eval_batch_size,
                                                   validation=splits.validation)
            timings["wall_time"] = time.perf_counter() - start
            store_cell(store, cell, metrics, timings, extra,
                       env=environment() | provenance(splits, detector))
            summary.done += 1
        except Exception as e:  # stored as failed, with its error; the run goes on
            error = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}"
            store.put(cell, status="failed", error=error,
                      timings={"wall_time": time.perf_counter() - start}, env=environment())
            summary.failed += 1
            summary.failures.append((cell.cell_id, f"{type(e).__name__}: {e}"))
            log(f"cell {cell.attack.label()} eps={cell.attack.eps:.4g} failed: {e}")
        bar.update(1)
    bar.close()
    return summary
