import jax
import jax.numpy as jnp
import numpy as np

from dfjax.xla import CPU_COMPILER_OPTIONS, compiler_options, jit


def test_compiler_options_per_backend():
    assert compiler_options("cpu") == CPU_COMPILER_OPTIONS
    assert compiler_options("gpu") == {}


def test_jit_compiles_with_the_options_and_computes_the_same():
    x = jnp.arange(12.0).reshape(3, 4)
    f = jit(lambda x: jnp.tanh(x) @ x.T)
    np.testing.assert_allclose(f(x), jax.jit(lambda x: jnp.tanh(x) @ x.T)(x), rtol=1e-6)
    g = jit(lambda x: x * 2, compiler_options={"xla_cpu_enable_fast_math": False})
    np.testing.assert_array_equal(g(x), x * 2)
