"""A real dataset that is not here is reported once, before any work; its cells are neither
run nor stored, and the other datasets' cells still run."""

import dataclasses

import pytest

from dfjax.cli import main
from dfjax.config import DatasetSpec
from dfjax.configs import get_config
from dfjax.runner import expand, run_matrix
from dfjax.store import Store

MISSING = "covid19_xray: the manual download folder does not exist"


@pytest.fixture()
def dirs(tmp_path_factory):
    base = tmp_path_factory.getbasetemp() / "shared_cache"  # data + weights shared by tests
    return {"data_dir": base / "data", "checkpoint_dir": base / "ckpt"}


def _smoke_with_covid():
    """smoke's synthetic_faces plus covid19_xray (whose download is nowhere), fgsm only."""
    smoke = get_config("smoke")
    covid = DatasetSpec(name="covid19_xray", image_size=32, num_examples=400)
    return dataclasses.replace(smoke, datasets=smoke.datasets + (covid,),
                               attacks=smoke.attacks[1:2])


def test_missing_dataset_reported_once_first_and_its_cells_not_stored(tmp_path, dirs):
    """One log line block names covid19_xray's missing folder, the prepare command and the
    layout, before any other log line; synthetic_faces' cells all run and are stored ok;
    covid's are counted in summary.unavailable, not failed, not stored."""
    config = _smoke_with_covid()
    cells = expand(config)
    covid_cells = [c for c in cells if c.dataset.name == "covid19_xray"]
    logged = []
    with Store(tmp_path / "s.sqlite") as store:
        summary = run_matrix(config, store, progress=False, log=logged.append, **dirs)
        rows = store.rows()
    assert sum(MISSING in line for line in logged) == 1
    assert MISSING in logged[0]
    assert "dfjax data prepare covid19_xray --manual-dir DIR" in logged[0]
    assert "Covid19-dataset/" in logged[0]  # the expected layout
    assert summary.failed == 0 and summary.done == len(cells) - len(covid_cells)
    assert [(label, n) for label, n, _ in summary.unavailable] == [("covid19_xray",
                                                                      len(covid_cells))]
    assert summary.not_run == len(covid_cells)
    assert {r["status"] for r in rows} == {"ok"}
    assert {r["cell_id"] for r in rows} == {c.cell_id for c in cells
                                            if c.dataset.name == "synthetic_faces"}


def test_cli_prints_not_run_and_exits_2_when_nothing_could_run(tmp_path, capsys):
    """`dfjax run` on a matrix whose only dataset is not here: the message once, a 'not
    run' line, exit status 2, and no row stored."""
    store = tmp_path / "s.sqlite"
    code = main(["run", "--config", "smoke", "--set", "dataset.name=covid19_xray",
                 "--store", str(store), "--no-progress", "--data-dir", str(tmp_path / "d"),
                 "--checkpoint-dir", str(tmp_path / "c")])
    out = capsys.readouterr().out
    assert code == 2
    assert out.count(MISSING) == 1
    assert "not run: 6 cells of covid19_xray: data not prepared" in out
    with Store(store) as s:
        assert s.rows() == []
