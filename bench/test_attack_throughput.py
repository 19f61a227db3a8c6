"""Throughput of forward, FGSM, PGD-10, APGD and Square per model (images/s), with
compile time measured on its own (`lower().compile()`), memory of the compiled
executable (per device: the batch is split across the CPU devices as in the runner,
dfjax.xla.compile_split), FLOPs from XLA's cost analysis, and every figure relative to the
calibration matmul timed in the same process."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dfjax.attacks import ATTACKS
from dfjax.benchmarks import cost_flops, plain_model
from dfjax.config import AttackSpec, ModelSpec
from dfjax.models import MODELS, build_model, make_logits_fn
from dfjax.xla import compile_split
from dfjax.xla import jit as dfjax_jit

EPS = 8 / 255
ATTACK_OPTIONS = {
    "fgsm": {},
    "pgd": {"num_steps": 10},
    "apgd_ce": {"num_steps": 10},
    "square": {"num_queries": 100},
}


def _cases(short: bool):
    models = ["cnn7"] if short else [m for m in ("cnn7", "meso4") if m in MODELS]
    attacks = ["forward", "fgsm", "pgd"] if short else (
        ["forward"] + [a for a in ATTACK_OPTIONS if a in ATTACKS])
    batches = [64] if short else [1, 64, 256]
    return [(m, a, b) for m in models for a in attacks for b in batches]


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        short = bool(metafunc.config.getoption("--short"))
        import os

        short = short or bool(os.environ.get("DFJAX_BENCH_SHORT"))
        cases = _cases(short)
        metafunc.parametrize("case", cases, ids=[f"{m}-{a}-b{b}" for m, a, b in cases])


def _attack_fn(model, attack):
    if attack == "forward":
        def fn(variables, x, y, key, eps):
            return make_logits_fn(model, variables)(x)
    else:
        bound = ATTACKS.get(attack).bind(
            AttackSpec(name=attack, eps=EPS, options=ATTACK_OPTIONS[attack]))

        def fn(variables, x, y, key, eps):
            return bound(make_logits_fn(model, variables), x, y, key, eps)
    return fn


def _compiled(model_name, attack, batch, size):
    """(compiled attack, its args, compile seconds, FLOPs of the plain-layer model)."""
    model = build_model(ModelSpec(name=model_name))
    x = jnp.asarray(np.random.default_rng(0).random((batch, size, size, 3), np.float32))
    y = jnp.asarray(np.arange(batch) % 2, jnp.int32)
    variables = model.init(jax.random.key(0), x[:1], train=False)
    args = (variables, x, y, jax.random.key(1), jnp.float32(EPS))
    import time

    start = time.perf_counter()
    compiled = compile_split(_attack_fn(model, attack), *args)  # batch split as the runner's
    seconds = time.perf_counter() - start
    flops = cost_flops(dfjax_jit(_attack_fn(plain_model(model), attack)).lower(*args).compile())
    return compiled, compiled.place(*args), seconds, flops


def test_throughput(benchmark, case, short, slowdown, calibration):
    model_name, attack, batch = case
    size = 64 if short else 128
    compiled, args, compile_seconds, flops = _compiled(model_name, attack, batch, size)

    def run():
        for _ in range(slowdown):
            jax.block_until_ready(compiled(*args))

    benchmark.pedantic(run, warmup_rounds=1, rounds=3 if short else 5, iterations=1)
    median = benchmark.stats.stats.median
    memory = compiled.compiled.memory_analysis()  # per device
    benchmark.extra_info.update({
        "model": model_name, "attack": attack, "batch": batch, "image_size": size,
        "eps": EPS, "options": ATTACK_OPTIONS.get(attack, {}),
        "images_per_second": batch / median,
        "compile_seconds": compile_seconds,
        "flops_per_call": flops,
        "executed_flops_per_call": cost_flops(compiled),
        "devices": len(compiled.devices),
        "percent_of_gemm_rate": 100 * flops / median / (calibration["gflops"] * 1e9),
        "calibration_median_s": calibration["median"],
        "calibration_gflops": calibration["gflops"],
        "temp_bytes": int(getattr(memory, "temp_size_in_bytes", 0) or 0),
        "argument_bytes": int(getattr(memory, "argument_size_in_bytes", 0) or 0),
    })


def test_calibration_matmul(benchmark, calibration):
    """The calibration kernel itself, so a run's JSON shows the machine's GEMM rate."""
    a = jax.random.normal(jax.random.key(0), (2048, 2048), jnp.float32)
    matmul = dfjax_jit(lambda a: a @ a)
    benchmark.pedantic(lambda: matmul(a).block_until_ready(), warmup_rounds=1, rounds=5)
    benchmark.extra_info.update({"calibration_median_s": calibration["median"],
                                 "calibration_gflops": calibration["gflops"]})


@pytest.mark.parametrize("config_name", ["smoke"])
def test_tracked_robust_accuracy(benchmark, config_name, tmp_path_factory, calibration):
    """The smoke matrix end to end; its robust accuracies are tracked (asv's track_*):
    the suite is deterministic, so any change is flagged by `dfjax bench compare`."""
    from dfjax.configs import get_config
    from dfjax.runner import run_matrix
    from dfjax.store import Store

    tmp = tmp_path_factory.mktemp("tracked")
    config = get_config(config_name)
    rows = {}

    def run():
        path = tmp / f"s{len(rows)}.sqlite"
        with Store(path) as store:
            run_matrix(config, store, data_dir=tmp / "data", checkpoint_dir=tmp / "ckpt",
                       progress=False)
            rows.update({f"track_{r['attack']}_delta{r['delta']:g}": r["robust_accuracy"]
                         for r in store.rows()})

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(rows)
    benchmark.extra_info["calibration_median_s"] = calibration["median"]
