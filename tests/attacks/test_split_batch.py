"""The runner splits each attack batch across the CPU devices (dfjax.xla.compile_split);
its results must not depend on the split beyond float rounding (XLA may pick another
matmul blocking for the smaller per-device batch: here clean logits differ at ~1e-8)."""

import jax
import pytest

from dfjax.attacks.evaluate import AttackEvaluator
from dfjax.runner import run_cell


@pytest.mark.parametrize("name,eps,options", [
    ("pgd", 4 / 255, {"num_steps": 5}),
    ("auto", 4 / 255, {"preset": "v1", "num_steps": 5, "num_queries": 20}),
])
def test_runner_results_do_not_depend_on_the_batch_split(trained_cnn7, name, eps, options):
    cell = trained_cnn7.cell(name, eps, n_eval=64, **options)
    split, single = AttackEvaluator(), AttackEvaluator(devices=jax.devices("cpu")[:1])
    m_split, _, extra_split = run_cell(cell, trained_cnn7.detector, trained_cnn7.test, split, 32)
    m_single, _, extra_single = run_cell(cell, trained_cnn7.detector, trained_cnn7.test,
                                         single, 32)
    compiled = next(iter(split._compiled.values()))
    assert len(compiled.devices) == 2
    assert extra_split["nonrobust_indices"] == extra_single["nonrobust_indices"]
    for stat, trace in extra_split.get("tcp_trace", {}).items():
        assert trace == pytest.approx(extra_single["tcp_trace"][stat], rel=1e-5), stat
    assert m_split.keys() == m_single.keys()
    for key, value in m_split.items():
        assert value == pytest.approx(m_single[key], rel=1e-5, abs=1e-7), key
