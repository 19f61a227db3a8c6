import jax
import numpy as np

from dfjax.config import ModelSpec
from dfjax.models import build_model
from dfjax.reporting.model_table import model_stats, model_table_markdown


def test_model_table_rows_and_counts():
    table = model_table_markdown(["cnn7_tiny", "cnn6_tiny"], 16, batch=2, runs=1)
    lines = table.strip().splitlines()
    assert lines[-2].startswith("| cnn7_tiny |") and lines[-1].startswith("| cnn6_tiny |")
    model = build_model(ModelSpec(name="cnn7_tiny"))
    v = model.init(jax.random.key(0), np.zeros((1, 16, 16, 3), np.float32))
    n = sum(p.size for p in jax.tree.leaves(v["params"]))
    assert f"| {n:,} |" in lines[-2]


def test_flops_follow_the_architecture():
    small = model_stats("cnn7_tiny", 32, batch=2, runs=1)
    big = model_stats("cnn7_tiny", 64, batch=2, runs=1)  # 4x the pixels, ~4x the conv work
    assert small["flops_per_image"] > 0
    assert 2.5 < big["flops_per_image"] / small["flops_per_image"] < 4.5
    assert big["forward_ms_per_image"] > 0 and big["grad_ms_per_image"] > 0
