"""A stored 'ok' row made by other code (another evaluation fingerprint, or none) is
stale: the run recomputes it, replaces the row, and counts it."""

import pytest

from dfjax import fingerprint
from dfjax.configs import get_config
from dfjax.runner.environment import evaluation_fingerprint
from dfjax.runner.expand import expand, override
from dfjax.runner.local import plan, run_matrix
from dfjax.store import Store
from dfjax.training.detectors import training_fingerprint

ONLY = {"attack": ["noise"]}


@pytest.fixture
def fresh_fingerprints():
    fingerprint.clear_cache()
    yield
    fingerprint.clear_cache()


def _config():
    return override(get_config("smoke"), ["n_eval=16", "training.epochs=1",
                                          "dataset.num_examples=100"])


def _change_code(monkeypatch, module):
    original = fingerprint.read_source
    monkeypatch.setattr(fingerprint, "read_source", lambda m: original(m) + "\nCHANGED = 1\n"
                        if m == module else original(m))
    fingerprint.clear_cache()


def test_plan_recomputes_rows_of_other_code_and_counts_them(tmp_path, fresh_fingerprints):
    config = _config()
    first, other, older, current = expand(config)[:4]
    logs = []
    with Store(tmp_path / "s.sqlite") as store:
        store.put(other, status="ok", env={"fingerprint": "0" * 16})
        store.put(older, status="ok", env={"fingerprint": None})  # before fingerprints
        store.put(current, status="ok", env={})  # put stamps the current fingerprint
        todo, summary = plan(config, store, data_dir=tmp_path, log=logs.append)
    ids = {c.cell_id for c in todo}
    assert {first.cell_id, other.cell_id, older.cell_id} <= ids
    assert current.cell_id not in ids
    assert summary.stale == 2 and summary.skipped == 1
    assert logs == ["2 stored cells were made by other code (their code fingerprint differs "
                    "or was not recorded): recomputed"]


def test_put_stamps_the_current_fingerprint_and_replaces_the_row(tmp_path, fresh_fingerprints):
    cell = expand(_config(), ONLY)[0]
    with Store(tmp_path / "s.sqlite") as store:
        store.put(cell, status="ok", env={"fingerprint": "0" * 16})
        assert store.result_fingerprints() == {cell.cell_id: "0" * 16}
        store.put(cell, status="ok", env={"python": "x"})
        assert store.result_fingerprints() == {cell.cell_id: evaluation_fingerprint(cell)}
        assert len(store.rows()) == 1


def test_a_changed_attack_code_recomputes_rows_but_keeps_the_detector(
        tmp_path, monkeypatch, fresh_fingerprints):
    """Changing the metric code stales every stored row of the matrix, not the detector:
    the second run recomputes each cell with the cached detector."""
    config = _config()
    dirs = {"data_dir": tmp_path / "data", "checkpoint_dir": tmp_path / "ckpt"}
    with Store(tmp_path / "s.sqlite") as store:
        first = run_matrix(config, store, only=ONLY, progress=False, log=lambda s: None, **dirs)
        assert first.done == first.total and first.stale == 0
        cell = expand(config, ONLY)[0]
        trained_by = training_fingerprint(cell)
        _change_code(monkeypatch, "dfjax.metrics.cell")
        assert training_fingerprint(cell) == trained_by
        second = run_matrix(config, store, only=ONLY, progress=False, log=lambda s: None, **dirs)
        assert second.stale == second.done == first.total and second.skipped == 0
        rows = store.rows(status="ok")
        assert {r["cell_id"] for r in rows} == {c.cell_id for c in expand(config, ONLY)}
        assert all('"detector_source": "cache"' in r["env_json"] for r in rows)
        assert set(store.result_fingerprints().values()) == {evaluation_fingerprint(cell)}
        third = run_matrix(config, store, only=ONLY, progress=False, log=lambda s: None, **dirs)
        assert third.skipped == third.total and third.stale == 0
