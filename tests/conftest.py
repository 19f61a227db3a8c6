"""Shared fixtures. Tests run with rank promotion as an error (STYLE.md: strict tests)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

# In-process `dfjax run` calls keep no compiled programs on disk (tests/test_xla.py tests
# the cache itself, in subprocesses with their own folder).
os.environ["DFJAX_COMPILE_CACHE_DIR"] = "off"

from dfjax.xla import use_cpu_cores

jax.config.update("jax_numpy_rank_promotion", "raise")
# Two CPU devices whatever the machine, as `dfjax run` has on the 2-core CI machine, so
# the tests run attacks with their batch split as the runner does (dfjax/xla.py).
use_cpu_cores(2)


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
