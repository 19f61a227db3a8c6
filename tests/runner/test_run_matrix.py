"""End to end on the smoke matrix: every cell stored, resume after a kill, failures stored."""

import dataclasses

import pytest

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


def test_killed_run_resumes_without_losing_or_duplicating(tmp_path, dirs, monkeypatch):
    import dfjax.runner.local as local

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
    import dfjax.runner.local as local

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
