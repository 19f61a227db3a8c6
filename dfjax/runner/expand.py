"""Check a MatrixConfig against the registries and expand it into cells."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Mapping, Sequence

from dfjax.attacks import ATTACKS
from dfjax.config import AttackSpec, Cell, MatrixConfig
from dfjax.data import DATASETS
from dfjax.defences import DEFENCES
from dfjax.models import MODELS
from dfjax.registry import UnknownNameError
from dfjax.training import RECIPES

AXES = ("dataset", "model", "training", "defence", "attack")


class ConfigError(ValueError):
    """A matrix config that cannot run; the message lists every problem found."""


def _attack_specs(config: MatrixConfig) -> list[AttackSpec]:
    specs = []
    for sweep in config.attacks:
        for eps in sweep.eps_values if sweep.eps_values is not None else config.eps_values:
            specs.append(AttackSpec(name=sweep.name, norm=sweep.norm, eps=float(eps),
                                    options=sweep.options))
    return specs


def validate(config: MatrixConfig) -> None:
    """Raise ConfigError before anything runs: every name on every axis is registered,
    and every spec's options resolve against its entry (unknown options and refused
    values are listed, with the entry's valid options); extra matrices likewise."""
    problems = _problems(config)
    if problems:
        raise ConfigError("invalid matrix config:\n  " + "\n  ".join(dict.fromkeys(problems)))


def _problems(config: MatrixConfig) -> list[str]:
    """What `validate` reports of `config` and its extras; raises ConfigError at once
    where an axis is not a non-empty tuple."""
    problems: list[str] = []

    def resolve(registry, name, options):
        try:
            registry.resolve(name, options)
        except (UnknownNameError, ValueError) as e:
            problems.append(str(e))

    for field, kind in (("datasets", tuple), ("models", tuple), ("trainings", tuple),
                        ("defences", tuple), ("attacks", tuple)):
        value = getattr(config, field)
        if not isinstance(value, kind) or not value:
            problems.append(f"{field} must be a non-empty tuple, got {value!r}")
    if problems:
        raise ConfigError("; ".join(problems))
    for spec in config.datasets:
        resolve(DATASETS, spec.name, spec.options)
        if not 8 <= spec.image_size <= 1024:
            problems.append(f"dataset {spec.name}: image_size {spec.image_size} not in [8, 1024]")
    for spec in config.models:
        resolve(MODELS, spec.name, spec.options)
        if spec.num_logits not in (1, 2):
            problems.append(f"model {spec.name}: num_logits must be 1 or 2")
    for spec in config.trainings:
        resolve(RECIPES, spec.recipe, spec.options)
        if spec.epochs < 1 or spec.batch_size < 1 or spec.learning_rate <= 0:
            problems.append(f"training {spec.recipe}: epochs, batch_size, learning_rate must be > 0")
    for spec in config.defences:
        resolve(DEFENCES, spec.name, spec.options)
    for spec in _attack_specs(config):
        if spec.name not in ATTACKS:
            resolve(ATTACKS, spec.name, spec.options)
            continue
        try:
            ATTACKS.get(spec.name).resolve_spec(spec)
        except ValueError as e:
            problems.append(str(e))
    if config.n_eval < 1 or config.eval_batch_size < 1:
        problems.append("n_eval and eval_batch_size must be >= 1")
    if not isinstance(config.extra, tuple) or not all(
            isinstance(sub, MatrixConfig) for sub in config.extra):
        problems.append(f"extra must be a tuple of MatrixConfig, got {config.extra!r}")
    else:
        for sub in config.extra:
            try:
                problems.extend(f"extra matrix {sub.name!r}: {p}" for p in _problems(sub))
            except ConfigError as e:
                problems.append(f"extra matrix {sub.name!r}: {e}")
    return problems


def cell_axis_value(cell: Cell, axis: str) -> str:
    return {"dataset": cell.dataset.name, "model": cell.model.name,
            "training": cell.training.recipe, "defence": cell.defence.name,
            "attack": cell.attack.name}[axis]


def expand(config: MatrixConfig, only: Mapping[str, Sequence[str]] | None = None) -> list[Cell]:
    """All cells of a valid config, grouped so cells sharing a detector are adjacent.

    only: {axis: allowed names} keeps a sub-matrix (e.g. {"attack": ["pgd"]}).
    """
    validate(config)
    for axis in only or {}:
        if axis not in AXES:
            raise ConfigError(f"unknown axis {axis!r} in --only; axes: {', '.join(AXES)}")
    unique = {c.cell_id: c for c in _product_cells(config)}
    # stable grouping: a detector's cells (from the main matrix and the extras) adjacent,
    # detectors in order of first appearance
    order: dict[tuple, int] = {}
    for c in unique.values():
        order.setdefault((c.dataset, c.detector_id), len(order))
    cells = sorted(unique.values(), key=lambda c: order[(c.dataset, c.detector_id)])
    for axis, allowed in (only or {}).items():
        cells = [c for c in cells if cell_axis_value(c, axis) in set(allowed)]
    return cells


def _product_cells(config: MatrixConfig) -> list[Cell]:
    cells = [
        Cell(dataset=d, model=m, training=t, defence=df, attack=a,
             n_eval=config.n_eval, seed=config.seed)
        for d, m, t, df, a in itertools.product(
            config.datasets, config.models, config.trainings, config.defences,
            _attack_specs(config))
    ]
    return cells + [c for sub in config.extra for c in _product_cells(sub)]


def apply_overrides(config: MatrixConfig, overrides: Iterable[str]) -> MatrixConfig:
    """`--set KEY=VALUE`: KEY is a MatrixConfig field (n_eval, seed, eps_values, ...) or
    AXIS.FIELD for every spec on that axis (dataset.num_examples, training.epochs, ...)."""
    import ast

    overrides = list(overrides)
    axis_fields = {"dataset": "datasets", "model": "models", "training": "trainings",
                   "defence": "defences", "attack": "attacks"}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        if "." in key:
            axis, field = key.split(".", 1)
            if axis not in axis_fields:
                raise ConfigError(f"unknown axis {axis!r} in --set {item}; axes: "
                                  f"{', '.join(axis_fields)}")
            specs = getattr(config, axis_fields[axis])
            names = {f.name for f in dataclasses.fields(specs[0])}
            if field not in names:
                raise ConfigError(f"{axis} has no field {field!r}; fields: {sorted(names)}")
            new = tuple(dataclasses.replace(s, **{field: value}) for s in specs)
            config = dataclasses.replace(config, **{axis_fields[axis]: new})
        else:
            names = {f.name for f in dataclasses.fields(config)}
            if key not in names:
                raise ConfigError(f"unknown config field {key!r}; fields: {sorted(names)}")
            if key in ("extra", "name"):
                raise ConfigError(f"--set cannot change {key!r}")
            if key == "eps_values" and not isinstance(value, tuple):
                value = (value,) if isinstance(value, (int, float)) else tuple(value)
            config = dataclasses.replace(config, **{key: value})
    extra = tuple(apply_overrides(sub, overrides) for sub in config.extra)
    return dataclasses.replace(config, extra=extra)
