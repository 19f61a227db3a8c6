"""Cells per minute of the `smoke` matrix under the local runner and the Ray executor.

Not a test: run `python bench/bench_executors.py` (several minutes on 2 cores). Each
measurement runs in a fresh process (no compiled program or loaded detector carried
over; XLA's persistent compilation cache off), on one data folder:

  local-train  `run_matrix`, detector trained (stage 1 local)
  local        `run_matrix`, detector in the checkpoint cache: the attack stage
  ray-train    `run_matrix_ray`, `--workers` workers, detector trained on a worker
  ray          `run_matrix_ray`, detector cached: the attack stage
  overhead     the Ray executor's fixed costs: `ray.init`, starting the workers (JAX
               included), a no-op task's round trip, the pickled size of a cell's outcome

It prints a Markdown table and a projection for N machines, and writes the records as
JSON with `--json FILE`:

    python bench/bench_executors.py --workers 2 --json /tmp/executors.json
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("local-train", "local", "ray-train", "ray", "overhead")


def _timed_lines():
    """A log function keeping (seconds since creation, line), and its list."""
    start, lines = time.perf_counter(), []
    return (lambda line: lines.append((time.perf_counter() - start, line))), lines


def measure(mode: str, work: Path, workers: int) -> dict:
    """In this (fresh) process: one measurement of `mode` in folder `work`."""
    os.environ["DFJAX_COMPILE_CACHE_DIR"] = "off"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from dfjax.xla import use_cpu_cores

    use_cpu_cores()  # as `dfjax run`: one JAX CPU device per core
    from dfjax.configs import get_config
    from dfjax.runner import run_matrix
    from dfjax.store import Store

    config = get_config("smoke")
    checkpoints = work / ("ckpt-ray-train" if mode == "ray-train" else "ckpt")  # local-train
    # fills ckpt, which local, ray and overhead then load
    dirs = {"data_dir": work / "data", "checkpoint_dir": checkpoints}
    store_path = work / f"{mode}-{time.time_ns()}.sqlite"
    record: dict = {"mode": mode, "cores": len(os.sched_getaffinity(0))}
    if mode.startswith("local"):
        start = time.perf_counter()
        with Store(store_path) as store:
            summary = run_matrix(config, store, progress=False, **dirs)
        record.update(seconds=time.perf_counter() - start, cells=summary.done,
                      stage_seconds=summary.seconds)
        return record
    import ray

    from dfjax.runner.ray_executor import run_matrix_ray, start_workers

    start = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, logging_level="WARNING")
    record["ray_init_seconds"] = time.perf_counter() - start
    try:
        if mode == "overhead":
            return record | _overheads(ray, start_workers, workers, dirs, config)
        log, lines = _timed_lines()
        with Store(store_path) as store:
            summary = run_matrix_ray(config, store, workers=workers, log=log, **dirs)
        seconds = time.perf_counter() - start - record["ray_init_seconds"]
        cell_times = [t for t, line in lines if line.startswith("[")]
        ready = [t for t, line in lines if line.startswith("detector ")]
        started = max(t for t, line in lines if line.startswith("worker "))
        record.update(seconds=seconds, cells=summary.done, workers=workers,
                      workers_started_at=started, stage1_done_at=max(ready),
                      first_cell_at=min(cell_times), stage_seconds=summary.seconds,
                      lines=[line for _, line in lines])
        return record
    finally:
        ray.shutdown()


def _overheads(ray, start_workers, workers: int, dirs: dict, config) -> dict:
    """Worker start-up, a no-op task's round trip, a cell outcome's pickled size."""
    start = time.perf_counter()
    actors, _ = start_workers(workers, **dirs)
    started = time.perf_counter() - start
    ray.get(actors[0].ping.remote())
    trips = []
    for _ in range(200):
        t = time.perf_counter()
        ray.get(actors[0].task.remote("ping"))
        trips.append(time.perf_counter() - t)
    from dfjax.runner import expand

    cell = [c for c in expand(config) if c.attack.eps > 0][0]
    ray.get(actors[0].prepare.remote(cell, False))
    _, outcome = ray.get(actors[0].task.remote("run", cell))
    for actor in actors:
        ray.kill(actor)
    from dfjax.runner.ray_executor import group_key

    return {"worker_start_seconds": started, "noop_round_trip_ms": 1e3 * statistics.median(trips),
            "outcome_bytes": len(pickle.dumps(outcome)),
            "groups": len({group_key(c) for c in expand(config)})}


def run_child(mode: str, work: Path, workers: int) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--work", str(work),
               "--workers", str(workers)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{mode}: the measuring process exited with {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(records: dict[str, dict], workers: int) -> str:
    """The Markdown table and the projection."""
    local, ray_run, over = records["local"], records["ray"], records["overhead"]
    lines = [f"smoke matrix ({local['cells']} cells), {local['cores']} cores, Ray with "
             f"{workers} workers; each row a fresh process; XLA's persistent cache off", "",
             "| run | cells | seconds | cells / minute | stage 1 (s) |",
             "|---|---:|---:|---:|---:|"]
    for mode in ("local-train", "local", "ray-train", "ray"):
        r = records[mode]
        if mode.startswith("ray"):
            stage1 = r["stage1_done_at"] - r["workers_started_at"]
        else:
            stage1 = r["stage_seconds"]["data"] + r["stage_seconds"]["training"]
        lines.append(f"| {mode} | {r['cells']} | {r['seconds']:.1f} | "
                     f"{60 * r['cells'] / r['seconds']:.1f} | {stage1:.1f} |")
    attack_stage = ray_run["seconds"] - ray_run["stage1_done_at"]
    fixed = ray_run["stage1_done_at"]  # worker start and detector loading
    groups = records["overhead"]["groups"]
    lines += ["", f"Ray fixed costs: ray.init {over['ray_init_seconds']:.1f} s (not in the "
              f"rows above), starting {workers} workers {over['worker_start_seconds']:.1f} s "
              f"(a Python process each, JAX started), a no-op task's round trip "
              f"{over['noop_round_trip_ms']:.2f} ms, a cell's outcome {over['outcome_bytes']} "
              "bytes pickled.",
              f"In the `ray` row: {fixed:.1f} s before the attack stage (workers started, "
              f"detector loaded), then {attack_stage:.1f} s of attacks in {groups} groups "
              "(cells sharing a detector and a compiled attack; a group runs on one worker).",
              "", f"Projection for N machines of {workers} cores, one worker per core: T(N) ~ "
              f"{fixed:.0f} s fixed + {attack_stage * workers:.0f} worker-seconds of attacks "
              f"/ min(N x {workers} workers, {groups} groups); each group compiles once on "
              "its worker, and the per-task round trip is negligible next to a cell:"]
    for n in (1, 2, 4, 8):
        projected = fixed + attack_stage * workers / min(n * workers, groups)
        lines.append(f"- N={n}: about {projected:.0f} s, "
                     f"{60 * ray_run['cells'] / projected:.1f} cells / minute")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None,
                        help="a folder for data, checkpoints and stores (default: a new "
                             "temporary one)")
    parser.add_argument("--json", type=Path, default=None, help="also write the records here")
    parser.add_argument("--report", type=Path, default=None, metavar="FILE.json",
                        help="print the table of records written before with --json")
    parser.add_argument("--child", choices=MODES, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.report:
        saved = json.loads(args.report.read_text())
        print(report(saved["records"], saved["workers"]))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="dfjax-bench-executors-"))
    if args.child:
        print(json.dumps(measure(args.child, work, args.workers)))
        return
    records = {}
    for mode in MODES:  # local-train first: it prepares the data and trains the detector
        records[mode] = run_child(mode, work, args.workers)
        print(f"{mode}: {records[mode].get('seconds', 0):.1f} s", file=sys.stderr)
    print(report(records, args.workers))
    if args.json:
        args.json.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                         "workers": args.workers, "records": records},
                                        indent=2))


if __name__ == "__main__":
    main()
