"""Fuzzing the command line's config strings and config values (issue 18).

Whatever `--set KEY=VALUE`, `--only AXIS=V1,V2` or a config file's values hold -- text,
unicode, NaN, infinities, huge numbers, nested literals, empty strings, unknown keys --
the config is either rejected with a ConfigError naming the offending item, before any
data loads, or accepted and validated. Never another exception, never a hang.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dfjax.config import Cell, MatrixConfig
from dfjax.configs import get_config
from dfjax.runner.expand import AXES, ConfigError, expand, override, parse_only, shown

FUZZ = settings(max_examples=60, deadline=None, database=None, derandomize=True)
FUZZ_CLI = settings(max_examples=25, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

SMOKE = get_config("smoke")

# Keys a user may type: every settable field, the ones that must be refused, typos, junk.
KNOWN_KEYS = ["n_eval", "eval_batch_size", "seed", "eps_values", "name", "extra", "datasets",
              "attacks", "dataset.name", "dataset.image_size", "dataset.num_examples",
              "dataset.seed", "dataset.options", "model.name", "model.num_logits",
              "model.options", "training.recipe", "training.epochs", "training.batch_size",
              "training.learning_rate", "training.seed", "training.options", "defence.name",
              "defence.options", "attack.name", "attack.norm", "attack.options",
              "attack.eps_values", "n_evl", "dataset.size", "atack.name", "", "."]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**18, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
literals = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                     st.lists(inner, max_size=4).map(tuple),
                                     st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8)


def _as_text(value) -> str:
    """A literal as a user would type it; NaN and infinities as Python writes them."""
    return repr(value)


values = st.one_of(
    st.text(),  # arbitrary unicode, empty included
    literals.map(_as_text),
    st.sampled_from(["", "nan", "inf", "-inf", "1e999", "-1e999", "float('nan')", "9" * 5000,
                     "(" * 300 + ")" * 300, "[" * 50 + "]" * 50, "{'num_steps': 3}",
                     "{'num_steps': 'x'}", "{1: 2}", "__import__('os')", "\x00", "\ud800",
                     "0.5", "-0.5", "0", "3", "8/255", "(0.0, 1e-3)", "[0.1, 'a']"]),
)
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=20))
# Values a user plausibly types for each kind of key: numbers near and past the limits,
# registered and unregistered names, real and misspelt options.
INT_KEYS = ["n_eval", "eval_batch_size", "seed", "dataset.image_size", "dataset.num_examples",
            "dataset.seed", "model.num_logits", "training.epochs", "training.batch_size",
            "training.seed"]
FLOAT_KEYS = ["eps_values", "attack.eps_values", "training.learning_rate"]
NAME_KEYS = ["dataset.name", "model.name", "training.recipe", "defence.name", "attack.name",
             "attack.norm"]
OPTION_KEYS = ["dataset.options", "model.options", "training.options", "defence.options",
               "attack.options"]
NAMES = ["synthetic_faces", "cnn7_tiny", "cnn6_tiny", "standard", "pgd_at", "none", "jpeg",
         "fgsm", "pgd", "noise", "linf", "l2", "None", "faces9000"]
OPTION_NAMES = ["num_steps", "difficulty", "quality", "eps", "rand_init", "fast", "nope"]


def _item(keys_: list[str], value_strategy) -> st.SearchStrategy[str]:
    return st.builds(lambda k, v: f"{k}={v}", st.sampled_from(keys_), value_strategy)


plausible_items = st.one_of(
    _item(INT_KEYS, st.one_of(st.integers(-3, 70), st.integers(2**31, 2**33)).map(str)),
    _item(FLOAT_KEYS, st.one_of(st.floats(-0.1, 1.5).map(repr),
                                st.lists(st.floats(0, 1), max_size=3).map(repr))),
    _item(NAME_KEYS, st.sampled_from(NAMES)),
    _item(OPTION_KEYS, st.dictionaries(
        st.sampled_from(OPTION_NAMES), st.one_of(st.integers(-1, 20), st.floats(0, 1),
                                                 st.booleans()), max_size=2).map(repr)))
set_items = st.one_of(plausible_items, st.builds(lambda k, v: f"{k}={v}", keys, values),
                      st.text())


def _assert_valid(config: MatrixConfig) -> list[Cell]:
    """The cells of an accepted config: every field of the kind its spec declares."""
    cells = expand(config)
    for cell in cells:
        assert isinstance(cell.n_eval, int) and cell.n_eval >= 1
        assert isinstance(cell.attack.eps, float) and math.isfinite(cell.attack.eps)
        assert isinstance(cell.dataset.image_size, int) and 8 <= cell.dataset.image_size
        assert isinstance(cell.training.learning_rate, float)
        assert math.isfinite(cell.training.learning_rate)
        hash(cell.dataset), hash(cell.training), hash(cell.attack)  # options hashable
    return cells


@FUZZ
@given(item=set_items)
def test_set_item_is_validated_or_rejected_naming_it(item):
    """Any `--set` text: a ConfigError whose message names the item (as messages show
    it), or a config whose every cell validates."""
    try:
        config = override(SMOKE, [item])
    except ConfigError as e:
        event("rejected")
        assert shown(item) in str(e), (item, str(e))
        return
    event("accepted")
    _assert_valid(config)


@FUZZ
@given(items=st.lists(st.one_of(_item(list(AXES), st.one_of(
    st.sampled_from(["fgsm", "pgd", "noise", "fgsm,pgd", "synthetic_faces", "cnn7_tiny",
                     "standard", "none", ",", ""]), st.text(max_size=30))),
    st.text(max_size=30)), max_size=3))
def test_only_items_filter_or_are_rejected_naming_them(items):
    """Any `--only` texts: a malformed one is a ConfigError naming it; a name the config
    lacks on its axis is a ConfigError naming it; otherwise the cells are those whose every
    axis value the items allow."""
    try:
        only = parse_only(items)
    except ConfigError as e:
        event("malformed")
        assert any(shown(item) in str(e) for item in items), (items, str(e))
        return
    all_cells = expand(SMOKE)
    missing = {axis: [n for n in names if n not in {_axis_value(c, axis) for c in all_cells}]
               for axis, names in only.items()}
    if any(missing.values()):
        event("a name the config lacks")
        with pytest.raises(ConfigError) as error:
            expand(SMOKE, only)
        axis = next(a for a, names in missing.items() if names)
        assert shown(f"{axis}={','.join(missing[axis])}") in str(error.value)
        return
    event("filtered")
    cells = expand(SMOKE, only)
    assert cells == [c for c in all_cells
                     if all(_axis_value(c, axis) in names for axis, names in only.items())]


def _axis_value(cell: Cell, axis: str) -> str:
    return {"dataset": cell.dataset.name, "model": cell.model.name,
            "training": cell.training.recipe, "defence": cell.defence.name,
            "attack": cell.attack.name}[axis]


# Config-file values: (field path, any Python value) put straight into the dataclasses.
python_values = st.one_of(
    st.integers(-3, 100), st.floats(0, 1), st.lists(st.floats(0, 1), max_size=3).map(tuple),
    literals, st.floats(allow_nan=True, allow_infinity=True), st.just(object()),
    st.sets(st.integers(), max_size=2), st.binary(max_size=4), st.complex_numbers())
FIELDS = ["n_eval", "eval_batch_size", "seed", "eps_values", "name", "dataset.image_size",
          "dataset.num_examples", "dataset.seed", "dataset.name", "dataset.options",
          "model.num_logits", "model.options", "training.epochs", "training.learning_rate",
          "training.seed", "training.options", "attack.options", "attack.eps_values",
          "attack.norm", "defence.options"]
AXIS_FIELD = {"dataset": "datasets", "model": "models", "training": "trainings",
              "defence": "defences", "attack": "attacks"}


def _with_value(config: MatrixConfig, path: str, value) -> MatrixConfig:
    if "." not in path:
        return dataclasses.replace(config, **{path: value})
    axis, field = path.split(".")
    spec = getattr(config, AXIS_FIELD[axis])[0]
    if field == "options":  # what a config file hands the spec; it freezes dicts and lists
        value = {"num_steps": value} if axis == "attack" else {"opt": value}
    return dataclasses.replace(config, **{AXIS_FIELD[axis]: (
        dataclasses.replace(spec, **{field: value}),)})


@FUZZ
@given(path=st.sampled_from(FIELDS), value=python_values)
def test_config_file_values_are_validated_or_listed(path, value):
    """A config file's value of any type in any field: ConfigError naming that field (or
    the option it sets), or a config whose every cell validates."""
    config = _with_value(SMOKE, path, value)
    try:
        _assert_valid(config)
        event("accepted")
    except ConfigError as e:
        event("rejected")
        axis, _, field = path.rpartition(".")
        named = {"options": "num_steps" if axis == "attack" else "'opt'", "eps_values": "eps",
                 "name": axis or "name"}.get(field, field)
        assert named in str(e), (path, value, str(e))


def test_each_kind_of_bad_set_is_named():
    """Examples of each rule, with the message a user sees."""
    cases = {
        "n_eval=abc": "n_eval must be an integer in [-2**63, 2**63), got 'abc'",
        "seed=1e999": "seed must be an integer in [-2**63, 2**63), got inf",
        "eps_values=1e999": "eps_values must be a tuple of finite numbers, got inf",
        "dataset.options=[1, 2]": "options must be a dict",
        "datasets=()": "cannot change 'datasets'",
        "n_eval=" + "9" * 5000: "n_eval must be an integer",
        "dataset.seed=-1": "seed -1 not in [0, 2**32)",
        "training.seed=4294967296": "seed 4294967296 not in [0, 2**32)",
        "dataset.options={'difficulty': {'a': 1}}": "options must be a dict",
        "training.options={'init_from': '/nonexistent/w.npz'}": "/nonexistent/w.npz: no such",
    }
    for item, message in cases.items():
        with pytest.raises(ConfigError) as error:
            override(SMOKE, [item])
        assert message in str(error.value) and shown(item) in str(error.value), item
    config = override(SMOKE, ["training.learning_rate=1", "eps_values=0.25",
                              "attack.eps_values=None", "defence.name=none"])
    assert config.trainings[0].learning_rate == 1.0 and config.eps_values == (0.25,)
    assert len(_assert_valid(config)) == len(SMOKE.attacks)


def test_only_names_must_be_in_the_config():
    with pytest.raises(ConfigError, match="--only attack=pgdd: config 'smoke' has no such "
                                          "attack; its attacks: fgsm, noise, pgd"):
        expand(SMOKE, parse_only(["attack=pgdd"]))
    with pytest.raises(ConfigError, match="names no attack"):
        parse_only(["attack=,"])
    with pytest.raises(ConfigError, match="AXIS=V1,V2"):
        parse_only(["attack"])


class DataLoaded(BaseException):
    """Raised by the patched loader: the run got past validation (not an Exception, so the
    runner's per-cell handler does not swallow it)."""


@pytest.fixture()
def cli_without_data(monkeypatch):
    from dfjax.runner import stages as local

    def load_dataset(*args, **kwargs):
        raise DataLoaded

    monkeypatch.setattr(local, "load_dataset", load_dataset)
    monkeypatch.setenv("DFJAX_CPU_DEVICES", "2")


@FUZZ_CLI
@given(set_item=set_items, only_item=st.one_of(
    st.just(None), st.sampled_from(["attack=fgsm", "attack=noise,pgd", "model=x"]),
    st.text(max_size=20)))
def test_cli_run_exits_2_naming_the_item_or_reaches_the_data(set_item, only_item,
                                                             cli_without_data, capsys):
    """`dfjax run --set ... [--only ...]`: exit 2 with one `error:` message and nothing
    loaded, or a validated run that reaches data loading. No other outcome."""
    from dfjax.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        argv = ["run", "--config", "smoke", "--no-progress", "--store",
                str(Path(tmp) / "s.sqlite"), f"--set={set_item}"]
        if only_item is not None:
            argv.append(f"--only={only_item}")
        try:
            code = main(argv)
        except DataLoaded:
            event("reached the data")
            return
        event("exit 2")
        err = capsys.readouterr().err
        assert code == 2, (argv, err)
        assert err.startswith("error: ") and "Traceback" not in err
        assert not (Path(tmp) / "s.sqlite").exists()  # nothing ran
