import math

import pytest

from dfjax.training.accountant import dp_sgd_epsilon, rdp_sampled_gaussian


@pytest.mark.parametrize("order", [2, 5, 32])
def test_full_batch_is_the_gaussian_mechanism(order):
    assert rdp_sampled_gaussian(q=1.0, noise_multiplier=2.0, order=order) == pytest.approx(
        order / 8.0)


def test_order_two_closed_form_and_no_sampling():
    # alpha = 2: A = 1 + q^2 (exp(1 / sigma^2) - 1)  (Mironov et al. 2019, Sec. 3.3)
    q, s = 0.01, 1.3
    expected = math.log1p(q * q * math.expm1(1 / s**2))
    assert rdp_sampled_gaussian(q=q, noise_multiplier=s, order=2) == pytest.approx(expected,
                                                                                   rel=1e-9)
    assert rdp_sampled_gaussian(q=0.0, noise_multiplier=1.0, order=8) == 0.0


def test_matches_tensorflow_privacy_tutorial():
    """TF Privacy's README: N=60000, batch 256, sigma 1.1, 60 epochs, delta 1e-5 ->
    eps = 3.01 (its optimal order, 9, is an integer, so integer orders reproduce it)."""
    eps = dp_sgd_epsilon(num_examples=60000, batch_size=256, noise_multiplier=1.1,
                         steps=60 * 60000 // 256, delta=1e-5)
    assert eps == pytest.approx(3.01, abs=0.01)


def test_monotone():
    kw = {"num_examples": 6000, "batch_size": 64, "delta": 1e-5}
    e = [dp_sgd_epsilon(noise_multiplier=1.0, steps=t, **kw) for t in (10, 100, 1000)]
    assert e[0] < e[1] < e[2]
    s = [dp_sgd_epsilon(noise_multiplier=m, steps=100, **kw) for m in (0.8, 1.1, 2.0)]
    assert s[0] > s[1] > s[2]
