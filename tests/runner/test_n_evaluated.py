"""Provenance: a cell's row records the number of examples actually evaluated, not the
config's n_eval (a real folder whose test split holds 38 images was reported as n = 64)."""

import jax
import jax.numpy as jnp
import numpy as np

from dfjax.attacks.evaluate import AttackEvaluator
from dfjax.config import AttackSpec, Cell, DatasetSpec, DefenceSpec, ModelSpec, TrainSpec
from dfjax.data.base import Split
from dfjax.models import build_model
from dfjax.runner import run_cell
from dfjax.store import Store
from dfjax.training.detectors import Detector


def test_a_test_split_smaller_than_n_eval_is_stored_with_its_real_size(tmp_path):
    rng = np.random.default_rng(0)
    n = 38
    test = Split(rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8),
                 (np.arange(n) % 2).astype(np.int32), np.arange(n), np.zeros(n, np.int32))
    spec = ModelSpec(name="cnn7_tiny")
    model = build_model(spec)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    cell = Cell(dataset=DatasetSpec(name="image_folder", image_size=16), model=spec,
                training=TrainSpec(), defence=DefenceSpec(),
                attack=AttackSpec(name="noise", eps=4 / 255), n_eval=64, seed=0)
    metrics, timings, _ = run_cell(cell, Detector(model, variables, [], 0.0, False), test,
                                   AttackEvaluator(), 64)
    assert timings["n_evaluated"] == n
    with Store(tmp_path / "s.sqlite") as store:
        store.put(cell, status="ok", metrics=metrics, timings=timings)
        assert store.rows()[0]["n_examples"] == n
        store.put(cell, status="failed", error="boom", timings={"wall_time": 1.0})
        assert store.rows()[0]["n_examples"] == 64  # nothing evaluated: the config's ask
