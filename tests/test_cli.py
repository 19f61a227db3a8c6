import pytest

from dfjax.cli import main


def test_list_registries(capsys):
    assert main(["list"]) == 0
    from dfjax.attacks import ATTACKS
    from dfjax.data import DATASETS

    out = capsys.readouterr().out
    assert f"attacks: {', '.join(ATTACKS.names())}" in out
    assert f"datasets: {', '.join(DATASETS.names())}" in out


def test_list_cells(capsys):
    assert main(["list", "cells", "--config", "smoke"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 6


@pytest.mark.parametrize("argv,message", [
    (["run", "--config", "nope"], "known configs"),
    (["run", "--config", "smoke", "--set", "n_evl=3"], "unknown config field"),
    (["run", "--config", "smoke", "--set", "eps_values=-0.5"], "eps must be >= 0"),
    (["run", "--config", "smoke", "--only", "axis=x"], "unknown axis"),
    (["report", "--store", "/nonexistent/x.sqlite"], "no results store"),
    (["data", "prepare", "faces9000"], "known datasets"),
])
def test_bad_input_exits_2_with_message(argv, message, capsys, tmp_path):
    if argv[0] == "run":
        argv = argv + ["--store", str(tmp_path / "s.sqlite")]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s.sqlite").exists()  # nothing ran


def test_run_then_report(tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    code = main(["run", "--config", "smoke", "--store", str(store), "--no-progress",
                 "--data-dir", str(tmp_path / "d"), "--checkpoint-dir", str(tmp_path / "c"),
                 "--only", "attack=fgsm"])
    assert code == 0
    assert "time: data" in capsys.readouterr().out
    assert main(["report", "--store", str(store), "--out", str(tmp_path / "out")]) == 0
    table = (tmp_path / "out" / "robust_accuracy.md").read_text()
    assert "| fgsm | " in table and "synthetic_faces x cnn7_tiny" in table
    assert (tmp_path / "out" / "table1.md").exists()
    assert (tmp_path / "out" / "results.csv").read_text().count("\n") == 3  # header + 2 cells
