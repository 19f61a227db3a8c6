"""Run a matrix on a Ray cluster: the local runner's stages (`dfjax.runner.stages`), spread
over Ray workers, with this process (the driver) the only one writing the store.

    dfjax run --config default --executor ray --address 10.0.0.5:6379 --workers 8

Stage 1 loads each dataset once, then trains (or loads) each detector the cells need, a
task per dataset and per detector, a warm-started detector only after its base and every
detector only after its dataset. Stage 2 runs the cells in groups that share a detector
and a compiled attack (same detector, defence, transfer source, attack and options; eps
varies), each group on one worker, so a worker compiles once per (model, attack, shape)
and keeps what it compiled for later groups; a free worker takes a group of a detector
it already holds when there is one. Each cell's outcome comes back on its own
(`ray.wait` over per-cell results): the driver stores it (`stages.store_outcome`), counts
it (`local.record`) and prints a progress line.

Workers are Ray actors (`RayCellWorker`), one `CellWorker` each. Before JAX starts, a
worker pins itself to its own cores (`pin_to_free_cores`): XLA sizes its thread pool from
the CPU affinity, not OMP_NUM_THREADS, so pinned workers do not oversubscribe a node.

A worker that dies is restarted by Ray (up to `max_restarts` times), which runs the tasks
it had not finished again on the new process (Ray's `max_task_retries`); the driver logs
the restart when a result comes from a new pid. A task whose error still comes back is
sent again, alone, to whichever worker is free (a worker Ray no longer restarts gets no
more), and after `max_attempts` such errors it is stored as failed. The driver stores a
cell only when its outcome arrives and never twice (it keeps the ids it stored), so a
kill loses nothing.

Paths: datasets (`data_dir`) and detector checkpoints (`checkpoint_dir`) are read and
written by the workers, so on a cluster of several machines they must be one shared
folder every node reaches at the same path (NFS, a mounted bucket); on one machine any
path works. Only outcomes travel through Ray. The store stays on the driver.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from dfjax import settings
from dfjax.config import Cell, DatasetSpec, MatrixConfig
from dfjax.runner.affinity import pin_to_free_cores, xla_thread_count
from dfjax.runner.environment import environment
from dfjax.runner.local import RunSummary, count_unclaimed, plan, record
from dfjax.runner.ray_cluster import RayExecutorError, connect, import_ray
from dfjax.runner.stages import CellOutcome, DetectorRecord, detector_ids, store_outcome
from dfjax.store import CLAIM_TTL_SECONDS, ClaimHeartbeat, Store, claim_owner
from dfjax.training.detectors import warm_start_cell


class RayCellWorker:
    """One Ray worker (run as a Ray actor): pins itself to `cores` cores, then starts JAX
    and keeps one `CellWorker` (datasets, detectors, compiled attacks) for every task it
    gets. cpu_devices: JAX CPU devices to split a batch across (None: one per core it
    holds, or $DFJAX_CPU_DEVICES); compile_cache_dir: XLA's persistent compilation cache
    (None: none)."""

    def __init__(self, index: int, *, cores: int, data_dir: Path, checkpoint_dir: Path,
                 cpu_devices: int | None = None, compile_cache_dir: Path | None = None):
        self.index = index
        self.cores, self._core_lock = pin_to_free_cores(cores)
        from dfjax.data._tfds import show_progress_bars
        from dfjax.runner.stages import CellWorker
        from dfjax.xla import use_compile_cache, use_cpu_cores

        show_progress_bars(False)  # the driver prints a line per detector and cell
        self.cpu_devices = use_cpu_cores(cpu_devices)  # JAX's CPU backend starts here
        if compile_cache_dir is not None:
            use_compile_cache(Path(compile_cache_dir))
        self.worker = CellWorker(data_dir=Path(data_dir), checkpoint_dir=Path(checkpoint_dir))

    def describe(self) -> dict:
        """Where this worker runs: index, pid, node, cores (its affinity now), whether it
        holds a core slot of its own, JAX CPU devices, XLA's CPU threads."""
        import ray

        return {"index": self.index, "pid": os.getpid(), "node": ray.util.get_node_ip_address(),
                "cores": sorted(os.sched_getaffinity(0)), "pinned": self._core_lock is not None,
                "jax_cpu_devices": self.cpu_devices, "xla_threads": xla_thread_count()}

    def ping(self) -> int:
        """Nothing: a task's round trip, for the bench."""
        return self.index

    def load(self, spec: DatasetSpec) -> tuple[float, str | None]:
        """Load (preparing once) a dataset: (seconds, error or None)."""
        start = time.perf_counter()
        try:
            self.worker.dataset(spec)
            return time.perf_counter() - start, None
        except Exception as e:  # reported per detector and cell, as the local runner does
            return time.perf_counter() - start, f"{type(e).__name__}: {e}"

    def prepare(self, cell: Cell, retrain: bool) -> tuple[list[DetectorRecord], float,
                                                            str | None]:
        """Train or load the detector of `cell` (a warm-started one's base must be in the
        checkpoint cache already); retrain: train it afresh even if cached. Returns (the
        detector's records for the store, seconds, error or None)."""
        start = time.perf_counter()
        self.worker.retrain = {cell.detector_id} if retrain else set()
        try:
            return self.worker.prepare(cell), time.perf_counter() - start, None
        except Exception as e:  # its cells fail with this error
            return [], time.perf_counter() - start, f"{type(e).__name__}: {e}"
        finally:
            self.worker.retrain = set()

    def run(self, cell: Cell) -> CellOutcome:
        """Run one cell through every stage (`CellWorker.run`)."""
        return self.worker.run(cell)

    def task(self, method: str, *args) -> tuple[int, object]:
        """(this process's pid, method(*args)): the driver sees a restart as a new pid."""
        return os.getpid(), getattr(self, method)(*args)


# --- the driver side -------------------------------------------------------------------

@dataclasses.dataclass
class _Task:
    """One actor call: method(*args); `needs`: keys of tasks that must have succeeded
    first; `detector`: the detector it uses (to send a worker groups it holds)."""

    key: str
    method: str
    args: tuple
    needs: tuple[str, ...] = ()
    detector: str | None = None
    attempts: int = 0


class _Pool:
    """Ray actors taking groups of tasks: a free worker takes the first group whose needs
    are met (one of a detector it holds, if any), and all its tasks are sent to it at once.

    A worker that dies is restarted by Ray, which runs the tasks it had not finished again
    (`max_task_retries`); the driver sees the new pid and logs it. A task whose error
    still comes back (Ray gave up) goes back alone to the front of the queue for any
    worker, `max_attempts` times at most, then is given up (`on_lost`); a worker Ray no
    longer restarts (ActorDiedError) gets no more tasks."""

    def __init__(self, ray, actors: list, pids: list[int], *, max_attempts: int,
                 log: Callable[[str], None]):
        self.ray, self.actors, self.log = ray, actors, log
        self.max_attempts = max_attempts
        self.pids = [{pid} for pid in pids]  # every process each worker has run in
        self.alive = [True] * len(actors)
        self.held: list[set[str]] = [set() for _ in actors]

    def run(self, groups: Iterable[list[_Task]], *, on_result: Callable,
            on_lost: Callable[[_Task, str], None], failed: Mapping[str, str],
            done: set[str]) -> None:
        """Run every task; on_result(task, value, worker index) per result as it arrives;
        on_lost(task, reason) for a task given up, raising inside the actor, or needing a
        key of `failed` (key -> error, read as tasks finish); `done`: keys that succeeded
        (needs are looked up there, on_result adds to it)."""
        ray = self.ray
        queue = collections.deque(groups)
        in_flight: dict = {}  # ObjectRef -> (worker index, task)
        busy = [0] * len(self.actors)
        while queue or in_flight:
            _drop_blocked(queue, failed, on_lost)
            for index in range(len(self.actors)):
                if busy[index] or not self.alive[index]:
                    continue
                group = self._pick(queue, index, done)
                if group is None:
                    break
                queue.remove(group)
                for task in group:
                    ref = self.actors[index].task.remote(task.method, *task.args)
                    in_flight[ref] = (index, task)
                    if task.detector:
                        self.held[index].add(task.detector)
                busy[index] = len(group)
            if not in_flight:
                if not queue:
                    break
                if not any(self.alive):
                    raise RayExecutorError(
                        "every Ray worker died and Ray restarts none of them; the cells "
                        "stored so far are kept: run again to resume")
                raise RuntimeError(f"ray executor: no task can start: {queue[0][0].key}")
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                index, task = in_flight.pop(ref)
                busy[index] -= 1
                try:
                    pid, value = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                        ray.exceptions.OutOfMemoryError) as e:
                    self._failed(index, task, e, queue, on_lost)
                    continue
                except ray.exceptions.RayTaskError as e:  # raised inside the actor
                    on_lost(task, f"{type(e.cause).__name__}: {e.cause}")
                    continue
                if pid not in self.pids[index]:
                    self.pids[index].add(pid)
                    self.held[index] = {task.detector} - {None}
                    self.log(f"worker {index} died and Ray restarted it (now pid {pid}); the "
                             "tasks it had not finished ran again")
                on_result(task, value, index)

    def _pick(self, queue, index: int, done: set[str]) -> list[_Task] | None:
        startable = [g for g in queue if all(n in done for t in g for n in t.needs)]
        held = [g for g in startable if g[0].detector in self.held[index]]
        return (held or startable or [None])[0]

    def _failed(self, index: int, task: _Task, error: Exception, queue, on_lost) -> None:
        """A task whose worker died and that Ray did not (or no longer) run again: sent
        again to any worker, or given up after max_attempts."""
        text = str(error).strip()
        reason = text.splitlines()[0] if text else type(error).__name__
        task.attempts += 1
        if task.attempts >= self.max_attempts:
            on_lost(task, f"WorkerDied: the Ray worker running this died (last: {reason})")
        else:
            queue.appendleft([task])
        if isinstance(error, self.ray.exceptions.ActorDiedError) and self.alive[index]:
            self.alive[index] = False
            self.log(f"worker {index} died and Ray restarts it no more; its tasks go to the "
                     "other workers")


def _drop_blocked(queue: collections.deque, failed: Mapping[str, str], on_lost) -> None:
    """Take out of `queue` (order kept) the tasks needing a failed key: on_lost each."""
    if not failed:
        return
    groups = []
    for group in queue:
        kept = []
        for task in group:
            blocker = next((n for n in task.needs if n in failed), None)
            if blocker is None:
                kept.append(task)
            else:
                on_lost(task, f"needs {blocker}, which failed: {failed[blocker]}")
        if kept:
            groups.append(kept)
    queue.clear()
    queue.extend(groups)


def group_key(cell: Cell) -> tuple:
    """Cells that share a detector and a compiled attack (eps is traced, not compiled)."""
    source = cell.source_cell().detector_id if cell.source is not None else ""
    attack = dataclasses.replace(cell.attack, eps=0.0).canonical()
    return cell.detector_id, source, cell.defence.canonical(), attack


def _detector_cells(todo: Sequence[Cell]) -> dict[str, Cell]:
    """A cell (no transfer source) per detector the cells need, warm-start bases and
    transfer sources included, in training order (`stages.detector_ids`)."""
    found: dict[str, Cell] = {}

    def add(cell: Cell) -> None:
        cell = dataclasses.replace(cell, source=None)
        if cell.training.option("warm_start_epochs"):
            add(warm_start_cell(cell))
        found.setdefault(cell.detector_id, cell)

    for cell in todo:
        if cell.source is not None:
            add(cell.source_cell())
        add(cell)
    order = detector_ids(todo)
    return {d: found[d] for d in order}


def _progress_line(k: int, n: int, outcome: CellOutcome, worker: int | None) -> str:
    """"[k/n] model/training [defence] attack [from source] eps=... status seconds on
    worker i" (no worker: a cell stored failed without running)."""
    cell = outcome.cell
    defence = "" if cell.defence.name == "none" else f" {cell.defence.label()}"
    transfer = (f" from {cell.source.model.label()}/{cell.source.training.label()}"
                if cell.source is not None else "")
    where = "" if worker is None else f" on worker {worker}"
    return (f"[{k}/{n}] {cell.model.label()}/{cell.training.label()}{defence} "
            f"{cell.attack.label()}{transfer} eps={cell.attack.eps:.4g} {outcome.status} "
            f"{outcome.timings.get('wall_time', 0.0):.1f} s{where}")


def start_workers(count: int | None, *, data_dir: Path, checkpoint_dir: Path,
                  cpu_devices: int | None = None, compile_cache_dir: Path | None = None,
                  max_restarts: int = 3, max_task_retries: int = 2,
                  timeout_s: float = 600.0) -> tuple[list, list[dict]]:
    """Start `count` workers (None: one per CPU of the cluster), each asking Ray for an
    equal share of the cluster's CPUs (at least one) and pinned to that many cores of its
    node; Ray restarts a dead one up to `max_restarts` times and runs its unfinished
    tasks again up to `max_task_retries` times. Returns (actor handles, each worker's
    `describe()`). Needs a Ray connection."""
    ray = import_ray()
    cpus = int(ray.cluster_resources().get("CPU", 0))
    count = cpus if count is None else count
    if count < 1 or count > cpus:
        raise RayExecutorError(f"asked for {count} Ray workers, but the cluster has {cpus} "
                               "CPUs: one worker needs at least one")
    cores = cpus // count
    remote = ray.remote(RayCellWorker).options(num_cpus=cores, max_restarts=max_restarts,
                                               max_task_retries=max_task_retries)
    actors = [remote.remote(i, cores=cores, data_dir=data_dir, checkpoint_dir=checkpoint_dir,
                            cpu_devices=cpu_devices, compile_cache_dir=compile_cache_dir)
              for i in range(count)]
    try:
        described = ray.get([a.describe.remote() for a in actors], timeout=timeout_s)
    except ray.exceptions.GetTimeoutError as e:
        for actor in actors:
            ray.kill(actor)
        raise RayExecutorError(f"{count} Ray workers did not start within {timeout_s:.0f} s "
                               "(is the cluster short of CPUs or memory?)") from e
    return actors, described


def run_matrix_ray(
    config: MatrixConfig, store: Store, *, only: Mapping[str, Sequence[str]] | None = None,
    data_dir: Path | None = None, checkpoint_dir: Path | None = None,
    address: str | None = None, workers: int | None = None, retrain: bool = False,
    log: Callable[[str], None] = print, progress: bool = True,
    cpu_devices: int | None = None, compile_cache_dir: Path | None = None,
    max_restarts: int = 3, max_attempts: int = 3, claim_ttl: float = CLAIM_TTL_SECONDS,
) -> RunSummary:
    """Run every cell of `config` not yet stored on a Ray cluster; returns what happened.

    address: a running cluster ("HOST:PORT", "auto"); None: the connection this process
    has, else a new cluster on this machine. workers: Ray workers (None: one per CPU).
    data_dir, checkpoint_dir: as `local.run_matrix`, but read by every worker: shared by
    all nodes. retrain: train the run's detectors afresh. progress: a line per detector
    and per cell (through `log`). cpu_devices, compile_cache_dir: see `RayCellWorker`.
    max_restarts: Ray restarts of a dead worker; max_attempts: runs of a task whose worker
    died under it before it is stored failed. claim_ttl: as `local.run_matrix`; the driver
    claims every cell it will run before it starts the workers (a cell another live run
    holds is left to it) and renews the claims until the end. Raises RayExecutorError
    before any work when Ray is missing or the address does not answer."""
    data_dir = settings.data_dir(data_dir).absolute()  # workers have their own cwd
    checkpoint_dir = settings.checkpoint_dir(checkpoint_dir).absolute()
    compile_cache_dir = None if compile_cache_dir is None else Path(compile_cache_dir).absolute()
    ray = import_ray()
    connected = connect(address)
    actors: list = []
    owner = claim_owner()
    try:
        planned_at = time.time()
        todo, summary = plan(config, store, only=only, data_dir=data_dir, log=log)
        todo = _claim(store, todo, summary, owner=owner, ttl=claim_ttl, planned_at=planned_at)
        if not todo:
            return summary
        if len([n for n in ray.nodes() if n.get("Alive")]) > 1:
            log(f"Ray cluster of several nodes: {data_dir} and {checkpoint_dir} must be shared "
                "folders every node reaches at these paths")
        with ClaimHeartbeat(store.path, owner, claim_ttl):
            actors, described = start_workers(
                workers, data_dir=data_dir, checkpoint_dir=checkpoint_dir,
                cpu_devices=cpu_devices, compile_cache_dir=compile_cache_dir,
                max_restarts=max_restarts, max_task_retries=max_attempts - 1)
            for d in described if progress else ():
                log(f"worker {d['index']}: pid {d['pid']} on {d['node']}, cores {d['cores']}"
                    f"{'' if d['pinned'] else ' (shared: no free core slot)'}, "
                    f"{d['jax_cpu_devices']} JAX CPU devices, {d['xla_threads']} XLA threads")
            pool = _Pool(ray, actors, [d["pid"] for d in described], max_attempts=max_attempts,
                         log=log)
            failed = _build_detectors(pool, todo, store, summary, retrain=retrain,
                                      log=log if progress else lambda text: None)
            _run_cells(pool, todo, store, summary, failed, log=log, progress=progress)
        return summary
    finally:
        store.release(owner)  # an exception (Ctrl-C) leaves no claim behind
        for actor in actors:
            ray.kill(actor)
        if connected:
            ray.shutdown()


def _claim(store: Store, todo: list[Cell], summary: RunSummary, *, owner: str, ttl: float,
           planned_at: float) -> list[Cell]:
    """The cells of `todo` this run now holds (`Store.claim`); the others, stored or held
    by another live run since the plan, counted as the local runner counts them."""
    held = []
    for cell in todo:
        if store.claim(cell.cell_id, owner, ttl, planned_at=planned_at):
            held.append(cell)
        else:
            count_unclaimed(store, cell, summary)
    return held


def _build_detectors(pool: _Pool, todo: list[Cell], store: Store, summary: RunSummary, *,
                     retrain: bool, log: Callable[[str], None]) -> dict[str, str]:
    """Stage 1: each dataset loaded once, then each detector trained or loaded once (after
    its dataset and any warm-start base). Stores the detectors' records; returns the
    datasets and detectors that failed (key -> error)."""
    detectors = _detector_cells(todo)
    datasets = {cell.dataset.canonical(): cell.dataset for cell in detectors.values()}
    groups = [[_Task(key, "load", (spec,))] for key, spec in datasets.items()]
    for detector_id, cell in detectors.items():
        needs = [cell.dataset.canonical()]
        if cell.training.option("warm_start_epochs"):
            needs.append(warm_start_cell(cell).detector_id)
        groups.append([_Task(detector_id, "prepare", (cell, retrain), tuple(needs),
                             detector=detector_id)])
    done: set[str] = set()
    failed: dict[str, str] = {}

    def on_result(task: _Task, value, index: int) -> None:
        if task.method == "load":
            seconds, error = value
            summary.seconds["data"] += seconds
        else:
            records, seconds, error = value
            summary.seconds["training"] += seconds
            for r in records:
                store.put_detector(r.detector_id, r.spec, r.history, r.train_seconds)
            cell = task.args[0]
            log(f"detector {cell.model.label()}/{cell.training.label()} on "
                f"{cell.dataset.label()} {'failed' if error else 'ready'} in {seconds:.1f} s "
                f"on worker {index}")
        if error is None:
            done.add(task.key)
        else:
            failed[task.key] = error

    def on_lost(task: _Task, reason: str) -> None:
        failed[task.key] = reason

    pool.run(groups, on_result=on_result, on_lost=on_lost, failed=failed, done=done)
    return failed


def _run_cells(pool: _Pool, todo: list[Cell], store: Store, summary: RunSummary,
               failed: Mapping[str, str], *, log: Callable[[str], None],
               progress: bool) -> None:
    """Stage 2: the cells in groups sharing a detector and a compiled attack; each outcome
    stored once, as it arrives. Cells whose dataset or detector failed in stage 1 are
    stored failed with that error, without running."""
    stored: set[str] = set()
    total = len(todo)

    def keep(outcome: CellOutcome, index: int | None) -> None:
        if outcome.cell.cell_id in stored:  # a duplicate result: never stored twice
            return
        stored.add(outcome.cell.cell_id)
        store_outcome(store, outcome)
        record(summary, outcome, log)
        if progress:
            log(_progress_line(len(stored), total, outcome, index))

    def lose(cell: Cell, reason: str) -> None:
        keep(CellOutcome(cell, "failed", env=environment(), error=reason), None)

    groups: dict[tuple, list[_Task]] = {}
    for cell in todo:
        needs = [cell.dataset.canonical(), cell.detector_id]
        if cell.source is not None:
            needs.append(cell.source_cell().detector_id)
        blocker = next((n for n in needs if n in failed), None)
        if blocker is not None:  # "RuntimeError: dataset|detector ... could not be built: ..."
            lose(cell, failed[blocker])
            continue
        groups.setdefault(group_key(cell), []).append(
            _Task(cell.cell_id, "run", (cell,), detector=cell.detector_id))
    pool.run(groups.values(), on_result=lambda task, outcome, index: keep(outcome, index),
             on_lost=lambda task, reason: lose(task.args[0], reason), failed={}, done=set())

