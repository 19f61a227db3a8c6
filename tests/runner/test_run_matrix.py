"""End to end on the smoke matrix: every cell stored, resume after a kill, failures stored."""

import dataclasses
import json

import pytest

from dfjax.config import DATA_VERSIONS
from dfjax.configs import get_config
from dfjax.runner import expand, run_matrix
from dfjax.store import Store


@pytest.fixture()
def dirs(tmp_path_factory):
    base = tmp_path_factory.getbasetemp() / "shared_cache"  # data + weights shared by tests
    return {"data_dir": base / "data", "checkpoint_dir": base / "ckpt"}


def _metrics(store):
    return {r["cell_id"]: (r["status"], r.get("robust_accuracy"), r.get("clean_accuracy"))
            for r in store.rows()}


def test_smoke_matrix_stores_every_cell(tmp_path, dirs):
    config = get_config("smoke")
    with Store(tmp_path / "s.sqlite") as store:
        summary = run_matrix(config, store, progress=False, **dirs)
        assert summary.failed == 0 and summary.done == len(expand(config))
        rows = store.rows()
        assert len(rows) == len(expand(config))
        for r in rows:
            assert r["status"] == "ok"
            assert r["linf_max"] <= r["eps"] + 1e-6
            if r["eps"] == 0:
                assert r["robust_accuracy"] == r["clean_accuracy"]
        assert store.detectors() and len(store.detectors()[0]["history"]) == 2
        # a second run skips everything
        again = run_matrix(config, store, progress=False, **dirs)
        assert again.skipped == len(rows) and again.done == 0


def test_rows_carry_provenance_and_per_example_data(tmp_path, dirs):
    """Each stored cell names its dataset version and whether its detector was trained in
    this run or loaded from the cache (and when it was trained); it keeps one per-example
    record per evaluated example, indexed into the test split, and a gallery for eps > 0."""
    config = get_config("smoke")
    cells = expand(config, {"attack": ["pgd"]})
    sources = []
    for name in ("first", "second"):  # the second run finds the detector in the cache
        with Store(tmp_path / f"{name}.sqlite") as store:
            run_matrix(config, store, only={"attack": ["pgd"]}, progress=False, **dirs)
            rows = store.rows()
            assert len(rows) == len(cells)
            for row in rows:
                env = json.loads(row["env_json"])
                assert env["dataset_version"] == DATA_VERSIONS["synthetic_faces"]
                assert env["detector_trained_at"].endswith("+00:00")
                sources.append(env["detector_source"])
                examples = store.examples(row["cell_id"])
                assert len(examples["index"]) == row["n_examples"]
                assert len(set(examples["index"].tolist())) == row["n_examples"]
                correct = (examples["p_fake_adv"] > 0.5) == (examples["label"] == 1)
                assert correct.mean() == pytest.approx(row["robust_accuracy"])
                assert len(store.gallery(row["cell_id"])) == (4 if row["eps"] > 0 else 0)
    # the shared cache may already hold the detector from another test: then both "cache"
    assert sources[-1] == "cache" and set(sources) <= {"trained", "cache"}


def test_killed_run_resumes_without_losing_or_duplicating(tmp_path, dirs, monkeypatch):
    import dfjax.runner.stages as local

    config = get_config("smoke")
    with Store(tmp_path / "full.sqlite") as store:
        run_matrix(config, store, progress=False, **dirs)
        reference = _metrics(store)

    real_run_cell = local.run_cell
    calls = {"n": 0}

    def dying_run_cell(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the process is killed mid-run
        return real_run_cell(*args, **kwargs)

    monkeypatch.setattr(local, "run_cell", dying_run_cell)
    path = tmp_path / "killed.sqlite"
    with Store(path) as store, pytest.raises(KeyboardInterrupt):
        run_matrix(config, store, progress=False, **dirs)
    with Store(path) as store:
        assert store.count() == {"ok": 2}
    monkeypatch.setattr(local, "run_cell", real_run_cell)
    with Store(path) as store:
        summary = run_matrix(config, store, progress=False, **dirs)
        assert summary.skipped == 2 and summary.done == len(reference) - 2
        assert _metrics(store) == reference  # same numbers, no duplicates, nothing lost


def test_failing_cell_is_stored_as_failed_and_run_goes_on(tmp_path, dirs, monkeypatch):
    import dfjax.runner.stages as local

    config = dataclasses.replace(get_config("smoke"), name="smoke")
    real_run_cell = local.run_cell

    def flaky(cell, *args, **kwargs):
        if cell.attack.name == "fgsm":
            raise RuntimeError("fgsm exploded")
        return real_run_cell(cell, *args, **kwargs)

    monkeypatch.setattr(local, "run_cell", flaky)
    with Store(tmp_path / "s.sqlite") as store:
        summary = run_matrix(config, store, progress=False, **dirs)
        failed = [r for r in store.rows() if r["status"] == "failed"]
        assert summary.failed == len(failed) == len(config.eps_values)
        assert all("fgsm exploded" in r["error"] for r in failed)
        assert summary.done == len(expand(config)) - len(failed)
