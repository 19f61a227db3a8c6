"""The stages of a cell as one process runs them, for any executor: `CellWorker` keeps a
process's datasets, detectors and compiled attacks, runs a cell through the pipeline
(`dfjax.runner.pipeline.run_cell`) and returns a `CellOutcome`: what the one process that
writes the store (`store_outcome`) needs. The local runner has one worker; the Ray
executor one per Ray worker, its outcomes streamed back to the driver.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path

from dfjax.attacks.evaluate import AttackEvaluator
from dfjax.config import Cell, DatasetSpec
from dfjax.data import load_dataset
from dfjax.data.base import DatasetSplits
from dfjax.runner.environment import environment, provenance
from dfjax.runner.pipeline import run_cell, store_cell
from dfjax.store import Store
from dfjax.training.detectors import Detector, get_detector, warm_start_cell

STAGES = ("data", "training", "attacks")


@dataclasses.dataclass
class DetectorRecord:
    """A detector as the store's detectors table keeps it (`Store.put_detector`)."""

    detector_id: str
    spec: dict
    history: list[dict]
    train_seconds: float


@dataclasses.dataclass
class CellOutcome:
    """One cell's result: status "ok" (metrics, timings, extra, env) or "failed" (error);
    `detectors`: the detectors this cell acquired first in its worker (for the store);
    `seconds`: the time this cell spent per stage (data, training, attacks)."""

    cell: Cell
    status: str
    metrics: dict = dataclasses.field(default_factory=dict)
    timings: dict = dataclasses.field(default_factory=dict)
    extra: dict = dataclasses.field(default_factory=dict)
    env: dict = dataclasses.field(default_factory=dict)
    error: str | None = None
    detectors: list[DetectorRecord] = dataclasses.field(default_factory=list)
    seconds: dict[str, float] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(STAGES, 0.0))


def detector_ids(cells: Iterable[Cell]) -> list[str]:
    """Every detector the cells need, in training order: the detectors warm starts
    fine-tune before those fine-tuned from them; transfer sources included."""
    ids: dict[str, None] = {}

    def need(cell: Cell) -> None:
        if cell.training.option("warm_start_epochs"):
            need(warm_start_cell(cell))
        ids.setdefault(cell.detector_id)

    for cell in cells:
        if cell.source is not None:
            need(cell.source_cell())
        need(cell)
    return list(ids)


def _raise_if_failed(value, what: str):
    """Cached results may be the exception that building them raised: re-raise it per cell."""
    if isinstance(value, Exception):
        raise RuntimeError(f"{what} could not be built: {type(value).__name__}: {value}") from value
    return value


class CellWorker:
    """Runs cells in one process, loading each dataset and detector once.

    A dataset or detector that fails to build fails every cell that needs it, with its
    error. retrain: ids of detectors to train afresh (once) instead of loading them from
    the checkpoint cache (`detector_ids` of the cells, for `--retrain`). log: messages
    (corrupt or stale caches); status: a short line per stage (a progress bar's
    description); on_epoch: each training epoch's record.
    """

    def __init__(self, *, data_dir: Path, checkpoint_dir: Path, retrain: Iterable[str] = (),
                 log: Callable[[str], None] = print,
                 status: Callable[[str], None] = lambda text: None,
                 on_epoch: Callable[[Cell, dict], None] | None = None):
        self.data_dir, self.checkpoint_dir = data_dir, checkpoint_dir
        self.retrain = set(retrain)
        self.log, self.status, self.on_epoch = log, status, on_epoch
        self.datasets: dict[str, DatasetSplits | Exception] = {}
        self.detectors: dict[str, Detector | Exception] = {}
        self.evaluator = AttackEvaluator()
        self._acquired: list[DetectorRecord] = []
        self._seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)

    def _timed(self, stage: str, build: Callable[[], object]) -> object:
        start = time.perf_counter()
        try:
            return build()
        finally:
            self._seconds[stage] += time.perf_counter() - start

    def dataset(self, spec: DatasetSpec) -> DatasetSplits:
        """The dataset `spec`, loaded (or prepared) once per worker."""
        dataset_id = spec.canonical()
        if dataset_id not in self.datasets:
            self.status(f"data {spec.name}")

            def build():
                try:
                    return load_dataset(spec, data_dir=self.data_dir)
                except Exception as e:  # every cell on this dataset fails with it
                    return e
            self.datasets[dataset_id] = self._timed("data", build)
        return _raise_if_failed(self.datasets[dataset_id], f"dataset {spec.label()}")

    def detector(self, cell: Cell, splits: DatasetSplits) -> Detector:
        """The detector of `cell` (its dataset, model, training), loaded or trained once."""
        if cell.detector_id not in self.detectors:
            self.status(f"train {cell.model.label()}/{cell.training.label()}")
            on_epoch = None if self.on_epoch is None else (lambda h: self.on_epoch(cell, h))

            def build():
                try:
                    d = get_detector(cell, splits, checkpoint_dir=self.checkpoint_dir,
                                     log=self.log, on_epoch=on_epoch, retrain=self.retrain)
                except Exception as e:  # every cell of this detector fails with it
                    return e
                self._acquired.append(DetectorRecord(
                    cell.detector_id, {"dataset": cell.dataset.to_dict(),
                                       "model": cell.model.to_dict(),
                                       "training": cell.training.to_dict()},
                    d.history, d.train_seconds))
                return d
            self.detectors[cell.detector_id] = self._timed("training", build)
        return _raise_if_failed(self.detectors[cell.detector_id],
                                f"detector {cell.detector_id}")

    def prepare(self, cell: Cell) -> list[DetectorRecord]:
        """Load the data and train (or load) the detectors `cell` needs, without attacking;
        returns the detectors acquired. Raises what building them raised."""
        self._acquired = []
        splits = self.dataset(cell.dataset)
        self.detector(cell, splits)
        if cell.source is not None:
            self.detector(cell.source_cell(), self.dataset(cell.source.dataset))
        return self._acquired

    def run(self, cell: Cell) -> CellOutcome:
        """Run `cell` through every stage; an exception is a "failed" outcome with its error."""
        start = time.perf_counter()
        self._acquired, self._seconds = [], dict.fromkeys(STAGES, 0.0)
        try:
            splits = self.dataset(cell.dataset)
            detector = self.detector(cell, splits)
            source = None
            if cell.source is not None:
                source = self.detector(cell.source_cell(), self.dataset(cell.source.dataset))
            self.status("attack")
            metrics, timings, extra = self._timed("attacks", lambda: run_cell(
                cell, detector, splits.test, self.evaluator, cell.eval_batch_size,
                validation=splits.validation, source=source))
            timings["wall_time"] = time.perf_counter() - start
            env = environment() | provenance(splits, detector, cell.training)
            outcome = CellOutcome(cell, "ok", metrics, timings, extra, env=env)
        except Exception as e:  # stored as failed, with its error; the run goes on
            outcome = CellOutcome(cell, "failed", env=environment(),
                                  timings={"wall_time": time.perf_counter() - start},
                                  error=f"{type(e).__name__}: {e}\n"
                                        f"{traceback.format_exc(limit=5)}")
        outcome.detectors, outcome.seconds = self._acquired, self._seconds
        return outcome


def store_outcome(store: Store, outcome: CellOutcome) -> None:
    """Write a worker's outcome: its detectors' records, then the cell's row."""
    for d in outcome.detectors:
        store.put_detector(d.detector_id, d.spec, d.history, d.train_seconds)
    if outcome.status == "ok":
        store_cell(store, outcome.cell, outcome.metrics, outcome.timings, outcome.extra,
                   outcome.env)
    else:
        store.put(outcome.cell, status="failed", error=outcome.error, timings=outcome.timings,
                  env=outcome.env)
