"""How long a matrix will take, estimated from the bench figures (`dfjax list cells`).

The bench (results/bench/*.json, `dfjax bench run`) measures attacks at one model and
image size: images per second and the FLOPs XLA counts per call. Their ratio is the
machine's effective FLOP rate for gradient passes (the PGD figure) and for forward
passes (the forward figure); a model at any image size then costs its own FLOPs (XLA's
cost analysis of its lowered forward and input-gradient, nothing compiled) over that
rate. A cell costs, per evaluated example, its attack's gradient and forward passes
(`attack_passes`) plus the clean and adversarial forwards; each detector costs its
training (epochs x training examples x the recipe's gradient passes per example, plus a
validation forward per epoch) and the unbounded-PGD sanity check; each distinct program
costs the bench's median compile time. Data preparation is not counted.

That FLOP model leaves out much of a real run (python and metric overheads, sanity
checks, defences' EOT draws, memory-bound layers, small batches), so it is *calibrated*
on the reference run in results/ (`Reference`: results.json's wall time per cell,
training.md's seconds per detector): a cell or detector the reference measured costs
what it measured (scaled by n_eval); any other costs its FLOP figure times the ratio of
measured to FLOP-estimated time over the reference's cells (or detectors). `dfjax list
cells` prints the files used and both ratios.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import statistics
from collections.abc import Iterable
from pathlib import Path

from dfjax.config import Cell, ModelSpec
from dfjax.runner.stages import detector_ids
from dfjax.training.detectors import warm_start_cell

TRAIN_FRACTION = 0.6  # the generated sets' train split (60/20/20)
VALIDATION_FRACTION = 0.2
SANITY_STEPS = 10  # the unbounded PGD of dfjax.attacks.sanity, per detector and defence
_THROUGHPUT = re.compile(r"test_throughput\[(?P<model>[^-\]]+)-(?P<attack>[^-\]]+)")


@dataclasses.dataclass(frozen=True)
class Rates:
    """Effective FLOP/s of gradient and forward passes, and seconds per compile, with the
    bench file they came from."""

    grad_flops_per_second: float
    forward_flops_per_second: float
    compile_seconds: float
    source: str


def load_rates(bench_dir: Path) -> Rates:
    """The rates of the newest bench JSON under `bench_dir` that holds `test_throughput`
    figures with FLOP counts. Raises FileNotFoundError naming the folder when none does."""
    found = []
    for path in sorted(Path(bench_dir).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        rates = _rates(data, path)
        if rates is not None:
            found.append((str(data.get("datetime", "")), rates))
    if not found:
        raise FileNotFoundError(f"no bench figures with FLOP counts in {bench_dir} (run "
                                "`dfjax bench run --short` to measure this machine)")
    return max(found, key=lambda pair: pair[0])[1]


def _rates(data: dict, path: Path) -> Rates | None:
    grad, forward, compiles = [], [], []
    for bench in data.get("benchmarks", []) if isinstance(data, dict) else []:
        match = _THROUGHPUT.match(str(bench.get("name", "")))
        extra, median = bench.get("extra_info") or {}, (bench.get("stats") or {}).get("median")
        if not match or not extra.get("flops_per_call") or not median:
            continue
        rate = float(extra["flops_per_call"]) / float(median)
        (forward if match["attack"] == "forward" else grad).append(rate)
        if match["attack"] != "forward" and extra.get("compile_seconds"):
            compiles.append(float(extra["compile_seconds"]))
    if not grad or not forward:
        return None
    return Rates(max(grad), max(forward), statistics.median(compiles or [1.0]), str(path))


@functools.cache
def model_flops(model: ModelSpec, image_size: int, channels: int = 3) -> tuple[float, float]:
    """(forward, input-gradient) FLOPs of one image through `model` (XLA's cost analysis
    of the lowered programs; nothing is compiled or run)."""
    import jax
    import jax.numpy as jnp

    from dfjax.models import build_model

    module = build_model(model)
    x = jax.ShapeDtypeStruct((1, image_size, image_size, channels), jnp.float32)
    variables = jax.eval_shape(lambda: module.init(
        jax.random.key(0), jnp.zeros(x.shape, x.dtype), train=False))

    def score(v, images):
        return module.apply(v, images, train=False).sum()

    def flops(function) -> float:
        cost = jax.jit(function).lower(variables, x).cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        return float(cost.get("flops", 0.0))

    return flops(score), flops(jax.grad(score, argnums=1))


def attack_passes(cell: Cell) -> tuple[float, float]:
    """(gradient passes, forward passes) per example of the cell's attack, its options
    resolved (dfjax.attacks.ATTACKS), without the clean and adversarial evaluation."""
    from dfjax.attacks import ATTACKS

    name = cell.attack.name
    options = ATTACKS.resolve(name, cell.attack.options)
    if name == "noise":
        return 0.0, 1.0
    if name == "fgsm":
        return 1.0, 0.0
    if name == "square":
        return 0.0, float(options["num_queries"])
    if name == "one_pixel":
        return 0.0, float(options["population"] * options["iterations"])
    if name == "cw_l2":
        return float(options["num_steps"] * options["binary_search_steps"]), 0.0
    if name == "auto":  # two gradient attacks, then the query attack on what is left
        return 2.0 * options["num_steps"], float(options["num_queries"])
    steps = options.get("num_steps", 10) * options.get("num_restarts", 1)
    return float(steps), 0.0


def recipe_passes(cell: Cell) -> float:
    """Gradient passes per training example and epoch of the cell's recipe."""
    from dfjax.training import RECIPES

    options = RECIPES.resolve(cell.training.recipe, cell.training.options)
    return {"standard": 1.0, "fgsm_rs": 2.0, "dp_sgd": 2.0}.get(
        cell.training.recipe, 1.0 + float(options.get("steps", 0)))


@dataclasses.dataclass(frozen=True)
class Reference:
    """A measured run: wall seconds and examples per cell, keyed by `cell_key`; training
    seconds per detector id; where they came from."""

    cells: dict[tuple, tuple[float, int]]
    training: dict[str, float]
    source: str


def cell_key(detector_id: str, defence: str, attack: str, delta: float) -> tuple:
    """How a results row and a cell are matched: detector, defence and attack labels, delta."""
    return detector_id, defence, attack, round(float(delta), 6)


_TRAINED = re.compile(r"^## .*detector (?P<id>[0-9a-f]+), trained in (?P<seconds>[0-9.]+) s",
                      re.MULTILINE)


def load_reference(results_dir: Path) -> Reference | None:
    """The reference run in `results_dir` (results.json, training.md); None if absent.
    A detector's first cell also timed its training: that is taken off its wall time."""
    results_dir = Path(results_dir)
    try:
        rows = json.loads((results_dir / "results.json").read_text())
        training_text = (results_dir / "training.md").read_text()
    except (OSError, ValueError):
        return None
    training = {m["id"]: float(m["seconds"]) for m in _TRAINED.finditer(training_text)}
    cells, first = {}, {}
    for row in rows if isinstance(rows, list) else []:
        if row.get("status") != "ok" or not row.get("wall_time") or not row.get("n_examples"):
            continue
        key = cell_key(row["detector_id"], row["defence"], row["attack"], row["delta"])
        cells[key] = (float(row["wall_time"]), int(row["n_examples"]))
        if cells[key][0] > cells.get(first.get(row["detector_id"]), (0.0, 0))[0]:
            first[row["detector_id"]] = key
    for detector_id, key in first.items():  # the slowest cell of a detector trained it
        wall, n = cells[key]
        cells[key] = (max(wall - training.get(detector_id, 0.0), 0.0), n)
    return Reference(cells, training, f"{results_dir / 'results.json'}, "
                                      f"{results_dir / 'training.md'}")


@dataclasses.dataclass
class Estimate:
    """Estimated seconds per part of a run, the cells and detectors counted."""

    cells: int = 0
    detectors: int = 0
    training: float = 0.0
    attacks: float = 0.0  # compiling included
    measured_cells: int = 0  # cells and detectors priced from the reference run
    measured_detectors: int = 0
    attack_ratio: float = 1.0  # measured / FLOP-estimated, applied to the rest
    training_ratio: float = 1.0

    @property
    def total(self) -> float:
        return self.training + self.attacks


def estimate(cells: Iterable[Cell], rates: Rates, reference: Reference | None = None,
             reference_cells: Iterable[Cell] = ()) -> Estimate:
    """The estimated time to run `cells` (training their detectors, warm-start bases and
    transfer sources included) on the machine `rates` measured, calibrated on `reference`
    (the measured run of `reference_cells`, e.g. the default matrix) when given."""
    cells = list(cells)
    flop = flop_estimate(cells, rates)
    out = Estimate(cells=len(cells), detectors=len(flop.training))
    if reference is not None:
        ref = flop_estimate(list(reference_cells), rates)
        measured = {k: reference.cells[_key(c)] for k, c in ref.cells.items()
                    if _key(c) in reference.cells}
        if measured:
            out.attack_ratio = (sum(w for w, _ in measured.values())
                                / max(sum(ref.attacks[k] for k in measured), 1e-9))
        trained = {d: reference.training[d] for d in ref.training if d in reference.training}
        if trained:
            out.training_ratio = (sum(trained.values())
                                  / max(sum(ref.training[d] for d in trained), 1e-9))
    for cell_id, cell in flop.cells.items():
        found = reference.cells.get(_key(cell)) if reference is not None else None
        if found is not None:
            out.measured_cells += 1
            out.attacks += found[0] * cell.n_eval / found[1]
        else:
            out.attacks += flop.attacks[cell_id] * out.attack_ratio
    for detector_id, seconds in flop.training.items():
        found = reference.training.get(detector_id) if reference is not None else None
        out.measured_detectors += found is not None
        out.training += found if found is not None else seconds * out.training_ratio
    return out


def _key(cell: Cell) -> tuple | None:
    if cell.source is not None:  # a transfer cell: the reference keys white-box cells only
        return None
    return cell_key(cell.detector_id, cell.defence.label(), cell.attack.label(),
                    cell.attack.delta)


@dataclasses.dataclass
class FlopEstimate:
    """The uncalibrated FLOP model: seconds per cell (attack, its sanity check and
    compiles; by cell id) and per detector (training and its compiles)."""

    cells: dict[str, Cell]
    attacks: dict[str, float]
    training: dict[str, float]


def flop_estimate(cells: list[Cell], rates: Rates) -> FlopEstimate:
    """Seconds each cell and detector costs by FLOPs over the bench's rates."""
    out = FlopEstimate({c.cell_id: c for c in cells}, {}, {})

    def seconds(cell: Cell, grads: float, forwards: float) -> float:
        forward, grad = model_flops(cell.model, cell.dataset.image_size)
        return (grads * grad / rates.grad_flops_per_second
                + forwards * forward / rates.forward_flops_per_second)

    by_detector = {}
    for cell in cells:
        for base in ([cell.source_cell()] if cell.source is not None else []) + [cell]:
            by_detector.setdefault(base.detector_id, base)
            if base.training.option("warm_start_epochs"):
                by_detector.setdefault(warm_start_cell(base).detector_id, warm_start_cell(base))
    for detector_id in detector_ids(cells):
        cell = by_detector[detector_id]
        n = cell.dataset.num_examples
        per_epoch = seconds(cell, recipe_passes(cell) * TRAIN_FRACTION * n,
                            VALIDATION_FRACTION * n)
        # plus two compiles: the train step and the evaluation
        out.training[detector_id] = (cell.training.epochs * per_epoch
                                     + 2 * rates.compile_seconds)
    programs, sanity = set(), set()
    for cell in cells:
        grads, forwards = attack_passes(cell)
        total = cell.n_eval * seconds(cell, grads, forwards + 2.0)
        key = (cell.detector_id, cell.defence.canonical())
        if key not in sanity:
            sanity.add(key)
            total += cell.n_eval * seconds(cell, SANITY_STEPS, 1.0) + rates.compile_seconds
        program = (cell.model.canonical(), cell.dataset.image_size, cell.defence.canonical(),
                   cell.attack.name, cell.attack.norm, cell.attack.options)
        if program not in programs:
            programs.add(program)
            total += rates.compile_seconds
        out.attacks[cell.cell_id] = total
    return out


def describe(result: Estimate, rates: Rates, reference: Reference | None) -> list[str]:
    """Lines for `dfjax list cells`: the total and its parts, and the figures used."""
    lines = [
        f"estimated time: {_duration(result.total)} (training {_duration(result.training)} "
        f"for {result.detectors} detectors, attacks {_duration(result.attacks)} for "
        f"{result.cells} cells, compiling included; data preparation not counted)",
        f"from the bench figures in {rates.source}: {rates.grad_flops_per_second / 1e9:.1f} "
        f"GFLOP/s in gradient passes, {rates.forward_flops_per_second / 1e9:.1f} GFLOP/s "
        f"forward, {rates.compile_seconds:.2f} s per compile; each model's FLOPs from XLA's "
        "cost analysis",
    ]
    if reference is not None:
        lines.append(
            f"calibrated on the reference run ({reference.source}): {result.measured_cells} "
            f"cells and {result.measured_detectors} detectors priced as measured there; the "
            f"rest at {result.attack_ratio:.1f}x (attacks) and {result.training_ratio:.1f}x "
            "(training) their FLOP estimate, the reference's measured/estimated ratios")
    return lines


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
