"""Renyi-DP accountant for the sampled Gaussian mechanism (DP-SGD's privacy cost).

Mironov 2017, "Renyi Differential Privacy" (arXiv:1702.07476): RDP composes by
addition and converts to (eps, delta)-DP. Mironov, Talwar & Zhang 2019, "Renyi
Differential Privacy of the Sampled Gaussian Mechanism" (arXiv:1908.10530), Sec. 3.3:
for an integer order alpha >= 2, sampling rate q and noise multiplier sigma,

    RDP(alpha) = 1 / (alpha - 1) * log sum_{k=0}^{alpha} C(alpha, k) (1 - q)^(alpha - k)
                 q^k exp((k^2 - k) / (2 sigma^2)),

exact for Poisson sampling. We evaluate it in log space for integer orders only
(fractional orders would tighten eps slightly; integer orders are an upper bound).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

DEFAULT_ORDERS: tuple[int, ...] = tuple(range(2, 65)) + (80, 96, 128, 160, 192, 256, 384, 512)


def _log_add(a: np.ndarray) -> float:
    m = float(np.max(a))
    if m == -math.inf:
        return -math.inf
    return m + math.log(float(np.sum(np.exp(a - m))))


def rdp_sampled_gaussian(*, q: float, noise_multiplier: float, order: int) -> float:
    """RDP epsilon of ONE step of the sampled Gaussian mechanism at integer `order` >= 2.

    q in [0, 1]: sampling rate (batch / dataset size); noise_multiplier: sigma, the
    noise std divided by the clipping norm. q = 1 gives the Gaussian's alpha / (2 sigma^2).
    """
    if not (0.0 <= q <= 1.0):
        raise ValueError(f"q must be in [0, 1], got {q}")
    if noise_multiplier <= 0:
        return math.inf
    if int(order) != order or order < 2:
        raise ValueError(f"order must be an integer >= 2, got {order}")
    if q == 0.0:
        return 0.0
    alpha = int(order)
    if q == 1.0:
        return alpha / (2.0 * noise_multiplier**2)
    k = np.arange(alpha + 1, dtype=np.float64)
    log_binom = (math.lgamma(alpha + 1) - np.array([math.lgamma(i + 1) for i in k])
                 - np.array([math.lgamma(alpha - i + 1) for i in k]))
    terms = (log_binom + (alpha - k) * math.log1p(-q) + k * math.log(q)
             + (k * k - k) / (2.0 * noise_multiplier**2))
    return max(_log_add(terms), 0.0) / (alpha - 1)


def rdp_to_epsilon(rdp: Sequence[float], orders: Sequence[int], delta: float) -> tuple[float, int]:
    """(eps, best order) of (eps, delta)-DP from RDP at several orders (Mironov 2017,
    Prop. 3: eps = RDP(alpha) + log(1 / delta) / (alpha - 1), minimised over alpha)."""
    if not (0.0 < delta < 1.0):
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    eps = [r + math.log(1.0 / delta) / (a - 1) for r, a in zip(rdp, orders)]
    best = int(np.argmin(eps))
    return float(eps[best]), int(orders[best])


def dp_sgd_epsilon(*, num_examples: int, batch_size: int, noise_multiplier: float, steps: int,
                   delta: float, orders: Sequence[int] = DEFAULT_ORDERS) -> float:
    """eps of DP-SGD after `steps` steps at q = batch_size / num_examples (Abadi et al.
    2016, arXiv:1607.00133, accounted with RDP). Assumes Poisson sampling at rate q;
    dfjax's loop draws shuffled fixed-size batches, the usual approximation."""
    q = batch_size / num_examples
    rdp = [steps * rdp_sampled_gaussian(q=q, noise_multiplier=noise_multiplier, order=a)
           for a in orders]
    return rdp_to_epsilon(rdp, orders, delta)[0]
