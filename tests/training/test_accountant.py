"""The DP-SGD accountant: dfjax's wrapper gives what dp-accounting gives, used directly."""

import math

import dp_accounting
import pytest
from dp_accounting import pld, rdp

from dfjax.training.accountant import dp_sgd_epsilon

# TF Privacy's MNIST tutorial: N = 60000, batch 256, sigma 1.1, 60 epochs, delta 1e-5.
MNIST = {"num_examples": 60000, "batch_size": 256, "noise_multiplier": 1.1,
         "steps": 60 * 60000 // 256, "delta": 1e-5}


def _direct(accountant, *, num_examples, batch_size, noise_multiplier, steps, delta):
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(
            batch_size / num_examples, dp_accounting.GaussianDpEvent(noise_multiplier)),
        steps)
    accountant.compose(event)
    return accountant.get_epsilon(delta)


@pytest.mark.parametrize("name, make", [("rdp", rdp.RdpAccountant), ("pld", pld.PLDAccountant)])
def test_mnist_setting_matches_dp_accounting(name, make):
    eps = dp_sgd_epsilon(**MNIST, accountant=name)
    assert eps == pytest.approx(_direct(make(), **MNIST), rel=1e-9)
    assert 2.0 < eps < 3.01  # tighter than the hand-derived RDP's 3.01 (integer orders)


def test_pld_is_tighter_than_rdp():
    kw = {"num_examples": 6000, "batch_size": 64, "noise_multiplier": 1.0, "steps": 500,
          "delta": 1e-5}
    assert dp_sgd_epsilon(**kw, accountant="pld") < dp_sgd_epsilon(**kw, accountant="rdp")


def test_rdp_is_the_default():
    assert dp_sgd_epsilon(**MNIST) == dp_sgd_epsilon(**MNIST, accountant="rdp")


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_monotone(accountant):
    kw = {"num_examples": 6000, "batch_size": 64, "delta": 1e-5, "accountant": accountant}
    e = [dp_sgd_epsilon(noise_multiplier=1.0, steps=t, **kw) for t in (10, 100, 1000)]
    assert e[0] < e[1] < e[2]
    s = [dp_sgd_epsilon(noise_multiplier=m, steps=100, **kw) for m in (0.8, 1.1, 2.0)]
    assert s[0] > s[1] > s[2]


def test_edge_cases_and_bad_arguments():
    kw = {"num_examples": 600, "batch_size": 32, "delta": 1e-5}
    assert dp_sgd_epsilon(noise_multiplier=0.0, steps=10, **kw) == math.inf
    assert dp_sgd_epsilon(noise_multiplier=1.0, steps=0, **kw) == 0.0
    with pytest.raises(ValueError, match="accountant"):
        dp_sgd_epsilon(noise_multiplier=1.0, steps=10, accountant="moments", **kw)
    with pytest.raises(ValueError, match="delta"):
        dp_sgd_epsilon(num_examples=600, batch_size=32, noise_multiplier=1.0, steps=10,
                       delta=0.0)
