"""A bad config fails before anything runs, with a message listing the valid names."""

import dataclasses
import re

import pytest

from dfjax.config import AttackSweep, DatasetSpec, DefenceSpec, ModelSpec, TrainSpec
from dfjax.configs import get_config
from dfjax.runner import ConfigError, apply_overrides, expand


@pytest.fixture()
def smoke():
    return get_config("smoke")


@pytest.mark.parametrize("field,value,message", [
    ("datasets", (DatasetSpec(name="faces140"),), "known datasets: .*synthetic_faces"),
    ("models", (ModelSpec(name="resnet9000"),), "known models: .*cnn7"),
    ("attacks", (AttackSweep(name="pgdd"),), "known attacks: .*fgsm.*pgd"),
    ("attacks", (AttackSweep(name="pgd", options={"num_steps": 0}),), "num_steps"),
    ("attacks", (AttackSweep(name="pgd", norm="l3"),), "supports norms"),
    ("eps_values", (-0.1,), "eps must be >= 0"),
    ("eps_values", (3.0,), "linf eps is in \\[0, 1\\]"),
    ("attacks", (), "non-empty tuple"),
    ("n_eval", 0, "n_eval"),
    ("trainings", (TrainSpec(recipe="pgd_at", options={"epss": 0.1}),), "no option.*epss"),
    ("trainings", (TrainSpec(recipe="pgd_at", options={"eps_warmup": 2.0}),), "eps_warmup"),
])
def test_bad_config_rejected_before_running(smoke, field, value, message, monkeypatch):
    import dfjax.runner.local as local
    import dfjax.runner.stages as stages

    monkeypatch.setattr(stages, "load_dataset", lambda *a, **k: pytest.fail("data was loaded"))
    bad = dataclasses.replace(smoke, **{field: value})
    with pytest.raises(ConfigError, match=message):
        expand(bad)
    with pytest.raises(ConfigError):
        local.run_matrix(bad, store=None)


def test_overrides(smoke):
    cfg = apply_overrides(smoke, ["n_eval=16", "dataset.num_examples=100", "eps_values=0.1"])
    assert cfg.n_eval == 16 and cfg.datasets[0].num_examples == 100 and cfg.eps_values == (0.1,)
    with pytest.raises(ConfigError, match="unknown config field 'n_evl'"):
        apply_overrides(smoke, ["n_evl=3"])
    with pytest.raises(ConfigError, match="has no field"):
        apply_overrides(smoke, ["dataset.size=3"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides(smoke, ["n_eval"])


def test_only_filters_and_rejects_unknown_axis(smoke):
    cells = expand(smoke, {"attack": ["pgd"]})
    assert {c.attack.name for c in cells} == {"pgd"} and len(cells) == len(smoke.eps_values)
    with pytest.raises(ConfigError, match="unknown axis"):
        expand(smoke, {"atack": ["pgd"]})


def test_unknown_config_name():
    with pytest.raises(ValueError, match="known configs: .*default.*smoke"):
        get_config("defualt")


# A misspelt option on each of the five axes: (--set override, the valid option it names).
MISSPELT = [
    ("dataset", "dataset.options={'dificulty': 0.2}", "dataset 'synthetic_faces'.*'dificulty'.*"
                                                      "difficulty=0.15"),
    ("model", "model.options={'fst': False}", "model 'cnn7_tiny'.*'fst'.*fast=True"),
    ("training", "training.options={'clip_nrm': 1.0}", "training 'standard'.*'clip_nrm'.*"
                                                       "warm_start_epochs"),
    ("defence", "defence.options={'qualty': 50}", "defence 'none'.*'qualty'"),
    ("attack", "attack.options={'num_stps': 3}", "attack 'fgsm'.*'num_stps'.*loss='ce'"),
]


@pytest.fixture()
def no_data(monkeypatch):
    """Fails the test if any dataset is loaded."""
    import dfjax.runner.stages as stages

    monkeypatch.setattr(stages, "load_dataset", lambda *a, **k: pytest.fail("data was loaded"))


@pytest.mark.parametrize("axis,override,message", MISSPELT, ids=[m[0] for m in MISSPELT])
def test_misspelt_option_rejected_by_set_before_data_loads(axis, override, message, no_data,
                                                            tmp_path, capsys):
    from dfjax.cli import main

    code = main(["run", "--config", "smoke", "--set", override, "--store",
                 str(tmp_path / "s.sqlite"), "--no-progress"])
    assert code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "s.sqlite").exists()


@pytest.mark.parametrize("axis,override,message", MISSPELT, ids=[m[0] for m in MISSPELT])
def test_misspelt_option_rejected_from_config_file_before_data_loads(axis, override, message,
                                                                      no_data, tmp_path):
    from dfjax.runner.local import run_matrix

    field, value = override.split("=", 1)
    path = tmp_path / "my_config.py"
    path.write_text(
        "import dataclasses\n"
        "from dfjax.configs import get_config as named\n"
        "from dfjax.runner import apply_overrides\n\n"
        "def get_config():\n"
        f"    return apply_overrides(named('smoke'), [{override!r}])\n")
    config = get_config(str(path))
    with pytest.raises(ConfigError, match=message):
        expand(config)
    with pytest.raises(ConfigError, match=message):
        run_matrix(config, store=None)


def test_config_file_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        get_config(str(tmp_path / "nope.py"))
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="empty.py defines no get_config"):
        get_config(str(tmp_path / "empty.py"))


@pytest.mark.parametrize("name", ["default", "smoke", "videos", "zoo", "paper", "defences"])
def test_every_named_config_validates(name):
    """Every shipped matrix resolves on every axis (a stale option fails here, not hours
    into a run)."""
    assert expand(get_config(name))


def test_defences_config_covers_every_defence():
    from dfjax.defences import DEFENCES

    assert {d.name for d in get_config("defences").defences} == set(DEFENCES.names())


def test_extra_matrices_add_their_cells_once_grouped_by_detector():
    """default's extra (cnn7 behind defences, PGD and auto at 8/255): its cells join the
    main matrix's, a cell in both runs once, and each detector's cells stay adjacent (the
    runner loads a detector once)."""
    config = get_config("default")
    main_only = dataclasses.replace(config, extra=())
    cells, main_cells = expand(config), expand(main_only)
    extra_cells = [c for sub in config.extra for c in expand(sub)]
    ids = [c.cell_id for c in cells]
    assert len(ids) == len(set(ids))
    assert set(ids) == {c.cell_id for c in main_cells} | {c.cell_id for c in extra_cells}
    twice = dataclasses.replace(config, extra=config.extra + config.extra)
    assert [c.cell_id for c in expand(twice)] == ids  # a cell in both runs once
    detectors = [c.detector_id for c in cells]
    runs = [d for i, d in enumerate(detectors) if i == 0 or d != detectors[i - 1]]
    assert len(runs) == len(set(detectors))
    assert {c.defence.name for c in cells} == {"none", "jpeg", "bit_depth", "smoothing"}
    assert {c.attack.name for c in cells if c.defence.name == "jpeg"} == {"pgd", "auto"}
    assert {c.attack.name for c in cells if c.defence.name == "smoothing"} == {"pgd"}


def test_overrides_reach_the_extra_matrices_and_a_bad_extra_is_named():
    config = apply_overrides(get_config("default"), ["n_eval=16", "dataset.num_examples=300"])
    assert all(c.n_eval == 16 and c.dataset.num_examples == 300 for c in expand(config))
    with pytest.raises(ConfigError, match="cannot change 'extra'"):
        apply_overrides(config, ["extra=()"])
    bad_extra = dataclasses.replace(config.extra[0], defences=(DefenceSpec(name="jpg"),))
    with pytest.raises(ConfigError, match="extra matrix 'default_defences'.*known defences"):
        expand(dataclasses.replace(config, extra=(bad_extra,)))
