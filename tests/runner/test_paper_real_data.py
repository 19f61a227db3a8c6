"""The `paper` config's real-data path end to end, on tiny fixtures in the real download
layouts (tests/data/conftest.py): Kaggle 140k folders + CSVs, DFDC part folders with
metadata.json, COVID class folders; each put where `dfjax run` looks for it. The paper's
generated sets other than synthetic_faces (gan_fakes, self_blended: tests/data) are left
out with --only, so no GAN is trained here."""

import dataclasses
import shutil

from dfjax.cli import main
from dfjax.configs import get_config
from dfjax.reporting.report import write_report
from dfjax.runner import expand, run_matrix
from dfjax.runner.expand import override
from dfjax.store import Store
from tests.data.conftest import covid_tree, dfdc_tree, kaggle_140k  # noqa: F401 (fixtures)

TINY = ["dataset.image_size=32", "training.epochs=1", "training.batch_size=4", "n_eval=4",
        "eval_batch_size=4", "eps_values=0.03"]
DATASETS = ["synthetic_faces", "real_vs_fake_140k", "dfdc", "covid19_xray"]
ONLY = {"model": ["cnn7"], "attack": ["fgsm"], "dataset": DATASETS}


def _tiny_paper():
    """paper, shrunk: 32 px, 1 epoch, one budget; all of each fixture (64 synthetic faces);
    dfdc samples 5 frames per video (its clips have 10)."""
    config = override(get_config("paper"), TINY)
    datasets = tuple(
        dataclasses.replace(d, num_examples=64) if d.name == "synthetic_faces" else
        dataclasses.replace(d, options={"frames_per_video": 5}) if d.name == "dfdc" else d
        for d in config.datasets)
    assert config.extra == ()  # no weights given: every model is in the main matrix
    return dataclasses.replace(config, datasets=datasets)


def test_paper_runs_every_cell_with_the_real_data_prepared(tmp_path, kaggle_140k, dfdc_tree,
                                                           covid_tree):
    """With the three downloads in <data_dir>/manual/<name>, every cell of the shrunk paper
    matrix (its four datasets, two budgets) runs and is stored ok; nothing is reported
    missing; the report has the paper's Table I for the COVID-19 X-rays (a table1.md
    section and a table1 figure of their own), as for every dataset."""
    data_dir = tmp_path / "data"
    for name, tree in (("real_vs_fake_140k", kaggle_140k), ("dfdc", dfdc_tree),
                       ("covid19_xray", covid_tree)):
        shutil.copytree(tree, data_dir / "manual" / name)
    config = dataclasses.replace(_tiny_paper(), eps_values=(0.0, 0.03))
    cells = expand(config, ONLY)
    logged = []
    with Store(tmp_path / "s.sqlite") as store:
        summary = run_matrix(config, store, only=ONLY, data_dir=data_dir,
                             checkpoint_dir=tmp_path / "ckpt", progress=False,
                             log=logged.append)
        rows = store.rows()
        written = write_report(store, tmp_path / "report")
    assert summary.failures == [] and summary.unavailable == []
    assert summary.done == len(cells) == len(rows) == 2 * len(DATASETS)
    assert {r["status"] for r in rows} == {"ok"}
    assert {c.dataset.name for c in cells} == set(DATASETS)
    table1 = (tmp_path / "report" / "table1.md").read_text()
    names = {p.name for p in written}
    for label in {c.dataset.label() for c in cells}:  # dfdc[frames_per_video=5], ...
        assert f"## {label} x cnn7 (training: standard" in table1
    assert "table1_covid19_xray_cnn7_standard_none.png" in names
    assert len([n for n in names if n.startswith("table1_")]) == len(DATASETS)


def test_paper_without_real_data_reports_each_once_and_runs_the_rest(tmp_path, capsys):
    """`dfjax run --config paper` (shrunk, cnn7, fgsm, the four datasets above) with no
    download anywhere: each real dataset's message is printed once, synthetic_faces' cells
    run, a 'not run' line per real dataset ends the output, and the exit status is 0."""
    argv = ["run", "--config", "paper", "--store", str(tmp_path / "s.sqlite"), "--no-progress",
            "--data-dir", str(tmp_path / "d"), "--checkpoint-dir", str(tmp_path / "c"),
            "--set", "dataset.num_examples=64", "--only", "model=cnn7", "--only", "attack=fgsm",
            "--only", "dataset=" + ",".join(DATASETS)]
    for item in TINY:
        argv += ["--set", item]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for name in ("real_vs_fake_140k", "dfdc", "covid19_xray"):
        assert out.count(f"{name}: the manual download folder does not exist") == 1
        assert f"not run: 1 cells of {name}: data not prepared" in out
    assert "paper: 4 cells: 1 run, 0 already stored, 0 failed" in out
