"""Frozen, keyword-only specs for every axis of the matrix, and the matrix itself.

Every spec has a canonical JSON form; a cell's id is built from it, so the same
cell always has the same id (and key, and store row) across runs and machines.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

Options = tuple[tuple[str, Any], ...]


def freeze_options(options: Mapping[str, Any] | Options | None) -> Options:
    """A sorted tuple of (name, value) pairs: hashable, order-independent."""
    if options is None:
        return ()
    items = options.items() if isinstance(options, Mapping) else options
    frozen = []
    for name, value in items:
        if isinstance(value, list):
            value = tuple(value)
        frozen.append((str(name), value))
    return tuple(sorted(frozen))


def _short(value: Any) -> str:
    """Floats in labels at 4 significant digits (1/255 -> 0.003922)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class _Spec:
    """Mixin: canonical JSON, short hash, and option lookup."""

    options: Options

    def __post_init__(self):
        object.__setattr__(self, "options", freeze_options(self.options))

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["options"] = {k: v for k, v in self.options}
        return out

    def canonical(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), default=str)

    def digest(self, length: int = 12) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()[:length]

    def label(self) -> str:
        """The short name shown in tables: the name, plus options when there are any."""
        name = getattr(self, "name", None) or getattr(self, "recipe")
        if not self.options:
            return name
        return name + "[" + ",".join(f"{k}={_short(v)}" for k, v in self.options) + "]"


# What a generator produces, per dataset, when it changed since its first release.
# The version enters the dataset's canonical form, so data directories, detector
# checkpoints and store rows made by an older generator are never reused for it.
DATA_VERSIONS: dict[str, str] = {
    "synthetic_faces": "1.1.0",  # 1.1.0: swaps carry an exposure jump (`swap_exposure`)
    # 1.1.0: label-file paths cannot leave the dataset folder; duplicate, conflicting and
    # cross-split rows, oversized and non-image files are skipped and named
    "real_vs_fake_140k": "1.1.0", "dfdc": "1.1.0", "covid19_xray": "1.1.0",
    "image_folder": "1.1.0",
    "gan_fakes": "1.0.0",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class DatasetSpec(_Spec):
    """Which data: `name` in DATASETS; `image_size` square side in pixels; `num_examples`
    caps the total (synthetic sets generate exactly this many); `seed` fixes generation."""

    name: str
    image_size: int = 64
    num_examples: int = 10_000
    seed: int = 0
    options: Options = ()

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.name in DATA_VERSIONS:
            out["data_version"] = DATA_VERSIONS[self.name]
        return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelSpec(_Spec):
    """Which detector architecture: `name` in MODELS; `num_logits` 2 (softmax) or 1 (sigmoid)."""

    name: str
    num_logits: int = 2
    options: Options = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainSpec(_Spec):
    """How the detector is trained: `recipe` in RECIPES, optax Adam hyperparameters."""

    recipe: str = "standard"
    epochs: int = 8
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    options: Options = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class DefenceSpec(_Spec):
    """Inference-time defence: `name` in DEFENCES (`none` = the bare detector)."""

    name: str = "none"
    options: Options = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class AttackSpec(_Spec):
    """One attack at one budget: `eps` in pixel units ([0, 1] scale) in norm `norm`.

    The paper's "delta" is eps in 1/255 units: delta = 8 <=> eps = 8/255.
    `options` holds the attack's static hyperparameters (e.g. num_steps).
    """

    name: str
    norm: str = "linf"
    eps: float = 0.0
    options: Options = ()

    @property
    def delta(self) -> float:
        return self.eps * 255.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class SourceSpec:
    """The detector a transfer cell crafts its adversarial examples on (white-box to it,
    black-box to the cell's own detector, the target): trained on `dataset` (which must be
    the target's) with `model` and `training`."""

    dataset: DatasetSpec
    model: ModelSpec
    training: TrainSpec

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset.to_dict(), "model": self.model.to_dict(),
                "training": self.training.to_dict()}

    def canonical(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), default=str)

    def label(self) -> str:
        return f"{self.model.label()}/{self.training.label()}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Cell:
    """One point of the matrix; every result row belongs to exactly one cell.

    eval_batch_size: the batch the attack runs at; part of the id, since batches draw
    their random starts from the cell's key. source: for a transfer cell, the detector
    the adversarial examples are crafted on (None: white-box, crafted on the cell's own)."""

    dataset: DatasetSpec
    model: ModelSpec
    training: TrainSpec
    defence: DefenceSpec
    attack: AttackSpec
    n_eval: int
    seed: int
    eval_batch_size: int = 128
    source: SourceSpec | None = None

    @property
    def detector_id(self) -> str:
        """Content hash of what is trained once and shared by many cells."""
        text = "|".join(s.canonical() for s in (self.dataset, self.model, self.training))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def cell_id(self) -> str:
        parts = [self.dataset, self.model, self.training, self.defence, self.attack]
        text = "|".join(s.canonical() for s in parts) + f"|n={self.n_eval}|seed={self.seed}"
        text += f"|batch={self.eval_batch_size}"
        if self.source is not None:
            text += f"|source={self.source.canonical()}"
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def source_cell(self) -> Cell:
        """A transfer cell's white-box counterpart on its source: the source detector
        behind no defence, attacked with the same attack, budget, examples, batch and seed.
        Its key is the key the transfer cell crafts with, so a transfer from a detector to
        itself is that detector's white-box cell."""
        if self.source is None:
            raise ValueError("source_cell: not a transfer cell")
        return dataclasses.replace(self, dataset=self.source.dataset, model=self.source.model,
                                   training=self.source.training, defence=DefenceSpec(),
                                   source=None)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "dataset": self.dataset.to_dict(),
            "model": self.model.to_dict(),
            "training": self.training.to_dict(),
            "defence": self.defence.to_dict(),
            "attack": self.attack.to_dict(),
            "n_eval": self.n_eval,
            "seed": self.seed,
            "eval_batch_size": self.eval_batch_size,
        }
        if self.source is not None:
            out["source"] = self.source.to_dict()
        return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class AttackSweep:
    """An attack crossed with every budget of the matrix (`eps_values` overrides it)."""

    name: str
    norm: str = "linf"
    options: Options = ()
    eps_values: tuple[float, ...] | None = None

    def __post_init__(self):
        object.__setattr__(self, "options", freeze_options(self.options))


@dataclasses.dataclass(frozen=True, kw_only=True)
class MatrixConfig:
    """A named matrix: datasets x models x trainings x defences x attacks x eps, plus
    `extra` sub-matrices whose cells run with it (a sub-set crossed with other axes, e.g.
    one model behind defences; a cell in both runs once). `--set` overrides reach the
    extras too.

    transfer: attacks run as transfer attacks: for every ordered pair (source, target) of
    the matrix's detectors (datasets x models x trainings) on the same dataset, self
    pairs included, each sweep at each of its budgets, crafted on the bare source and
    scored on the target behind each of `defences` (cells with `Cell.source` set)."""

    name: str
    datasets: tuple[DatasetSpec, ...]
    models: tuple[ModelSpec, ...]
    trainings: tuple[TrainSpec, ...] = (TrainSpec(),)
    defences: tuple[DefenceSpec, ...] = (DefenceSpec(),)
    attacks: tuple[AttackSweep, ...] = ()
    eps_values: tuple[float, ...] = (0.0,)
    n_eval: int = 512
    eval_batch_size: int = 128
    seed: int = 0
    extra: tuple["MatrixConfig", ...] = ()
    transfer: tuple[AttackSweep, ...] = ()


def delta_to_eps(*deltas: float) -> tuple[float, ...]:
    """The paper's delta (1/255 pixel units) -> eps on the [0, 1] scale."""
    return tuple(d / 255.0 for d in deltas)
