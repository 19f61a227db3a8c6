"""dfjax.roofline: the bound logic, the layer split of known models, the bench's JSON."""

import collections
import importlib.util
import json
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from dfjax.models import MODELS
from dfjax.roofline import MachineLimits, bound, cost_of, split_layers
from dfjax.xla import jit as dfjax_jit

LIMITS = MachineLimits(gemm_flops_per_second=1e11, bandwidth_bytes_per_second=1e10)


def test_big_gemm_is_compute_bound_and_elementwise_add_memory_bound():
    a = jnp.ones((512, 512), jnp.float32)
    gemm_flops, gemm_bytes = cost_of(dfjax_jit(lambda a, b: a @ b).lower(a, a).compile())
    v = jnp.ones((1 << 20,), jnp.float32)
    add_flops, add_bytes = cost_of(dfjax_jit(lambda a, b: a + b).lower(v, v).compile())
    assert gemm_flops == pytest.approx(2 * 512**3, rel=0.01)
    assert add_bytes >= 3 * 4 * (1 << 20)  # two reads and one write
    gemm, add = bound(gemm_flops, gemm_bytes, LIMITS), bound(add_flops, add_bytes, LIMITS)
    assert gemm["bound"] == "compute" and gemm["intensity"] > LIMITS.balance
    assert add["bound"] == "memory" and add["intensity"] < LIMITS.balance
    assert gemm["bound_s"] == pytest.approx(gemm_flops / 1e11)
    assert add["bound_s"] == pytest.approx(add_bytes / 1e10)


def _classes(module, x):
    """Layer class -> count of split_layers on module's eval-mode jaxpr."""
    variables = module.init(jax.random.key(0), x)
    jaxpr = jax.make_jaxpr(lambda xa: module.apply(variables, xa, train=False))(x).jaxpr
    layers, _ = split_layers(jaxpr)
    return collections.Counter(layer.layer_class for layer in layers)


@pytest.mark.parametrize("fast", [True, False])
def test_cnn7_tiny_splits_into_3_conv_4_dense_and_3_pool_layers(fast):
    classes = _classes(MODELS.get("cnn7_tiny").module(fast=fast), jnp.zeros((2, 16, 16, 3)))
    assert sum(n for c, n in classes.items() if c.startswith("conv")) == 3
    assert classes["dense"] == 4 and classes["pool"] == 3
    # plain: conv3x3 throughout; fast: the space-to-depth convs run 2x2 kernels
    assert ("conv3x3/s1 c_in<16" in classes) != fast


def test_conv_classes_name_kernel_stride_dilation_grouping_and_width():
    class Convs(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            x = nn.Conv(16, (4, 4), strides=(2, 2))(x)
            x = nn.Conv(16, (3, 3), feature_group_count=16)(x)
            x = nn.Conv(8, (3, 3), kernel_dilation=2)(x)
            return nn.BatchNorm(use_running_average=True)(x)

    classes = _classes(Convs(), jnp.zeros((2, 8, 8, 3)))
    assert classes == {"conv4x4/s2 c_in<16": 1, "conv3x3/s1 depthwise c_in>=16": 1,
                       "conv3x3/s1/d2 c_in>=16": 1, "batchnorm": 1}


def _bench_module():
    path = Path(__file__).parents[1] / "bench" / "bench_roofline.py"
    spec = importlib.util.spec_from_file_location("bench_roofline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LAYER_FIELDS = {"scope", "class", "inputs", "outputs", "flops", "bytes", "measured_s",
                "measured_min_s", "measured_max_s", "compute_s", "memory_s", "bound_s",
                "bound", "intensity", "share"}
AGGREGATE_FIELDS = {"layers", "flops", "bytes", "measured_s", "bound_s", "share",
                    "compute_bound_fraction", "bound"}
MACHINE_FIELDS = {"gemm_flops_per_second", "bandwidth_bytes_per_second",
                  "balance_flops_per_byte", "gemm", "bandwidth", "loadavg_before",
                  "loadavg_after", "cpu", "cores", "jax", "devices", "glibc_tunables"}


def test_bench_json_has_every_field_and_shares_in_range(tmp_path, capsys):
    """bench/bench_roofline.py on cnn7_tiny: every field of the machine, each layer, each
    class, the total and the whole step; each share in (0, 1.5] (under measured limits)."""
    out = tmp_path / "roofline.json"
    assert _bench_module().main(["--models", "cnn7_tiny", "--size", "16", "--batch", "2",
                                 "--rounds", "1", "--limit-rounds", "1", "--variants",
                                 "fast", "--out", str(out)]) == 0
    assert "| **whole step (one program)** |" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert MACHINE_FIELDS <= set(data["machine"]) and data["size"] == 16
    (record,) = data["records"]
    assert {"model", "variant", "size", "batch", "layers", "classes", "total", "step",
            "seconds", "loadavg"} <= set(record)
    assert (record["model"], record["variant"]) == ("cnn7_tiny", "fast")
    rows = record["layers"] + list(record["classes"].values()) + [record["total"],
                                                                   record["step"]]
    for row in record["layers"]:
        assert LAYER_FIELDS <= set(row)
    for row in [*record["classes"].values(), record["total"]]:
        assert AGGREGATE_FIELDS <= set(row)
    assert LAYER_FIELDS - {"scope", "class", "inputs", "outputs"} | {"layers_over_step"} <= set(
        record["step"])
    for row in rows:
        assert 0 < row["share"] <= 1.5
        assert row["bound"] in ("compute", "memory")
    assert record["total"]["layers"] == len(record["layers"])
