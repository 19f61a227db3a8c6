"""One bad detector costs its own cells, never the run, never a wrong number: a detector
whose logits turn NaN mid-attack and a training that diverges are stored as failed with
the reason and the step, while the other detector's cells complete with the numbers they
have when run alone."""

import dataclasses
import json
import re

import flax.linen as nn
import jax.numpy as jnp
import pytest

from dfjax.config import AttackSweep, DatasetSpec, MatrixConfig, ModelSpec, TrainSpec
from dfjax.models import MODELS, ModelEntry
from dfjax.models.cnn7 import CNN7
from dfjax.runner import run_matrix
from dfjax.store import Store

NAN_MODEL = "cnn7_tiny_nan_off_grid"  # registered by the test only (monkeypatch)


class OffGridNaN(nn.Module):
    """cnn7_tiny whose logits are NaN on any image with a pixel off the 1/255 grid: finite
    on the data (uint8 / 255, so it trains normally), NaN once an attack moves a pixel
    by a step that is not a whole number of 1/255 units."""

    num_logits: int = 2

    @nn.compact
    def __call__(self, x, train: bool = False):
        logits = CNN7(num_logits=self.num_logits, conv_features=(4, 8, 8),
                      dense_features=(16, 16, 8))(x, train=train)
        off_grid = jnp.max(jnp.abs(x * 255 - jnp.round(x * 255)), axis=(1, 2, 3)) > 1e-2
        return jnp.where(off_grid[:, None], jnp.nan, logits)


GOOD = TrainSpec(recipe="standard", epochs=1, batch_size=32)
DIVERGING = dataclasses.replace(GOOD, learning_rate=1e8)  # Adam at 1e8: NaN after step 0
# PGD without a random start: step 0 attacks the clean (on-grid) image, and step 1 adds
# 2.5 * eps / 3 = 6.67 / 255 per pixel -- off the grid, where the NaN model turns NaN.
PGD = AttackSweep(name="pgd", options={"num_steps": 3, "rand_init": False})


def _config(models, trainings):
    return MatrixConfig(
        name="nan_containment",
        datasets=(DatasetSpec(name="synthetic_faces", image_size=32, num_examples=400),),
        models=tuple(ModelSpec(name=m) for m in models), trainings=trainings,
        attacks=(PGD,), eps_values=(0.0, 8 / 255), n_eval=32, eval_batch_size=32, seed=0)


@pytest.fixture()
def nan_model(monkeypatch):
    monkeypatch.setitem(MODELS._entries, NAN_MODEL, ModelEntry(
        module=OffGridNaN, options={}, description="test: NaN logits off the pixel grid"))


def _case(row):
    """(model, learning rate, delta) of a stored row."""
    spec = json.loads(row["spec_json"])
    return row["model"], spec["training"]["learning_rate"], round(row["eps"] * 255)


@pytest.mark.slow  # trains four detectors (one epoch each) and runs two small matrices
def test_nan_detector_and_diverged_training_fail_alone(tmp_path, nan_model):
    dirs = {"data_dir": tmp_path / "data", "checkpoint_dir": tmp_path / "ckpt"}
    config = _config(("cnn7_tiny", NAN_MODEL), (GOOD, DIVERGING))
    with Store(tmp_path / "s.sqlite") as store:
        summary = run_matrix(config, store, progress=False, **dirs)
        rows = store.rows()
    assert summary.total == len(rows) == 8  # 2 models x 2 trainings x 2 budgets
    ok = {_case(r): r for r in rows if r["status"] == "ok"}
    failed = {_case(r): r["error"] for r in rows if r["status"] == "failed"}
    good_lr, bad_lr = GOOD.learning_rate, DIVERGING.learning_rate
    assert set(ok) == {("cnn7_tiny", good_lr, 0), ("cnn7_tiny", good_lr, 8)}
    assert summary.done == 2 and summary.failed == 6
    # eps = 8/255: the cell's own PGD leaves the grid at its step 1
    nan_error = failed[(NAN_MODEL, good_lr, 8)]
    assert "NonFiniteError" in nan_error and "attack pgd[num_steps=3,rand_init=False]" in nan_error
    assert "went NaN/Inf at attack step 1" in nan_error
    # eps = 0: the cell's attack stays on the grid, but every cell's unbounded-PGD sanity
    # check (dfjax.attacks.sanity, random start) leaves it at step 0
    zero_error = failed[(NAN_MODEL, good_lr, 0)]
    assert "NonFiniteError" in zero_error and "attack pgd[num_steps=10]" in zero_error
    assert "went NaN/Inf at attack step 0" in zero_error
    diverged = [e for (_, lr, _), e in failed.items() if lr == bad_lr]
    assert len(diverged) == 4  # both models' cells under the diverging training
    for error in diverged:
        assert "NonFiniteError" in error and "diverged" in error
        assert re.search(r"at epoch 1, step [1-9]\b", error), error

    # the healthy cells have exactly the numbers they have in a matrix without the bad ones
    with Store(tmp_path / "alone.sqlite") as store:
        run_matrix(_config(("cnn7_tiny",), (GOOD,)), store, progress=False, **dirs)
        alone = {_case(r): r for r in store.rows()}
    assert set(alone) == {("cnn7_tiny", good_lr, 0), ("cnn7_tiny", good_lr, 8)}
    for case, reference in alone.items():
        for metric in ("clean_accuracy", "robust_accuracy", "adv_log_loss"):
            assert ok[case][metric] == reference[metric], (case, metric)
