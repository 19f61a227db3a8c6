"""Shared fixtures. Tests run with rank promotion as an error (STYLE.md: strict tests)."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

# In-process `dfjax run` calls keep no compiled programs in the user's folder (tests/test_xla.py
# tests `dfjax run`'s cache itself, in subprocesses with their own folder).
os.environ["DFJAX_COMPILE_CACHE_DIR"] = "off"

from dfjax.xla import use_compile_cache, use_cpu_cores, xla_flags

# Every compile in the tests (jax.jit, op-by-op dispatch) with dfjax's compiler options, as
# dfjax.xla.jit compiles: JAX reads XLA_FLAGS when it starts, in use_cpu_cores below. Flags
# the caller set come last, so they win.
os.environ["XLA_FLAGS"] = f"{xla_flags()} {os.environ.get('XLA_FLAGS', '')}".strip()
jax.config.update("jax_numpy_rank_promotion", "raise")
# Two CPU devices whatever the machine, as `dfjax run` has on the 2-core CI machine, so
# the tests run attacks with their batch split as the runner does (dfjax/xla.py).
use_cpu_cores(2)

# One XLA compilation cache for this test run, in a temporary folder removed at exit: tests
# that build the same program anew (a new closure, a new AttackEvaluator, another
# `run_matrix` of the smoke cells) load it instead of compiling it again. XLA keys each
# entry on the program and its options, so a loaded program is the one a compile makes.
# Under pytest-xdist (pyproject's addopts) the workers share their controller's folder
# (named by its pid, their parent's), and the controller removes it.
_XDIST_WORKER = "PYTEST_XDIST_WORKER" in os.environ
TEST_COMPILE_CACHE = (Path(tempfile.gettempdir())
                      / f"dfjax-test-xla-{os.getppid() if _XDIST_WORKER else os.getpid()}")
TEST_COMPILE_CACHE.mkdir(exist_ok=True)
if not _XDIST_WORKER:
    atexit.register(shutil.rmtree, TEST_COMPILE_CACHE, ignore_errors=True)
use_compile_cache(TEST_COMPILE_CACHE)


@pytest.fixture(scope="session")
def xla_cache_dir() -> Path:
    """This process's XLA compilation cache folder: pass it to a `dfjax run` subprocess
    (DFJAX_COMPILE_CACHE_DIR) to share compiled programs with it and with later runs."""
    return TEST_COMPILE_CACHE


def pytest_addoption(parser):
    parser.addoption("--peers-report", default=None, metavar="DIR",
                     help="tests/peers: write the torchattacks cross-check's results to "
                          "DIR/crosscheck.json (rendered by python -m dfjax.peers.report)")


@pytest.fixture(scope="session")
def peers_report_dir(request):
    """The --peers-report folder (created), or None."""
    from pathlib import Path

    value = request.config.getoption("--peers-report")
    if value is None:
        return None
    path = Path(value)
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def tiny_model():
    """(model, variables, logits_fn) of a randomly initialised cnn7_tiny with 2 logits."""
    from dfjax.config import ModelSpec
    from dfjax.models import build_model, make_logits_fn

    model = build_model(ModelSpec(name="cnn7_tiny"))
    variables = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    return model, variables, make_logits_fn(model, variables)


@pytest.fixture(scope="session")
def tiny_model_1logit():
    from dfjax.config import ModelSpec
    from dfjax.models import build_model, make_logits_fn

    model = build_model(ModelSpec(name="cnn7_tiny", num_logits=1))
    variables = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    return model, variables, make_logits_fn(model, variables)


@pytest.fixture()
def batch():
    """x float32 [8, 16, 16, 3] in [0, 1] (some pixels at the bounds), y int32 [8]."""
    rng = np.random.default_rng(0)
    x = rng.random((8, 16, 16, 3), dtype=np.float32)
    x[0, :4] = 0.0
    x[1, :4] = 1.0
    y = np.array([0, 1] * 4, np.int32)
    return jnp.asarray(x), jnp.asarray(y)
