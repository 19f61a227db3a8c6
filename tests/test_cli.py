import argparse
import re

import pytest

from dfjax.cli import build_parser, main, registry_lines
from dfjax.registry import Entry, Registry

PROGRESS_BAR = re.compile(r"%\||Generating splits|Shuffling|examples/s|it/s|cell/s")


@pytest.fixture(autouse=True)
def _two_cpu_devices(monkeypatch):
    """`dfjax run` asks for $DFJAX_CPU_DEVICES devices: the 2 tests/conftest.py started."""
    monkeypatch.setenv("DFJAX_CPU_DEVICES", "2")


def test_list_registries_prints_every_entry_with_its_options(capsys):
    assert main(["list"]) == 0
    from dfjax.attacks import ATTACKS
    from dfjax.data import DATASETS

    lines = capsys.readouterr().out.splitlines()
    for title, registry in (("attacks", ATTACKS), ("datasets", DATASETS)):
        start = lines.index(f"{title}:")
        listed = [line.split()[0] for line in lines[start + 1:start + 1 + len(registry)]]
        assert listed == list(registry.names())
    pgd = next(line for line in lines if line.startswith("  pgd "))
    assert "num_steps=10 loss='ce' rand_init=True" in pgd
    for option, default in ATTACKS.get("pgd").options.items():
        assert f"{option}={default!r}" in pgd
    assert any(line.startswith("configs: ") and "smoke" in line for line in lines)


def test_registry_lines_show_options_prefixes_and_descriptions():
    widgets = Registry("widget")
    widgets.register("spanner", Entry(options={"size": 3, "mode": "fast", "metric": True},
                                      option_prefixes=("source.",), description="turns nuts"))
    widgets.register("hammer", Entry())
    assert registry_lines("widgets", widgets) == [
        "widgets:",
        "  hammer   (no options)",
        "  spanner  size=3 mode='fast' metric=True source.*  -- turns nuts",
    ]
    assert registry_lines("empty", Registry("nothing")) == ["empty:"]


def test_list_cells(capsys):
    """One line per cell (its id first), then the count and the time estimate."""
    assert main(["list", "cells", "--config", "smoke"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len([line for line in lines if line.split()[0].isalnum()
                and len(line.split()[0]) == 20]) == 6
    assert "6 cells" in lines and lines[lines.index("6 cells") + 1].startswith("estimated time")


def test_list_cells_with_a_store_counts_what_is_to_run(tmp_path, capsys):
    from dfjax.configs import get_config
    from dfjax.runner import expand
    from dfjax.store import Store

    cells = expand(get_config("smoke"))
    with Store(tmp_path / "s.sqlite") as store:
        store.put(cells[0], status="ok", env={})  # stamped with the current fingerprint
        store.put(cells[1], status="ok", env={"fingerprint": "0" * 16})  # other code
    assert main(["list", "cells", "--config", "smoke", "--quiet",
                 "--store", str(tmp_path / "s.sqlite")]) == 0
    assert f"6 cells, 1 stored by the current code in {tmp_path / 's.sqlite'}, 5 to run" in \
        capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["run", "--config", "nope"], "known configs"),
    (["run", "--config", "smoke", "--set", "n_evl=3"], "unknown config field"),
    (["run", "--config", "smoke", "--set", "eps_values=-0.5"], "eps must be >= 0"),
    (["run", "--config", "smoke", "--only", "axis=x"], "unknown axis"),
    (["run", "--config", "smoke", "--address", "localhost:6379"],
     "--address and --workers need --executor ray"),
    (["report", "--store", "/nonexistent/x.sqlite"], "no results store"),
    (["data", "prepare", "faces9000"], "known datasets"),
])
def test_bad_input_exits_2_with_message(argv, message, capsys, tmp_path):
    if argv[0] == "run":
        argv = argv + ["--store", str(tmp_path / "s.sqlite")]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s.sqlite").exists()  # nothing ran


@pytest.mark.parametrize("setting,message", [
    ("3", "asked for 3 JAX CPU devices, but JAX has already started with 2"),
    ("two", "DFJAX_CPU_DEVICES must be a whole number"),
])
def test_run_refuses_a_cpu_device_count_jax_cannot_have(setting, message, monkeypatch, capsys,
                                                        tmp_path):
    monkeypatch.setenv("DFJAX_CPU_DEVICES", setting)
    assert main(["run", "--config", "smoke", "--store", str(tmp_path / "s.sqlite")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s.sqlite").exists()


def test_run_then_report(tmp_path, capfd):
    store = tmp_path / "s.sqlite"
    code = main(["run", "--config", "smoke", "--store", str(store), "--no-progress",
                 "--data-dir", str(tmp_path / "d"), "--checkpoint-dir", str(tmp_path / "c"),
                 "--only", "attack=fgsm"])
    assert code == 0
    out, err = capfd.readouterr()
    assert "time: data" in out
    assert (tmp_path / "d" / "synthetic_faces").is_dir()  # TFDS prepared it in this run...
    assert not PROGRESS_BAR.search(err), err  # ...and neither it nor the runner drew a bar
    assert main(["report", "--store", str(store), "--out", str(tmp_path / "out")]) == 0
    table = (tmp_path / "out" / "robust_accuracy.md").read_text()
    assert "| fgsm | " in table and "synthetic_faces x cnn7_tiny" in table
    assert (tmp_path / "out" / "table1.md").exists()
    assert (tmp_path / "out" / "results.csv").read_text().count("\n") == 3  # header + 2 cells


def test_data_prepare_no_progress_silences_the_tfds_bars(tmp_path, capfd):
    argv = ["data", "prepare", "synthetic_faces", "--image-size", "32", "--num-examples", "40"]
    assert main(argv + ["--data-dir", str(tmp_path / "a")]) == 0
    assert "Generating splits" in capfd.readouterr().err  # the bars TFDS draws by default
    assert main(argv + ["--data-dir", str(tmp_path / "b"), "--no-progress"]) == 0
    out, err = capfd.readouterr()
    assert "train: " in out
    assert not PROGRESS_BAR.search(err), err
    assert main(argv + ["--data-dir", str(tmp_path / "c")]) == 0  # each command sets them
    assert "Generating splits" in capfd.readouterr().err


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_option_of_every_command_has_help():
    commands = _subparsers(build_parser())
    assert set(commands) == {"run", "report", "data", "bench", "list", "compare", "cache"}
    for name, command in commands.items():
        assert command.description, name
        for action in command._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help and action.help.strip(), f"dfjax {name} {action.dest}"


def test_help_shows_an_example_per_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    examples = out[out.index("examples:"):]
    for name in _subparsers(build_parser()):
        assert re.search(rf"^  dfjax {name} ", examples, re.MULTILINE), name
    assert "DFJAX_DATA_DIR" in examples and "DFJAX_CPU_DEVICES" in examples
    for name in _subparsers(build_parser()):
        with pytest.raises(SystemExit):
            main([name, "--help"])
        assert "--help" in capsys.readouterr().out


def test_report_and_run_on_a_file_that_is_not_a_store_fail_cleanly(tmp_path, capsys):
    """`dfjax report --store FILE` and `dfjax run --store FILE` on a text file: exit 2 and
    one line naming the file, no traceback; the file is left as it was."""
    from dfjax.cli import main

    bogus = tmp_path / "results.sqlite"
    bogus.write_text("not a database\n" * 100)
    for argv in (["report", "--store", str(bogus), "--out", str(tmp_path / "out")],
                 ["run", "--config", "smoke", "--store", str(bogus), "--no-progress",
                  "--only", "attack=fgsm"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: results store") and str(bogus) in err
        assert "Traceback" not in err
    assert bogus.read_text() == "not a database\n" * 100
