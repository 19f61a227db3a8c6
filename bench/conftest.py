"""Bench options: `--short` (CI mode: cnn7 and meso4 only, batch 64, 64x64, 3 rounds),
`--models a,b` (the peer bench's models) and a
deliberate slow-down (`DFJAX_BENCH_SLOWDOWN=k` runs every timed call k times) used
to check that `dfjax bench compare` flags a regression."""

import os

import pytest


def pytest_configure(config):
    """One JAX CPU device per core, as `dfjax run` has (dfjax.xla.use_cpu_cores), before
    any benchmark starts JAX."""
    from dfjax.xla import use_cpu_cores

    use_cpu_cores()


def pytest_addoption(parser):
    parser.addoption("--short", action="store_true", help="the quick CI subset")
    parser.addoption("--models", default=None, metavar="M1,M2",
                     help="bench/test_peer_throughput.py: only these zoo models")


@pytest.fixture(scope="session")
def short(request) -> bool:
    return bool(request.config.getoption("--short") or os.environ.get("DFJAX_BENCH_SHORT"))


@pytest.fixture(scope="session")
def slowdown() -> int:
    return int(os.environ.get("DFJAX_BENCH_SLOWDOWN", "1"))


@pytest.fixture(scope="session")
def calibration():
    from dfjax.benchmarks import calibration_seconds

    return calibration_seconds()
