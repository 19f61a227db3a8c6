import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dfjax.xla import (
    CPU_COMPILER_OPTIONS,
    compile_split,
    compiler_options,
    jit,
    split_devices,
    use_cpu_cores,
    xla_flags,
)


def test_compiler_options_per_backend():
    assert compiler_options("cpu") == CPU_COMPILER_OPTIONS
    assert compiler_options("gpu") == {}


def test_xla_flags_spell_the_options_and_the_tests_run_with_them():
    assert xla_flags({"xla_a": "", "xla_b": 1}) == "--xla_a= --xla_b=1"
    assert xla_flags().split() == [f"--{k}={v}" for k, v in CPU_COMPILER_OPTIONS.items()]
    assert os.environ["XLA_FLAGS"].startswith(xla_flags())  # tests/conftest.py


def test_jit_compiles_with_the_options_and_computes_the_same():
    x = jnp.arange(12.0).reshape(3, 4)
    f = jit(lambda x: jnp.tanh(x) @ x.T)
    np.testing.assert_allclose(f(x), jax.jit(lambda x: jnp.tanh(x) @ x.T)(x), rtol=1e-6)
    g = jit(lambda x: x * 2, compiler_options={"xla_cpu_enable_fast_math": False})
    np.testing.assert_array_equal(g(x), x * 2)


def test_use_cpu_cores_after_jax_started_accepts_the_count_jax_has():
    jnp.zeros(1).block_until_ready()
    assert use_cpu_cores(2) == len(jax.devices("cpu")) == 2  # tests/conftest.py asked for 2
    with pytest.raises(ValueError, match="count must be >= 1"):
        use_cpu_cores(0)


def test_use_cpu_cores_after_jax_started_refuses_another_count():
    jnp.zeros(1).block_until_ready()
    with pytest.raises(RuntimeError, match="asked for 3 .* already started with 2") as error:
        use_cpu_cores(3)
    assert "before JAX computes anything" in str(error.value)
    assert "DFJAX_CPU_DEVICES=2" in str(error.value)
    assert len(jax.devices("cpu")) == 2


def test_use_cpu_cores_reads_the_environment_setting(monkeypatch):
    monkeypatch.setenv("DFJAX_CPU_DEVICES", "2")
    assert use_cpu_cores() == 2
    monkeypatch.setenv("DFJAX_CPU_DEVICES", "3")
    with pytest.raises(RuntimeError, match="asked for 3"):
        use_cpu_cores()


def test_use_cpu_cores_rejects_a_bad_environment_setting(monkeypatch):
    monkeypatch.setenv("DFJAX_CPU_DEVICES", "two")
    with pytest.raises(ValueError, match="DFJAX_CPU_DEVICES .* got 'two'"):
        use_cpu_cores()


def test_split_devices_divide_the_batch():
    assert len(split_devices(8)) == 2
    assert len(split_devices(7)) == 1


def test_compile_split_places_the_batch_and_computes_the_same():
    def f(w, x, y):
        return jnp.tanh(x @ w) + y[:, None], jnp.sum(x)

    args = (jnp.ones((3, 2)), jnp.arange(24.0).reshape(8, 3) / 24, jnp.arange(8.0))
    split = compile_split(f, *args)
    assert len(split.devices) == 2
    placed = split.place(*args)
    assert placed[1].sharding.shard_shape(placed[1].shape) == (4, 3)
    assert placed[0].sharding.is_fully_replicated
    out, total = split(*args)
    expected, expected_total = jit(f)(*args)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_allclose(total, expected_total, rtol=1e-6)
    assert len(out.sharding.device_set) == 2


@pytest.mark.parametrize("attack,options", [("pgd", {"num_steps": 3}),
                                            ("square", {"num_queries": 20}),
                                            ("apgd_ce", {"num_steps": 4})])
def test_split_attack_equals_the_unsplit_one(tiny_model, batch, attack, options):
    """Random draws (threefry, partitionable) and per-example computations do not depend
    on how the batch is split, so x_adv is the same up to float rounding."""
    from dfjax.attacks import ATTACKS
    from dfjax.config import AttackSpec
    from dfjax.models import make_logits_fn

    model, variables, _ = tiny_model
    bound = ATTACKS.get(attack).bind(AttackSpec(name=attack, eps=8 / 255, options=options))

    def fn(v, x, y, key, eps):
        return bound(make_logits_fn(model, v), x, y, key, eps)

    x, y = batch
    args = (variables, x, y, jax.random.key(3), jnp.float32(8 / 255))
    split = compile_split(fn, *args)
    single = compile_split(fn, *args, devices=jax.devices("cpu")[:1])
    assert (len(split.devices), len(single.devices)) == (2, 1)
    np.testing.assert_allclose(split(*args), single(*args), rtol=0, atol=1e-6)
    assert not np.array_equal(split(*args), x)  # the attack moved the images


def test_a_second_run_loads_every_program_from_the_compile_cache(tmp_path):
    """Two `dfjax run` processes on the same smoke cells with one --compile-cache folder
    (fresh stores, the detector cached by the first): the second compiles nothing and
    stores nothing new, it loads every program, and says how many seconds that saved."""
    import re
    import subprocess
    import sys

    from dfjax.store import Store

    outputs = []
    for i in (1, 2):
        done = subprocess.run(
            [sys.executable, "-m", "dfjax.cli", "run", "--config", "smoke", "--only",
             "attack=fgsm", "--store", str(tmp_path / f"s{i}.sqlite"), "--no-progress",
             "--data-dir", str(tmp_path / "data"), "--checkpoint-dir", str(tmp_path / "ckpt"),
             "--compile-cache", str(tmp_path / "xla")],
            capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(re.search(r"(\d+) programs loaded, (\d+) compiled and stored, "
                                 r"(-?[\d.]+) s of compiling saved", done.stdout).groups())
    (loaded1, compiled1, _), (loaded2, compiled2, saved2) = outputs
    assert int(compiled1) > 0
    assert int(compiled2) == 0 and int(loaded2) > 0 and float(saved2) > 0
    metrics = [{(r["cell_id"], k): v for r in Store(tmp_path / f"s{i}.sqlite").rows()
                for k, v in r.items() if k == "robust_accuracy" or k.startswith("adv_")}
               for i in (1, 2)]
    assert metrics[0] and metrics[0] == metrics[1]  # loaded programs compute the same
