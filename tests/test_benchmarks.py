"""The bench's short mode writes JSON, and `dfjax bench compare` flags a slowed build."""

import json
import os
import subprocess
import sys

import pytest

from dfjax.benchmarks import compare, cost_flops
from dfjax.cli import main


def _bench_json(path, figures, cpu=None):
    machine = {} if cpu is None else {"machine_info": {"cpu": {"brand_raw": cpu}}}
    path.write_text(json.dumps({**machine, "benchmarks": [
        {"name": name, "stats": {"median": median, "min": median, "max": median},
         "extra_info": {"calibration_median_s": cal, **extra}}
        for name, (median, cal, extra) in figures.items()]}))
    return path


def test_compare_normalises_by_calibration(tmp_path):
    base = _bench_json(tmp_path / "a.json", {"pgd": (1.0, 0.1, {}), "fwd": (0.2, 0.1, {})})
    # a machine twice as slow everywhere: no regression
    slower_machine = _bench_json(tmp_path / "b.json", {"pgd": (2.0, 0.2, {}),
                                                       "fwd": (0.4, 0.2, {})})
    assert compare(base, slower_machine) == ([], [])
    # the same machine, pgd 50% slower: flagged
    slower_pgd = _bench_json(tmp_path / "c.json", {"pgd": (1.5, 0.1, {}), "fwd": (0.2, 0.1, {})})
    regressions, _ = compare(base, slower_pgd)
    assert [r.name for r in regressions] == ["pgd"] and regressions[0].ratio == pytest.approx(1.5)


def test_compare_flags_any_change_in_tracked_metrics(tmp_path):
    base = _bench_json(tmp_path / "a.json", {"smoke": (1.0, 0.1, {"track_pgd": 0.5})})
    new = _bench_json(tmp_path / "b.json", {"smoke": (1.0, 0.1, {"track_pgd": 0.25})})
    regressions, _ = compare(base, new)
    assert len(regressions) == 1 and "tracked pgd" in str(regressions[0])
    assert main(["bench", "compare", str(base), str(new)]) == 1
    assert main(["bench", "compare", str(base), str(base)]) == 0


def test_compare_notes_runs_from_different_cpus(tmp_path):
    """Normalised medians do not transfer across CPUs: compare says so, once, naming both."""
    def on(cpu, name):
        return _bench_json(tmp_path / name, {"pgd": (1.0, 0.1, {})}, cpu=cpu)

    zen, xeon = on("AMD EPYC", "a.json"), on("Intel Xeon", "b.json")
    zen_again = on("AMD EPYC", "c.json")
    _, notes = compare(zen, xeon)
    assert len(notes) == 1 and "'AMD EPYC'" in notes[0] and "'Intel Xeon'" in notes[0]
    assert compare(zen, zen_again) == ([], [])


@pytest.mark.slow
def test_short_bench_writes_json_and_slowed_build_is_flagged(tmp_path):
    def run(out, slowdown):
        # not PYTEST_XDIST_WORKER: pytest-benchmark would take the bench for an xdist worker
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")},
               "DFJAX_BENCH_SLOWDOWN": str(slowdown)}
        subprocess.run([sys.executable, "-m", "dfjax.cli", "bench", "run", "--short", "--out",
                        str(out), "-k", "forward or calibration"], env=env, check=True,
                       capture_output=True)
        return json.loads(out.read_text())

    base = run(tmp_path / "base.json", 1)
    names = {b["name"] for b in base["benchmarks"]}
    assert "test_throughput[cnn7-forward-b64]" in names and "test_calibration_matmul" in names
    forward = next(b for b in base["benchmarks"] if "forward" in b["name"])
    assert forward["extra_info"]["images_per_second"] > 0
    assert forward["extra_info"]["flops_per_call"] > 0
    run(tmp_path / "slow.json", 6)
    regressions, _ = compare(tmp_path / "base.json", tmp_path / "slow.json")
    assert any("forward" in r.name for r in regressions)


def test_cost_flops_of_a_split_function_counts_the_whole_batch():
    import jax.numpy as jnp

    from dfjax.xla import compile_split, jit

    def f(w, x, y):
        return x @ w + y[:, None]

    args = (jnp.ones((64, 64)), jnp.ones((128, 64)), jnp.ones(128))
    split = compile_split(f, *args)
    assert len(split.devices) == 2
    whole = cost_flops(jit(f).lower(*args).compile())
    assert whole > 0
    assert cost_flops(split) == pytest.approx(whole, rel=1e-3)  # XLA counts per device
