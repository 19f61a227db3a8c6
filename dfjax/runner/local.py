"""Run a matrix on this machine: one `CellWorker` (dfjax.runner.stages) loads each
dataset and detector once and runs every cell through the pipeline; this process stores
each outcome as it comes.

Cells already stored as 'ok' are skipped (a killed run resumes); a cell that raises
is stored as 'failed' with its error and the run goes on. Runs may share a store: each
cell is claimed just before it runs (`Store.claim`, kept alive by a `ClaimHeartbeat`), and
one claimed by another live run is left to it (`RunSummary.claimed_elsewhere`); a killed
run's claims are taken over. Before any work, each dataset
is checked (`dfjax.data.missing_data`): one that is neither prepared nor preparable here
(a real set not downloaded) is reported once, and its cells are neither run nor stored.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from dfjax import settings
from dfjax.config import Cell, MatrixConfig
from dfjax.data import missing_data
from dfjax.runner.environment import evaluation_fingerprint
from dfjax.runner.expand import check_cells, expand
from dfjax.runner.stages import CellOutcome, CellWorker, detector_ids, store_outcome
from dfjax.store import CLAIM_TTL_SECONDS, ClaimHeartbeat, Store, claim_owner


@dataclasses.dataclass
class RunSummary:
    """What a run did, and where its time went (seconds)."""

    total: int = 0
    skipped: int = 0
    stale: int = 0  # stored 'ok' cells made by other code (another fingerprint): recomputed
    done: int = 0
    failed: int = 0
    seconds: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"data": 0.0, "training": 0.0, "attacks": 0.0})
    failures: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    claimed_elsewhere: int = 0  # cells left to another live run that had claimed them
    # (dataset label, cells not run, message) per dataset whose data is not here
    unavailable: list[tuple[str, int, str]] = dataclasses.field(default_factory=list)

    @property
    def not_run(self) -> int:
        """Cells neither run nor stored because their data is not here."""
        return sum(n for _, n, _ in self.unavailable)


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


def _current_fingerprint(cell: Cell) -> str | None:
    """`evaluation_fingerprint(cell)`; None if it cannot be computed (e.g. a dataset
    option its builder refuses): the cell runs again and fails with that error."""
    try:
        return evaluation_fingerprint(cell)
    except Exception:  # noqa: BLE001 -- the cell will fail with it, stored
        return None


def plan(config: MatrixConfig, store: Store, *, only: Mapping[str, Sequence[str]] | None = None,
         data_dir: Path, log: Callable[[str], None] = print) -> tuple[list[Cell], RunSummary]:
    """The cells of `config` (validated, `only` applied) still to run: not stored as 'ok'
    by the current code (a row whose fingerprint is not `evaluation_fingerprint(cell)`,
    or that has none, is stale: recomputed, counted in `summary.stale` and logged), and on
    data that is here or can be prepared (the rest reported once, see
    `_drop_unavailable`); and the summary that counts them. Every executor starts here."""
    cells = expand(config, only)
    check_cells(cells)  # transfer sources on the target's dataset, before any work
    stored = store.result_fingerprints()
    todo = [c for c in cells if c.cell_id not in stored
            or stored[c.cell_id] != _current_fingerprint(c)]
    stale = sum(c.cell_id in stored for c in todo)
    summary = RunSummary(total=len(cells), skipped=len(cells) - len(todo), stale=stale)
    if stale:
        log(f"{stale} stored cells were made by other code (their code fingerprint differs "
            "or was not recorded): recomputed")
    return _drop_unavailable(todo, data_dir, summary, log), summary


def record(summary: RunSummary, outcome: CellOutcome, log: Callable[[str], None]) -> None:
    """Count a stored outcome in the summary: done or failed, and its seconds per stage."""
    for stage, seconds in outcome.seconds.items():
        summary.seconds[stage] += seconds
    if outcome.status == "ok":
        summary.done += 1
        return
    summary.failed += 1
    first_line = (outcome.error or "").splitlines()[0] if outcome.error else ""
    summary.failures.append((outcome.cell.cell_id, first_line))
    log(f"cell {outcome.cell.attack.label()} eps={outcome.cell.attack.eps:.4g} failed: "
        f"{first_line.partition(': ')[2] or first_line}")


def run_matrix(
    config: MatrixConfig, store: Store, *, only: Mapping[str, Sequence[str]] | None = None,
    data_dir: Path | None = None, checkpoint_dir: Path | None = None, progress: bool = True,
    log: Callable[[str], None] = print, retrain: bool = False,
    claim_ttl: float = CLAIM_TTL_SECONDS,
) -> RunSummary:
    """Run every cell of `config` not yet stored; returns what happened and the time split.

    data_dir, checkpoint_dir: where datasets and detectors are cached (None:
    dfjax.settings' defaults). retrain: train the run's detectors afresh instead of
    loading them from the checkpoint cache. claim_ttl: seconds a claim on a cell lives
    unless renewed (the heartbeat renews it every claim_ttl / 3 while this run lives)."""
    data_dir, checkpoint_dir = settings.data_dir(data_dir), settings.checkpoint_dir(checkpoint_dir)
    planned_at = time.time()
    todo, summary = plan(config, store, only=only, data_dir=data_dir, log=log)
    bar = tqdm(total=len(todo), disable=not progress, desc=config.name, unit="cell")

    def on_epoch(cell: Cell, h: dict) -> None:
        bar.set_postfix_str(f"epoch {h['epoch']}/{cell.training.epochs} val acc "
                            f"{h['val_accuracy']:.3f} ({h['seconds']:.0f} s)")
        settings.kill_point("training.epoch")

    worker = CellWorker(data_dir=data_dir, checkpoint_dir=checkpoint_dir, log=log,
                        retrain=detector_ids(todo) if retrain else (),
                        status=bar.set_description, on_epoch=on_epoch)
    owner = claim_owner()
    try:
        with ClaimHeartbeat(store.path, owner, claim_ttl):
            for cell in todo:
                if not store.claim(cell.cell_id, owner, claim_ttl, planned_at=planned_at):
                    count_unclaimed(store, cell, summary)  # stored or claimed meanwhile
                    bar.update(1)
                    continue
                bar.set_postfix_str(f"{cell.model.label()}/{cell.training.label()} "
                                    f"{cell.attack.label()} delta={cell.attack.delta:g}")
                outcome = worker.run(cell)
                settings.kill_point("cell.computed")
                bar.set_description(config.name)
                store_outcome(store, outcome)  # the row releases the claim
                record(summary, outcome, log)
                bar.update(1)
    finally:
        store.release(owner)  # an exception (Ctrl-C) leaves no claim behind
        bar.close()
    return summary


def count_unclaimed(store: Store, cell: Cell, summary: RunSummary) -> None:
    """A cell `Store.claim` refused: another run stored it since the plan (skipped) or
    holds it (claimed_elsewhere)."""
    if cell.cell_id in store.claims():
        summary.claimed_elsewhere += 1
    else:
        summary.skipped += 1
