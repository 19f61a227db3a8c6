"""Check a MatrixConfig against the registries and expand it into cells."""

from __future__ import annotations

import ast
import dataclasses
import functools
import itertools
import math
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from dfjax.attacks import ATTACKS
from dfjax.config import (
    AttackSpec,
    AttackSweep,
    Cell,
    DatasetSpec,
    DefenceSpec,
    MatrixConfig,
    ModelSpec,
    Options,
    SourceSpec,
    TrainSpec,
)
from dfjax.data import DATASETS
from dfjax.defences import DEFENCES
from dfjax.models import MODELS, build_model
from dfjax.models.pretrained import StateDictError, check_weights_file, check_weights_for_model
from dfjax.registry import UnknownNameError
from dfjax.training import RECIPES

AXES = ("dataset", "model", "training", "defence", "attack")
# axis -> (the MatrixConfig field holding its specs, the spec class)
AXIS_SPECS = {"dataset": ("datasets", DatasetSpec), "model": ("models", ModelSpec),
              "training": ("trainings", TrainSpec), "defence": ("defences", DefenceSpec),
              "attack": ("attacks", AttackSweep)}
SEED_LIMIT = 2**32  # seeds in [0, 2**32): numpy refuses negatives, JAX wraps larger ones


class ConfigError(ValueError):
    """A matrix config that cannot run; the message lists every problem found."""


def shown(text: str, limit: int = 80) -> str:
    """`text` as an error message shows it: as is if short and printable, else its repr,
    cut at `limit` characters (arbitrary command-line text stays one readable line)."""
    if len(text) <= limit and text.isprintable():
        return text
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -2**63 <= value < 2**63


def _is_finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _is_plain(value: Any) -> bool:
    """An option value: None, a bool, an int, a finite float, a string, or a tuple of them."""
    if value is None or isinstance(value, (bool, str)) or _is_int(value):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, tuple) and all(_is_plain(v) for v in value)


def _is_numbers(value: Any) -> bool:
    return isinstance(value, tuple) and all(_is_finite_number(v) for v in value)


def _is_options(value: Any) -> bool:
    return isinstance(value, tuple) and all(
        isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)
        and _is_plain(pair[1]) for pair in value)


# A scalar field's annotation -> (its check, what it must be).
_FIELD_KINDS: dict[Any, tuple[Callable[[Any], bool], str]] = {
    str: (lambda v: isinstance(v, str), "a string"),
    int: (_is_int, "an integer in [-2**63, 2**63)"),
    float: (_is_finite_number, "a finite number"),
    tuple[float, ...]: (_is_numbers, "a tuple of finite numbers"),
    tuple[float, ...] | None: (lambda v: v is None or _is_numbers(v),
                               "None or a tuple of finite numbers"),
    Options: (_is_options, ("a dict of options {name: value} with plain values (numbers, "
                            "strings, None, tuples of these)")),
}


_hints = functools.cache(typing.get_type_hints)  # config dataclass -> {field: annotation}


def _field_kinds(cls: type) -> dict[str, tuple[Callable[[Any], bool], str]]:
    """field name -> (check, description) for the scalar fields of a config dataclass."""
    return {name: _FIELD_KINDS[hint] for name, hint in _hints(cls).items()
            if hint in _FIELD_KINDS}


def _field_problems(obj: Any, where: str) -> list[str]:
    """A line per field of the dataclass `obj` whose value is not of its declared kind."""
    problems = []
    for name, (check, kind) in _field_kinds(type(obj)).items():
        value = getattr(obj, name)
        if not check(value):
            problems.append(f"{where}: {name} must be {kind}, got {shown(repr(value))}")
    return problems


def _attack_specs(config: MatrixConfig, sweeps: tuple[AttackSweep, ...] | None = None
                  ) -> list[AttackSpec]:
    """Each sweep (default: config.attacks) at each of its budgets."""
    specs = []
    for sweep in config.attacks if sweeps is None else sweeps:
        for eps in sweep.eps_values if sweep.eps_values is not None else config.eps_values:
            specs.append(AttackSpec(name=sweep.name, norm=sweep.norm, eps=float(eps),
                                    options=sweep.options))
    return specs


@functools.cache
def _weights_mismatch(path: str, model: ModelSpec, image_size: int) -> str | None:
    """Why the weights file `path` cannot initialise `model` at image_size (a file of
    another architecture), or None; read once per process."""
    try:
        check_weights_for_model(path, build_model(model), (image_size, image_size, 3),
                                model_name=model.name)
    except StateDictError as e:
        return str(e)
    return None


def validate(config: MatrixConfig) -> None:
    """Raise ConfigError before anything runs: every name on every axis is registered,
    and every spec's options resolve against its entry (unknown options and refused
    values are listed, with the entry's valid options); extra matrices likewise."""
    problems = _problems(config)
    if problems:
        raise ConfigError("invalid matrix config:\n  " + "\n  ".join(dict.fromkeys(problems)))


def _problems(config: MatrixConfig) -> list[str]:
    """What `validate` reports of `config` and its extras; raises ConfigError at once
    where an axis is not a non-empty tuple of its specs. Values of the wrong type are
    reported alone (their ranges and registry options are checked once the types fit)."""
    problems: list[str] = []

    def resolve(registry, name, options):
        try:
            registry.resolve(name, options)
        except (UnknownNameError, ValueError) as e:
            problems.append(str(e))

    for field, spec_class in AXIS_SPECS.values():
        value = getattr(config, field)
        if not isinstance(value, tuple) or not value:
            problems.append(f"{field} must be a non-empty tuple, got {value!r}")
        elif not all(isinstance(spec, spec_class) for spec in value):
            problems.append(f"{field} must hold {spec_class.__name__}s, got {value!r}")
    if problems:
        raise ConfigError("; ".join(problems))
    if not isinstance(config.transfer, tuple) or not all(
            isinstance(sweep, AttackSweep) for sweep in config.transfer):
        raise ConfigError(f"transfer must be a tuple of AttackSweeps (may be empty), got "
                          f"{shown(repr(config.transfer))}")
    problems += _field_problems(config, f"config {config.name!r}")
    for axis, (field, _) in AXIS_SPECS.items():
        for spec in getattr(config, field):
            label = getattr(spec, "name", None) or getattr(spec, "recipe", None)
            problems += _field_problems(spec, f"{axis} {label!r}")
    for sweep in config.transfer:
        problems += _field_problems(sweep, f"transfer attack {sweep.name!r}")
    if problems:
        return problems
    for spec in config.datasets:
        resolve(DATASETS, spec.name, spec.options)
        if not 8 <= spec.image_size <= 1024:
            problems.append(f"dataset {spec.name}: image_size {spec.image_size} not in [8, 1024]")
        if spec.num_examples < 1:
            problems.append(f"dataset {spec.name}: num_examples must be >= 1")
    for spec in config.models:
        resolve(MODELS, spec.name, spec.options)
        if spec.num_logits not in (1, 2):
            problems.append(f"model {spec.name}: num_logits must be 1 or 2")
    for spec in config.trainings:
        resolve(RECIPES, spec.recipe, spec.options)
        if spec.epochs < 1 or spec.batch_size < 1 or spec.learning_rate <= 0:
            problems.append(f"training {spec.recipe}: epochs, batch_size, learning_rate "
                            "must be > 0")
        if isinstance(spec.option("init_from"), str):
            try:
                check_weights_file(spec.option("init_from"))
            except StateDictError as e:
                problems.append(f"training {spec.recipe}: init_from {e}")
                continue
            for model, dataset in itertools.product(config.models, config.datasets):
                if model.name in MODELS and not problems:
                    error = _weights_mismatch(spec.option("init_from"), model,
                                              dataset.image_size)
                    if error:
                        problems.append(f"training {spec.recipe}: init_from {error}")
    for spec in config.defences:
        resolve(DEFENCES, spec.name, spec.options)
    for spec in _attack_specs(config) + _attack_specs(config, config.transfer):
        if spec.name not in ATTACKS:
            resolve(ATTACKS, spec.name, spec.options)
            continue
        try:
            ATTACKS.get(spec.name).resolve_spec(spec)
        except ValueError as e:
            problems.append(str(e))
    if config.n_eval < 1 or config.eval_batch_size < 1:
        problems.append("n_eval and eval_batch_size must be >= 1")
    seeds = [("config", config.seed)] + [(f"dataset {s.name}", s.seed) for s in config.datasets]
    seeds += [(f"training {s.recipe}", s.seed) for s in config.trainings]
    problems += [f"{where}: seed {seed} not in [0, 2**32)" for where, seed in seeds
                 if not 0 <= seed < SEED_LIMIT]
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


def check_cells(cells: Iterable[Cell]) -> None:
    """Raise ConfigError before any work when a transfer cell's source detector is trained
    on another dataset than its target (the cells `expand` makes never are; hand-made
    ones may be), naming each such cell's target, source and both datasets."""
    problems = []
    for cell in cells:
        if cell.source is not None and cell.source.dataset != cell.dataset:
            problems.append(
                f"transfer cell {cell.cell_id} ({cell.model.label()}/{cell.training.label()} "
                f"{cell.attack.label()}): its source {cell.source.label()} is trained on "
                f"dataset {cell.source.dataset.label()} "
                f"({shown(cell.source.dataset.canonical(), 200)}), the target on "
                f"{cell.dataset.label()} ({shown(cell.dataset.canonical(), 200)}); "
                "a transfer attack needs both on the same dataset")
    if problems:
        raise ConfigError("invalid cells:\n  " + "\n  ".join(dict.fromkeys(problems)))


def cell_axis_value(cell: Cell, axis: str) -> str:
    """The cell's name on `axis` (for `--only`); a transfer cell's is its target's."""
    return {"dataset": cell.dataset.name, "model": cell.model.name,
            "training": cell.training.recipe, "defence": cell.defence.name,
            "attack": cell.attack.name}[axis]


def parse_only(items: Iterable[str]) -> dict[str, list[str]]:
    """`--only AXIS=V1,V2` items -> {axis: names}; ConfigError naming a malformed item."""
    only: dict[str, list[str]] = {}
    for item in items:
        axis, sep, values = item.partition("=")
        if not sep:
            raise ConfigError(f"--only expects AXIS=V1,V2, got {shown(item)}")
        if axis not in AXES:
            raise ConfigError(f"--only {shown(item)}: unknown axis; axes: {', '.join(AXES)}")
        names = [v for v in values.split(",") if v]
        if not names:
            raise ConfigError(f"--only {shown(item)}: names no {axis}")
        only.setdefault(axis, []).extend(names)
    return only


def expand(config: MatrixConfig, only: Mapping[str, Sequence[str]] | None = None) -> list[Cell]:
    """All cells of a valid config, grouped so cells sharing a detector are adjacent.

    only: {axis: allowed names} keeps a sub-matrix (e.g. {"attack": ["pgd"]}); each name
    must be one the config has on that axis (ConfigError listing them otherwise).
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
        present = {cell_axis_value(c, axis) for c in unique.values()}
        missing = [name for name in allowed if name not in present]
        if missing:
            raise ConfigError(f"--only {shown(axis + '=' + ','.join(map(str, missing)))}: config "
                              f"{config.name!r} has no such {axis}; its {axis}s: "
                              f"{', '.join(sorted(present))}")
        cells = [c for c in cells if cell_axis_value(c, axis) in set(allowed)]
    return cells


def _product_cells(config: MatrixConfig) -> list[Cell]:
    common = dict(n_eval=config.n_eval, seed=config.seed,
                  eval_batch_size=config.eval_batch_size)
    cells = [
        Cell(dataset=d, model=m, training=t, defence=df, attack=a, **common)
        for d, m, t, df, a in itertools.product(
            config.datasets, config.models, config.trainings, config.defences,
            _attack_specs(config))
    ]
    return cells + _transfer_cells(config) + [
        c for sub in config.extra for c in _product_cells(sub)]


def _transfer_cells(config: MatrixConfig) -> list[Cell]:
    """config.transfer's cells: every ordered (source, target) pair of the config's
    detectors on one dataset (self pairs too), target behind each defence, each budget."""
    specs = _attack_specs(config, config.transfer)
    if not specs:
        return []
    detectors = list(itertools.product(config.datasets, config.models, config.trainings))
    return [
        Cell(dataset=d, model=m, training=t, defence=df, attack=a,
             source=SourceSpec(dataset=sd, model=sm, training=st), n_eval=config.n_eval,
             seed=config.seed, eval_batch_size=config.eval_batch_size)
        for (d, m, t), (sd, sm, st) in itertools.product(detectors, detectors) if sd == d
        for df in config.defences for a in specs
    ]


def _tupled(value: Any) -> Any:
    """Lists as tuples, at every depth (dict values too): hashable, as specs need."""
    if isinstance(value, (list, tuple)):
        return tuple(_tupled(v) for v in value)
    if isinstance(value, dict):
        return {k: _tupled(v) for k, v in value.items()}
    return value


def _override_value(item: str, raw: str, cls: type, field: str) -> Any:
    """The value of `--set ...field=raw` for a field of `cls`, as its declared kind;
    ConfigError naming the item when it is not of that kind."""
    item = shown(item)
    try:
        value = _tupled(ast.literal_eval(raw))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        value = raw  # a bare word: a name (dataset.name=image_folder) or a typo, checked below
    hint = _hints(cls)[field]
    check, kind = _FIELD_KINDS[hint]
    if hint is str and not isinstance(value, str):
        value = raw  # names stay text: --set defence.name=None means the name 'None'
    if hint is float and _is_int(value):
        value = float(value)
    if field == "eps_values" and _is_finite_number(value):
        value = (float(value),)
    if field == "options":
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"--set {item}: options must be a dict {{name: value}} with "
                              f"string names, got {shown(repr(value))}")
        value = tuple(sorted(value.items()))
    if not check(value):
        raise ConfigError(f"--set {item}: {field} must be {kind}, got {shown(repr(value))}")
    return value


def apply_overrides(config: MatrixConfig, overrides: Iterable[str]) -> MatrixConfig:
    """`--set KEY=VALUE`: KEY is a MatrixConfig field (n_eval, seed, eps_values, ...) or
    AXIS.FIELD for every spec on that axis (dataset.num_examples, training.epochs, ...).
    VALUE is a Python literal (or a bare word, for names) of the field's kind; anything
    else raises ConfigError naming the item. Ranges are checked by `validate`."""
    overrides = list(overrides)
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {shown(str(item))}")
        key, raw = item.split("=", 1)
        if "." in key:
            axis, field = key.split(".", 1)
            if axis not in AXIS_SPECS:
                raise ConfigError(f"--set {shown(item)}: unknown axis {axis[:80]!r}; axes: "
                                  f"{', '.join(AXIS_SPECS)}")
            axis_field, spec_class = AXIS_SPECS[axis]
            names = {f.name for f in dataclasses.fields(spec_class)}
            if field not in names:
                raise ConfigError(f"--set {shown(item)}: {axis} has no field {field[:80]!r}; "
                                  f"fields: {sorted(names)}")
            value = _override_value(item, raw, spec_class, field)
            new = tuple(dataclasses.replace(s, **{field: value})
                        for s in getattr(config, axis_field))
            config = dataclasses.replace(config, **{axis_field: new})
        else:
            names = {f.name for f in dataclasses.fields(config)}
            if key not in names:
                raise ConfigError(f"--set {shown(item)}: unknown config field {key[:80]!r}; "
                                  f"fields: {sorted(names)}")
            if key not in _field_kinds(MatrixConfig) or key == "name":
                raise ConfigError(f"--set {shown(item)}: cannot change {key!r} (set a field "
                                  "of every spec on an axis with AXIS.FIELD=VALUE)")
            config = dataclasses.replace(
                config, **{key: _override_value(item, raw, MatrixConfig, key)})
    extra = tuple(apply_overrides(sub, overrides) for sub in config.extra)
    return dataclasses.replace(config, extra=extra)


def override(config: MatrixConfig, overrides: Iterable[str]) -> MatrixConfig:
    """`apply_overrides`, then the problems the overrides brought into a config that had
    none are raised as one ConfigError naming the --set items (`dfjax run --set`)."""
    overrides = list(overrides)
    changed = apply_overrides(config, overrides)
    if overrides and not _problems(config):
        problems = _problems(changed)
        if problems:
            items = " --set ".join(shown(item) for item in overrides)
            raise ConfigError(f"invalid matrix config after --set {items}"
                              ":\n  " + "\n  ".join(dict.fromkeys(problems)))
    return changed
