"""`dfjax.benchmark`: score your own detector the way `dfjax run` scores a zoo detector.

The detector is a JAX logits function (x float32 [b, h, w, c] in [0, 1] -> logits
[b, 2], [b, 1] or [b]) or a Flax module with its variables. Each attack becomes one cell
of the matrix -- the dataset spec, a model axis named by the user, training `user`, the
defence, the attack at eps -- and runs through the runner's own pipeline
(`dfjax.runner.pipeline.run_cell`): the same evaluation subset, compiled attacks (dfjax's
XLA options, the batch split across the CPU devices), metrics and sanity checks, then
the same store row. So the numbers are a run cell's numbers, and the rows (training
label `user`) show up wherever the store's rows do, the leaderboard included.

Keys: each cell's key is cell_key(seed, cell_id), as for every run cell. The cell id
contains the user's name, so a zoo detector benchmarked under another name gets other
random starts than its `dfjax run` cell: the numbers agree exactly where the attacks
draw nothing at random (FGSM, PGD without random start), and agree in distribution
otherwise.

Example (`model`, `variables`: your Flax detector; README.md has a complete one):
    >>> result = dfjax.benchmark(model, variables, name="my-cnn", eps=8 / 255)
    >>> print(result.summary())  # clean, per-attack and worst-case accuracy, flags
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import re
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dfjax import settings
from dfjax.attacks import ATTACKS
from dfjax.attacks.evaluate import AttackEvaluator
from dfjax.config import AttackSpec, Cell, DatasetSpec, DefenceSpec, ModelSpec, TrainSpec
from dfjax.data import DATASETS, DatasetSplits, Split, load_dataset
from dfjax.defences import DEFENCES
from dfjax.metrics.robustness import robust_flags
from dfjax.models import MODELS, count_parameters
from dfjax.registry import UnknownNameError
from dfjax.runner.environment import environment, provenance
from dfjax.runner.pipeline import run_cell, store_cell
from dfjax.store import Store
from dfjax.training.detectors import Detector
from dfjax.xla import use_cpu_cores

DEFAULT_STORE = Path("runs") / "benchmark.sqlite"
# The training axis of every user-supplied detector's rows: dfjax did not train it.
USER_TRAINING = TrainSpec(recipe="user", epochs=0, batch_size=0, learning_rate=0.0)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

AttackLike = str | Mapping[str, Any]
# The dataset axis of rows scored on the user's own arrays (options: their content hash).
USER_ARRAYS = "user_arrays"


def _user_arrays(images, labels) -> tuple[DatasetSpec, DatasetSplits]:
    """The user's own test examples as a dataset: images uint8, or float in [0, 1], [n, h,
    w, c] (c = 1 or 3), stored as 8 bits as every dfjax dataset is; labels 0 real / 1
    fake [n]. The spec names them by content hash, so rows of other arrays never mix.
    Anything else raises ValueError saying what is wrong, before anything compiles."""
    images, labels = np.asarray(images), np.asarray(labels)
    where = "dfjax.benchmark: dataset=(images, labels):"
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or len(images) == 0:
        raise ValueError(f"{where} images must be [n >= 1, h, w, c] with c = 1 or 3, got "
                         f"shape {images.shape}")
    if labels.shape != (len(images),) or not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{where} labels must be {len(images)} values, 0 (real) or 1 "
                         f"(fake), got shape {labels.shape} and values "
                         f"{np.unique(labels)[:5].tolist()}")
    if images.dtype != np.uint8:
        if not np.issubdtype(images.dtype, np.floating):
            raise ValueError(f"{where} images must be uint8 or float in [0, 1], got "
                             f"{images.dtype}")
        low, high = float(np.min(images)), float(np.max(images))
        if not (np.isfinite(low) and np.isfinite(high) and 0 <= low and high <= 1):
            raise ValueError(
                f"{where} float images must lie in [0, 1] (pixels; a detector normalises "
                f"inside, and eps is in these units), got values in [{low:g}, {high:g}]: "
                "divide 0-255 pixels by 255, undo any mean/std normalisation")
        images = np.rint(images * 255).astype(np.uint8)
    digest = hashlib.sha256(images.tobytes() + labels.astype(np.int32).tobytes())
    spec = DatasetSpec(name=USER_ARRAYS, image_size=images.shape[1],
                       num_examples=len(images), options=(("sha256", digest.hexdigest()[:16]),))
    n = len(images)
    test = Split(images, labels.astype(np.int32), np.arange(n, dtype=np.int64),
                 np.zeros(n, np.int32))
    empty = test.take(0)
    return spec, DatasetSplits(empty, empty, test, info={"version": "user"})


@dataclasses.dataclass(frozen=True)
class BenchmarkResult:
    """What `benchmark` measured on `n_evaluated` test examples (accuracies in [0, 1]).

    robust_accuracy: attack label -> accuracy under that attack (for `auto`, the
    ensemble's worst case; metrics[label]["robust_accuracy_after_<member>"] has its
    running value after each member). worst_case_robust_accuracy: the fraction of the
    examples classified correctly clean and after every attack. sanity: attack label -> its
    `sanity_*` numbers (1.0 = the check fired; dfjax.attacks.sanity). metrics, timings:
    each attack's full row; cells: attack label -> the Cell stored under it in `store`.
    """

    name: str
    clean_accuracy: float
    robust_accuracy: dict[str, float]
    worst_case_robust_accuracy: float
    sanity: dict[str, dict[str, float]]
    metrics: dict[str, dict[str, float]]
    timings: dict[str, dict[str, float]]
    cells: dict[str, Cell]
    n_evaluated: int
    store: Path

    def summary(self) -> str:
        """A few lines: clean, per-attack and worst-case accuracy, and any fired flag."""
        lines = [f"{self.name}: clean accuracy {self.clean_accuracy:.3f} "
                 f"on {self.n_evaluated} examples"]
        for label, value in self.robust_accuracy.items():
            fired = [k for k, v in self.sanity[label].items()  # the flags, not the numbers
                     if not k.endswith(("_fraction", "_accuracy", "_double_steps")) and v == 1.0]
            line = (f"  {label} eps={self.cells[label].attack.eps:.4g}: "
                    f"robust accuracy {value:.3f}")
            lines.append(line + (f"  (sanity flags fired: {', '.join(fired)})" if fired else ""))
        lines.append(f"  worst case over the attacks: {self.worst_case_robust_accuracy:.3f}")
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True, eq=False)
class _Forward:
    """What the pipeline asks of a model: apply(variables, x, train=False) -> logits [b, k]
    (here from forward(variables, x))."""

    forward: Callable[[Any, jax.Array], jax.Array]

    def apply(self, variables, x, train: bool = False):
        return self.forward(variables, x)


def _user_forward(detector, variables, name: str) -> tuple[Callable, Any, str, bool]:
    """(forward(variables, x) -> output, variables, form, whether `detector` is a module
    the pipeline can call as it is: apply(variables, x, train=False))."""
    if isinstance(detector, nn.Module):
        if variables is None:
            raise ValueError(f"detector {name!r} is a Flax module: pass its variables too, "
                             "dfjax.benchmark(module, variables, name=...)")
        takes_train = "train" in inspect.signature(detector.__call__).parameters
        extra = {"train": False} if takes_train else {}
        forward = lambda v, x: detector.apply(v, x, **extra)  # noqa: E731
        return forward, variables, "flax_module", takes_train
    if callable(detector):
        if variables is not None:
            raise ValueError(f"detector {name!r} is a logits function, which closes over its "
                             "own weights: `variables` goes with a Flax module only")
        return (lambda v, x: detector(x)), {}, "logits_function", False
    raise TypeError(f"detector {name!r} must be a logits function (x [b, h, w, c] in [0, 1] "
                    f"-> logits) or a Flax module, got {type(detector).__name__}")


def _logit_count(forward: Callable, variables, shape: tuple[int, ...], name: str) -> int:
    """The number of logits (2, 1; 0 for one logit returned as [b]) the detector gives on a
    float32 probe batch of `shape` in [0, 1], from its abstract evaluation (nothing runs
    or compiles). Raises ValueError naming the detector and what it returned."""
    probe = jax.ShapeDtypeStruct(shape, jnp.float32)
    try:
        out = jax.eval_shape(forward, variables, probe)
    except Exception as e:  # the user's code: any failure is reported as theirs
        raise ValueError(f"detector {name!r} fails on a batch of the dataset's images, float32 "
                         f"{list(shape)} in [0, 1] (NHWC): {type(e).__name__}: {e}") from None
    expected = (f"logits float [{shape[0]}, 2] (real, fake), [{shape[0]}, 1] or "
                f"[{shape[0]}] (one fake logit)")
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise ValueError(f"detector {name!r} must return one array, {expected}; "
                         f"got {jax.tree.structure(out)}")
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise ValueError(f"detector {name!r} must return {expected}; got dtype {out.dtype}")
    if out.shape == shape[:1]:
        return 0
    if len(out.shape) == 2 and out.shape[0] == shape[0] and out.shape[1] in (1, 2):
        return out.shape[1]
    raise ValueError(f"detector {name!r} must return {expected} for a batch of {shape[0]} "
                     f"images {list(shape)}; got shape {list(out.shape)}")


def _attack_specs(attacks: AttackLike | Sequence[AttackLike], norm: str, eps: float,
                  problems: list[str]) -> list[AttackSpec]:
    """AttackSpecs at (norm, eps) of attack names or {"name": ..., **options} dicts; what
    is wrong with them is appended to `problems`."""
    if isinstance(attacks, (str, Mapping)):
        attacks = (attacks,)
    specs = []
    for attack in attacks:
        if isinstance(attack, str):
            attack_name, options = attack, {}
        elif isinstance(attack, Mapping) and isinstance(attack.get("name"), str):
            attack_name, options = attack["name"], {k: v for k, v in attack.items() if k != "name"}
        else:
            problems.append(f"an attack is a name or a dict {{'name': ..., option: value}}, "
                            f"got {attack!r}")
            continue
        try:
            spec = AttackSpec(name=attack_name, norm=norm, eps=float(eps), options=options)
            ATTACKS.get(attack_name).resolve_spec(spec)
        except (UnknownNameError, ValueError, TypeError) as e:
            problems.append(str(e))
            continue
        specs.append(spec)
    labels = [s.label() for s in specs]
    if len(set(labels)) < len(labels):
        problems.append(f"attacks {labels} name one attack twice")
    if not attacks:
        problems.append("attacks is empty: name at least one (default: 'auto')")
    return specs


def _checked_specs(name, dataset, defence, attacks, norm, eps, n_examples, batch_size):
    """(dataset, defence, attack specs), or ValueError listing every problem found."""
    problems = []
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        problems.append(f"name must be 1-64 letters, digits, '.', '_' or '-' (starting with a "
                        f"letter or digit), got {name!r}")
    elif name in MODELS:
        problems.append(f"name {name!r} is a dfjax zoo model; give your detector a name of "
                        "its own (rows of both would share the model column)")
    dataset = DatasetSpec(name=dataset) if isinstance(dataset, str) else dataset
    defence = DefenceSpec(name=defence) if isinstance(defence, str) else defence
    for registry, spec in ((DATASETS, dataset), (DEFENCES, defence)):
        if registry is DATASETS and getattr(spec, "name", None) == USER_ARRAYS:
            continue  # the user's own arrays, checked by _user_arrays
        if not isinstance(spec, (DatasetSpec, DefenceSpec)):
            problems.append(f"{registry.axis} must be a name or a {registry.axis.title()}Spec, "
                            f"got {spec!r}")
            continue
        try:
            registry.resolve(spec.name, spec.options)
        except (UnknownNameError, ValueError) as e:
            problems.append(str(e))
    specs = _attack_specs(attacks, norm, eps, problems)
    for label, value in (("n_examples", n_examples), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(f"{label} must be a whole number >= 1, got {value!r}")
    if problems:
        raise ValueError("dfjax.benchmark: " + "\n  ".join(["invalid arguments:", *problems]))
    return dataset, defence, specs


def _split_across_cores() -> None:
    """One JAX CPU device per core (dfjax.xla.use_cpu_cores), if JAX has not started."""
    try:
        use_cpu_cores()
    except RuntimeError as e:  # JAX started first: run on the devices it has
        warnings.warn(f"dfjax.benchmark keeps the CPU devices JAX already has: {e}",
                      stacklevel=3)


def benchmark(
    detector, variables=None, *, name: str,
    dataset: str | DatasetSpec | tuple[Any, Any] = "synthetic_faces",
    norm: str = "linf", eps: float = 8 / 255,
    attacks: AttackLike | Sequence[AttackLike] = ("auto",), defence: str | DefenceSpec = "none",
    n_examples: int = 512, batch_size: int = 128, seed: int = 0,
    store: str | Path = DEFAULT_STORE, data_dir: str | Path | None = None,
) -> BenchmarkResult:
    """Score `detector` on `dataset`'s test examples against each attack at `eps`, store
    one row per attack in `store` (model `name`, training `user`) and return the numbers.

    Args:
        detector: a logits function x float32 [b, h, w, c] in [0, 1] -> logits [b, 2]
            (real, fake), [b, 1] or [b] (one fake logit); or a Flax module, called as
            module.apply(variables, x, train=False) (`train` only if it takes one).
            Normalisation belongs inside it: eps is in [0, 1] pixel units.
        variables: the module's variables (a Flax module only). Passing them rather
            than closing over them keeps the weights out of the compiled program.
        name: the detector's name in the store and on the leaderboard (letters, digits,
            '.', '_', '-'; not a zoo model's name). The same name again replaces its rows.
        dataset: a registered dataset name or a DatasetSpec (size, examples, options);
            or your own test examples, (images, labels): images uint8 or float in [0, 1]
            [n, h, w, c], labels 0 real / 1 fake (rows name them `user_arrays` with
            their content hash).
        norm, eps: the threat model, eps in pixel units (8/255 is the paper's delta 8).
        attacks: attack names or {"name": ..., option: value} dicts (`dfjax list`); the
            default `auto` is the worst-case ensemble (APGD-CE, APGD-margin, Square).
        defence: an inference defence in front of the detector, attacked adaptively.
        n_examples, batch_size, seed: as a matrix's n_eval, eval_batch_size and seed.
        store: the SQLite results store; data_dir: where datasets are prepared.

    Bad arguments (images outside [0, 1] included), and a detector whose output is not
    logits [b, 2], [b, 1] or [b] on a batch of the dataset's images, raise ValueError
    (TypeError for a detector that is neither function nor module) before anything
    compiles.
    """
    forward, variables, form, as_is = _user_forward(detector, variables, name)
    arrays = None
    if isinstance(dataset, (tuple, list)):
        if len(dataset) != 2:
            raise ValueError("dfjax.benchmark: dataset=(images, labels) takes two arrays, got "
                             f"{len(dataset)} items")
        dataset, arrays = _user_arrays(*dataset)
    dataset, defence, specs = _checked_specs(name, dataset, defence, attacks, norm, eps,
                                             n_examples, batch_size)
    _split_across_cores()
    splits = arrays or load_dataset(dataset, data_dir=settings.data_dir(data_dir))
    batch = min(batch_size, n_examples, max(len(splits.test), 1))
    shape = (batch, *splits.test.images.shape[1:])  # a batch as the attacks will see it
    num_logits = _logit_count(forward, variables, shape, name)
    if num_logits == 0:  # one logit as [b]: the pipeline takes [b, 1]
        model, num_logits = _Forward(lambda v, x: forward(v, x)[:, None]), 1
    elif as_is:
        model = detector  # exactly what the runner does with a zoo module
    else:
        model = _Forward(forward)
    user_detector = Detector(model, variables, history=[], train_seconds=float("nan"),
                             from_cache=False)
    model_spec = ModelSpec(name=name, num_logits=num_logits)
    evaluator = AttackEvaluator()
    # attack label -> (cell, metrics, timings, per-example outputs)
    rows: dict[str, tuple[Cell, dict, dict, dict]] = {}
    with Store(store) as results:
        for spec in specs:
            cell = Cell(dataset=dataset, model=model_spec, training=USER_TRAINING,
                        defence=defence, attack=spec, n_eval=n_examples, seed=seed,
                        eval_batch_size=batch_size)
            start = time.perf_counter()
            metrics, timings, extra = run_cell(cell, user_detector, splits.test, evaluator,
                                               batch_size, validation=splits.validation)
            timings["wall_time"] = time.perf_counter() - start
            if form == "flax_module":  # the leaderboard's parameter count (rows of run
                metrics["parameters"] = float(count_parameters(variables))  # cells lack it)
            extra["user_detector"] = {"name": name, "form": form}
            env = environment() | provenance(splits, user_detector) | {"detector_source": "user"}
            store_cell(results, cell, metrics, timings, extra, env)
            rows[spec.label()] = (cell, metrics, timings, extra["examples"])
    return _result(name, rows, Path(store))


def _result(name: str, rows: dict[str, tuple[Cell, dict, dict, dict]], store: Path
            ) -> BenchmarkResult:
    """The result of the cells `rows` (label -> cell, metrics, timings, per-example
    outputs, dfjax.metrics.examples.per_example: the same examples in every cell)."""
    _, first_metrics, first_timings, first_examples = next(iter(rows.values()))
    labels = first_examples["label"]
    robust = robust_flags(labels, first_examples["p_fake_clean"])  # the clean input counts
    for _, _, _, examples in rows.values():
        robust &= robust_flags(labels, examples["p_fake_adv"])
    return BenchmarkResult(
        name=name, clean_accuracy=first_metrics["clean_accuracy"],
        robust_accuracy={k: m["robust_accuracy"] for k, (_, m, _, _) in rows.items()},
        worst_case_robust_accuracy=float(robust.mean()),
        sanity={k: {s: v for s, v in m.items() if s.startswith("sanity_")}
                for k, (_, m, _, _) in rows.items()},
        metrics={k: m for k, (_, m, _, _) in rows.items()},
        timings={k: t for k, (_, _, t, _) in rows.items()},
        cells={k: c for k, (c, _, _, _) in rows.items()},
        n_evaluated=int(first_timings["n_evaluated"]), store=store)
