"""A batch whose compiled attack would not fit in memory is halved until it fits, or the
cell fails naming both figures (dfjax.attacks.evaluate; the figures from dfjax.xla). The
limit here is an explicit, tiny one (AttackEvaluator(memory_limit_bytes=...)): no test
runs the machine out of memory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dfjax.attacks.evaluate import AttackEvaluator, BatchTooLargeError, evaluate_attack
from dfjax.config import AttackSpec, DefenceSpec
from dfjax.defences import defended_logits
from dfjax.xla import available_memory_bytes, compile_split, compiled_memory_bytes

SPEC = AttackSpec(name="pgd", eps=8 / 255, options={"num_steps": 1})  # quick to compile


def _inputs(n=32, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, size, size, 3), dtype=np.float32), (np.arange(n) % 2).astype(np.int32)


def _needed_bytes(evaluator, model, variables, images, labels, batch):
    """What `evaluator`'s compiled attack for `batch` examples plans to use."""
    fn, _ = evaluator.get(SPEC, defended_logits(model, DefenceSpec()), "cnn7_tiny", variables,
                          jnp.asarray(images[:batch]), jnp.asarray(labels[:batch]),
                          jax.random.key(0))
    return compiled_memory_bytes(fn)


def _evaluate(model, variables, images, labels, evaluator, batch_size):
    return evaluate_attack(SPEC, defended_logits(model, DefenceSpec()), "cnn7_tiny", variables,
                           images, labels, jax.random.key(1), evaluator, batch_size)


def test_compiled_memory_counts_every_device():
    x = jnp.ones((4, 64), jnp.float32)
    compiled = compile_split(lambda v, x, y, k, e: (x * v).sum(axis=1), jnp.float32(2.0), x,
                             jnp.zeros(4, jnp.int32), jax.random.key(0), jnp.float32(0),
                             devices=jax.devices("cpu")[:2])
    stats = compiled.compiled.memory_analysis()
    per_device = (stats.argument_size_in_bytes + stats.output_size_in_bytes
                  + stats.temp_size_in_bytes - stats.alias_size_in_bytes)
    assert per_device > 0
    assert compiled_memory_bytes(compiled) == 2 * per_device


def test_available_memory_reads_memavailable(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       32000000 kB\nMemAvailable:    1234 kB\n")
    cpu = jax.devices("cpu")[0]
    assert available_memory_bytes(cpu, meminfo=meminfo) == 1234 * 1024
    meminfo.write_text("MemTotal:       32000000 kB\n")
    assert available_memory_bytes(cpu, meminfo=meminfo) is None
    assert available_memory_bytes(cpu, meminfo=tmp_path / "absent") is None


def test_batch_over_the_limit_is_halved_until_it_fits(tiny_model):
    """Limit between what batches 8 and 16 need: asked for batch 32, the evaluation runs at
    8 and gives exactly what an unlimited evaluator gives at batch 8."""
    model, variables, _ = tiny_model
    images, labels = _inputs()
    unlimited = AttackEvaluator(memory_limit_bytes=2**62)
    need = {b: _needed_bytes(unlimited, model, variables, images, labels, b) for b in (8, 16)}
    assert need[8] < need[16]
    limited = AttackEvaluator(memory_limit_bytes=(need[8] + need[16]) // 2)
    result = _evaluate(model, variables, images, labels, limited, 32)
    reference = _evaluate(model, variables, images, labels, unlimited, 8)
    assert result.batch_size == 8 and reference.batch_size == 8
    assert result.outputs.keys() == reference.outputs.keys()
    for name, value in result.outputs.items():
        np.testing.assert_array_equal(value, reference.outputs[name], err_msg=name)
    assert result.compile_seconds > 0 and reference.compile_seconds == 0  # compiled above


def test_attack_too_large_even_for_one_example_fails_with_both_figures(tiny_model):
    model, variables, _ = tiny_model
    images, labels = _inputs(n=2)
    evaluator = AttackEvaluator(memory_limit_bytes=1000)
    with pytest.raises(BatchTooLargeError, match=r"batch of 1 needs [\d.]+ MiB .* limit of "
                                                  r"0\.0 MiB.*even one example") as error:
        _evaluate(model, variables, images, labels, evaluator, 2)
    assert error.value.batch_size == 1 and error.value.limit_bytes == 1000
    assert error.value.needed_bytes > 1000
    # what did not fit is remembered: asking again fails without compiling again
    with pytest.raises(BatchTooLargeError) as again:
        evaluator.get(SPEC, defended_logits(model, DefenceSpec()), "cnn7_tiny", variables,
                      jnp.asarray(images[:1]), jnp.asarray(labels[:1]), jax.random.key(0))
    assert again.value.compile_seconds == 0.0 and again.value.needed_bytes > 1000
