"""The Ray executor (dfjax.runner.ray_executor) against a real local Ray cluster of 2 CPUs:
the smoke matrix stores the local runner's metrics; a worker killed mid-run leaves every
cell stored once; an unreachable address fails in seconds; workers hold disjoint cores.

Without Ray installed (the README's test command installs only `.[test]`) the tests that
need it skip; .ci/run installs `.[ray]` and fails on a skip.
"""

import collections
import dataclasses
import os
import re
import signal
import socket
import sys
import time

import pytest

from dfjax.config import TrainSpec
from dfjax.configs import get_config
from dfjax.runner import expand, run_matrix
from dfjax.runner.ray_cluster import RayExecutorError, check_address, import_ray
from dfjax.runner.ray_executor import (
    _detector_cells,
    _drop_blocked,
    _Task,
    group_key,
    run_matrix_ray,
    start_workers,
)
from dfjax.store import Store

# Metrics stay bit-identical when the workers split a batch across as many JAX CPU devices
# as the local run does (tests/conftest.py: 2). With one device per worker core (the
# default) XLA may block a matmul differently for the smaller per-device batch: measured
# on the smoke matrix, log losses and probabilities then differ in the 8th digit.
CPU_DEVICES = 2


@pytest.fixture(scope="module")
def ray():
    """A local Ray cluster of 2 CPUs for the module, shut down after it."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'dfjax[ray]'")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("ray")
    return {"data_dir": base / "data", "local_checkpoints": base / "ckpt_local",
            "ray_checkpoints": base / "ckpt_ray", "base": base}


def _metrics(store: Store) -> dict[str, dict]:
    """cell_id -> (status and) every metric the store holds for it."""
    columns = {"cell_id", "status", "dataset", "model", "training", "defence", "attack", "norm",
               "eps", "delta", "seed", "n_examples", "detector_id", "spec_json", "error",
               "wall_time", "compile_time", "images_per_second", "extra_json", "env_json",
               "schema_version", "created_at"}
    return {r["cell_id"]: {k: v for k, v in r.items() if k not in columns or k == "status"}
            for r in store.rows()}


class CountingStore(Store):
    """A store that counts the rows written per cell (a second write would replace the
    first in SQLite, invisibly)."""

    def __init__(self, path):
        super().__init__(path)
        self.writes: collections.Counter = collections.Counter()

    def put(self, cell, **kwargs):
        self.writes[cell.cell_id] += 1
        super().put(cell, **kwargs)


@pytest.fixture(scope="module")
def local_metrics(dirs):
    """The smoke matrix run by the local runner (its own checkpoint folder)."""
    with Store(dirs["base"] / "local.sqlite") as store:
        run_matrix(get_config("smoke"), store, data_dir=dirs["data_dir"],
                   checkpoint_dir=dirs["local_checkpoints"], progress=False)
        return _metrics(store)


@pytest.mark.slow
def test_smoke_on_ray_stores_the_local_metrics_and_a_line_per_cell(ray, dirs, local_metrics):
    """The smoke matrix on 2 Ray workers, its detector trained there (stage 1, its own
    checkpoint folder): every cell stored 'ok' with all its metrics equal to the local
    runner's, and one progress line per cell, [1/N] to [N/N], naming its worker."""
    lines: list[str] = []
    with Store(dirs["base"] / "ray.sqlite") as store:
        summary = run_matrix_ray(get_config("smoke"), store, data_dir=dirs["data_dir"],
                                 checkpoint_dir=dirs["ray_checkpoints"], workers=2,
                                 cpu_devices=CPU_DEVICES, log=lines.append)
        got = _metrics(store)
    n = len(expand(get_config("smoke")))
    assert summary.done == n and summary.failed == 0
    assert got == local_metrics
    assert all(m["status"] == "ok" and "robust_accuracy" in m for m in got.values())
    progress = [line for line in lines if line.startswith("[")]
    assert [int(re.match(r"\[(\d+)/", line)[1]) for line in progress] == list(range(1, n + 1))
    assert all(f"/{n}] cnn7_tiny/standard " in line
               and re.search(r" ok \d+\.\d s on worker [01]$", line) for line in progress)


@pytest.mark.slow
def test_a_worker_killed_mid_run_leaves_every_cell_stored_once(ray, dirs, local_metrics):
    """SIGKILL the worker that just returned the first cell (its group's next cell in
    flight): Ray restarts it, its unfinished cells run again, and the store ends with
    every cell written exactly once, with the uninterrupted run's metrics."""
    lines: list[str] = []
    pids: dict[str, int] = {}
    killed: list[int] = []

    def log(line: str) -> None:
        lines.append(line)
        if found := re.match(r"worker (\d+): pid (\d+) ", line):
            pids[found[1]] = int(found[2])
        if line.startswith("[1/") and not killed:
            worker = re.search(r"on worker (\d+)$", line)[1]
            os.kill(pids[worker], signal.SIGKILL)
            killed.append(int(worker))

    with CountingStore(dirs["base"] / "killed.sqlite") as store:
        summary = run_matrix_ray(get_config("smoke"), store, data_dir=dirs["data_dir"],
                                 checkpoint_dir=dirs["ray_checkpoints"], workers=2,
                                 cpu_devices=CPU_DEVICES, log=log)
        got, writes = _metrics(store), store.writes
    n = len(expand(get_config("smoke")))
    assert killed and any(line.startswith(f"worker {killed[0]} died and Ray restarted it")
                          for line in lines)
    assert summary.done == n and summary.failed == 0
    assert sorted(writes.values()) == [1] * n
    assert got == local_metrics


@pytest.fixture()
def silent_address():
    """HOST:PORT of a socket that accepts connections and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"127.0.0.1:{server.getsockname()[1]}"


@pytest.mark.parametrize("address", ["localhost:1", "10.255.255.1:6379", "silent"])
def test_an_unreachable_address_fails_within_seconds_naming_it(ray, address, tmp_path,
                                                               request):
    """No hang: RayExecutorError naming the address well within 30 s (the probe waits at
    most 5 s for TCP, 5 s for Ray's GCS), before any cell runs. Addresses: a closed port,
    one nothing routes to (or, behind a proxy, that answers as something else), an open
    port that never answers."""
    if address == "silent":
        address = request.getfixturevalue("silent_address")
    start = time.monotonic()
    with Store(tmp_path / "s.sqlite") as store:
        with pytest.raises(RayExecutorError, match=re.escape(address)):
            run_matrix_ray(get_config("smoke"), store, address=address,
                           data_dir=tmp_path / "data", checkpoint_dir=tmp_path / "ckpt")
        assert store.rows() == []
    assert time.monotonic() - start < 30


def test_the_address_of_a_running_cluster_passes_the_probe(ray):
    """The probe's positive control: the module's own cluster (its GCS address) answers."""
    check_address(ray.get_runtime_context().gcs_address)


def test_an_address_that_is_not_host_port_is_refused(ray, tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        with pytest.raises(RayExecutorError, match="'nowhere' is not HOST:PORT"):
            run_matrix_ray(get_config("smoke"), store, address="nowhere",
                           data_dir=tmp_path / "data", checkpoint_dir=tmp_path / "ckpt")


def test_without_ray_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(RayExecutorError, match=re.escape("pip install 'dfjax[ray]'")):
        import_ray()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores")
def test_two_workers_hold_disjoint_cores_and_xla_threads_to_match(ray, tmp_path):
    """Each of 2 workers on a 2-CPU cluster is pinned to one core of its own, and XLA's
    CPU thread pool in it has one thread per core it holds."""
    actors, described = start_workers(2, data_dir=tmp_path / "data",
                                      checkpoint_dir=tmp_path / "ckpt")
    try:
        cores = [set(d["cores"]) for d in described]
        assert all(d["pinned"] for d in described)
        assert [len(c) for c in cores] == [1, 1] and not cores[0] & cores[1]
        assert [d["xla_threads"] for d in described] == [1, 1]
        assert [d["jax_cpu_devices"] for d in described] == [1, 1]
    finally:
        for actor in actors:
            ray.kill(actor)


@pytest.mark.parametrize("argv,message", [
    (["--address", "localhost:1"], "no Ray cluster answers at localhost:1"),
    (["--workers", "0"], "--workers must be at least 1, got 0"),
])
def test_cli_refuses_a_bad_ray_option_before_any_work(ray, argv, message, tmp_path, capsys):
    """`dfjax run --executor ray` with an unreachable address or no workers: exit 2 with
    the message, and no store created."""
    from dfjax.cli import main

    store = tmp_path / "s.sqlite"
    assert main(["run", "--config", "smoke", "--executor", "ray", "--store", str(store),
                 *argv]) == 2
    assert message in capsys.readouterr().err
    assert not store.exists()


def test_group_key_puts_the_budgets_of_one_attack_together():
    """Smoke's 6 cells form 3 groups (noise, fgsm, pgd), each holding both budgets."""
    groups: dict = {}
    for cell in expand(get_config("smoke")):
        groups.setdefault(group_key(cell), []).append(cell)
    assert len(groups) == 3
    for cells in groups.values():
        assert len({c.attack.name for c in cells}) == 1
        assert sorted(c.attack.delta for c in cells) == pytest.approx([0.0, 8.0])


def test_a_warm_start_base_is_trained_before_its_fine_tuned_detector():
    """Stage 1's detectors for a warm-started training: the standard base first, then the
    fine-tuned one, each once, as cells without a transfer source."""
    config = dataclasses.replace(get_config("smoke"), trainings=(
        TrainSpec(recipe="pgd_at", epochs=1, batch_size=32, options={"warm_start_epochs": 1}),))
    detectors = _detector_cells(expand(config))
    assert [c.training.recipe for c in detectors.values()] == ["standard", "pgd_at"]
    assert all(c.source is None and c.detector_id == d for d, c in detectors.items())


def test_tasks_needing_a_failed_key_are_given_up_with_its_error_and_the_rest_keep_order():
    queue = collections.deque([[_Task("a", "run", ())], [_Task("b", "run", (), ("x",)),
                                                          _Task("c", "run", ())],
                               [_Task("d", "run", (), ("y",))]])
    lost = []
    _drop_blocked(queue, {"x": "RuntimeError: boom"}, lambda t, why: lost.append((t.key, why)))
    assert [[t.key for t in g] for g in queue] == [["a"], ["c"], ["d"]]
    assert lost == [("b", "needs x, which failed: RuntimeError: boom")]
