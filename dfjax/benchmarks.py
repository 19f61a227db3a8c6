"""Timing records and regression checks for `bench/` (pytest-benchmark JSON files).

Every bench run also times a calibration kernel (a 2048x2048 float32 matmul) in the
same process; each figure is stored both raw and as a ratio to it, so runs on
different machines compare. `compare(base, new)` flags any figure whose normalised
median got worse by more than a threshold, and any tracked metric (e.g. robust
accuracy of the smoke matrix) that changed at all: the suite is deterministic.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

CALIBRATION_SIZE = 2048


def calibration_seconds(*, rounds: int = 7, size: int = CALIBRATION_SIZE) -> dict[str, float]:
    """Median/min/max seconds of a size x size float32 matmul (jitted), and its GFLOP/s.

    The matmul is compiled twice, with XLA's default options and with dfjax.xla's,
    timed interleaved, and the faster median is the machine's GEMM rate (on the CI
    machine dfjax's options give the faster one, ~8%), so "% of the GEMM rate" is
    never flattered by a slow calibration."""
    import jax
    import jax.numpy as jnp

    from dfjax.xla import compiler_options

    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    lowered = jax.jit(lambda a: a @ a).lower(a)
    matmuls = [lowered.compile(), lowered.compile(compiler_options())]
    times: list[list[float]] = [[] for _ in matmuls]
    for matmul in matmuls:
        matmul(a).block_until_ready()
    for _ in range(rounds):
        for matmul, ts in zip(matmuls, times):
            start = time.perf_counter()
            matmul(a).block_until_ready()
            ts.append(time.perf_counter() - start)
    times = min(times, key=np.median)
    median = float(np.median(times))
    return {"median": median, "min": float(min(times)), "max": float(max(times)),
            "gflops": 2 * size**3 / median / 1e9}


def cost_flops(compiled: Any) -> float:
    """XLA cost-analysis FLOPs of a compiled executable (0 if XLA gives none), or of a
    dfjax.xla.SplitCompiled for its whole batch (XLA counts one device's share)."""
    from dfjax.xla import SplitCompiled

    devices = 1
    if isinstance(compiled, SplitCompiled):
        compiled, devices = compiled.compiled, len(compiled.devices)
    cost = compiled.cost_analysis() or {}
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return devices * float(cost.get("flops", 0.0))


def plain_model(model: Any) -> Any:
    """The model with its plain layers (fast=False) where it has fast ones: the FLOPs
    a figure's "% of GEMM rate" counts are the function's (the plain layers'), not the
    extra ones the fast layers' space-to-depth convs execute."""
    return model.clone(fast=False) if hasattr(model, "fast") else model


@dataclasses.dataclass(frozen=True)
class Figure:
    """One benchmark figure: its name, raw median seconds and machine-normalised median."""

    name: str
    median: float
    normalised: float | None
    tracked: dict[str, float]


def load_figures(path: Path) -> dict[str, Figure]:
    """Figures of a pytest-benchmark JSON file, keyed by benchmark name."""
    data = json.loads(Path(path).read_text())
    figures = {}
    for bench in data["benchmarks"]:
        extra = bench.get("extra_info", {})
        median = float(bench["stats"]["median"])
        calibration = extra.get("calibration_median_s")
        tracked = {k[len("track_"):]: float(v) for k, v in extra.items()
                   if k.startswith("track_")}
        figures[bench["name"]] = Figure(bench["name"], median,
                                        median / calibration if calibration else None, tracked)
    return figures


def cpu_of(path: Path) -> str | None:
    """The CPU a pytest-benchmark JSON file was measured on (its machine_info), or None."""
    data = json.loads(Path(path).read_text())
    return data.get("machine_info", {}).get("cpu", {}).get("brand_raw")


@dataclasses.dataclass(frozen=True)
class Change:
    name: str
    what: str
    base: float
    new: float

    @property
    def ratio(self) -> float:
        return self.new / self.base if self.base else float("inf")

    def __str__(self) -> str:
        return f"{self.name}: {self.what} {self.base:.6g} -> {self.new:.6g} (x{self.ratio:.2f})"


def compare(base: Path, new: Path, *, threshold: float = 0.25) -> tuple[list[Change], list[str]]:
    """(regressions, notes): a figure regresses when its normalised median (raw when
    either run lacks a calibration) grew by more than `threshold`; a tracked metric
    regresses when it changed at all. Figures in only one file are noted."""
    a, b = load_figures(base), load_figures(new)
    regressions, notes = [], []
    cpus = cpu_of(base), cpu_of(new)
    if None not in cpus and cpus[0] != cpus[1]:
        notes.append(f"different CPUs: base on {cpus[0]!r}, new on {cpus[1]!r}; the calibration "
                     "GEMM and the attack loops need not scale alike across CPUs (measured: a "
                     "Sapphire Rapids Xeon ran the GEMM 1.55x faster than a Zen3 EPYC, cnn7's "
                     "PGD 1.15x), so rerun the base revision on this machine to compare")
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            notes.append(f"{name}: only in {'base' if name in a else 'new'}")
            continue
        fa, fb = a[name], b[name]
        use_norm = fa.normalised is not None and fb.normalised is not None
        base_value = fa.normalised if use_norm else fa.median
        new_value = fb.normalised if use_norm else fb.median
        what = "normalised median" if use_norm else "median seconds"
        if new_value > base_value * (1 + threshold):
            regressions.append(Change(name, what, base_value, new_value))
        for key in sorted(set(fa.tracked) & set(fb.tracked)):
            if not np.isclose(fa.tracked[key], fb.tracked[key], rtol=0, atol=1e-9):
                regressions.append(Change(name, f"tracked {key}", fa.tracked[key],
                                          fb.tracked[key]))
    return regressions, notes


def summary_table(path: Path) -> str:
    """A Markdown table of one bench JSON: name, median s, normalised, extra figures."""
    data = json.loads(Path(path).read_text())
    lines = ["| benchmark | median s | min s | max s | x calibration | img/s | "
             "% GEMM rate | compile s |", "|---|---|---|---|---|---|---|---|"]
    for bench in data["benchmarks"]:
        s, e = bench["stats"], bench.get("extra_info", {})
        cal = e.get("calibration_median_s")

        def f(v: Any, digits: int = 3) -> str:
            return "–" if v is None else f"{v:.{digits}g}"

        lines.append(f"| {bench['name']} | {f(s['median'])} | {f(s['min'])} | {f(s['max'])} | "
                     f"{f(s['median'] / cal if cal else None)} | {f(e.get('images_per_second'))} "
                     f"| {f(e.get('percent_of_gemm_rate'))} | {f(e.get('compile_seconds'))} |")
    return "\n".join(lines) + "\n"
