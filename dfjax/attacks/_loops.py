"""The iteration primitive of every iterative attack.

Measured on the 2-core Zen3 CI machine (JAX 0.10.2): loops whose body takes a gradient
run several times slower inside an XLA:CPU while loop (`lax.fori_loop`, any partial
unroll) than fully unrolled -- the convolutions' backward passes inside a while body
take a much slower path (PGD-10, batch 64, 128x128: cnn7 8.3 vs 38.5 img/s, meso4 16.7
vs 81.6). Unrolling costs compile time (PGD-10: 2.2 s, PGD-100: 11.5 s), paid once per
budget sweep since eps is traced. So gradient loops up to `MAX_UNROLL` steps are
unrolled; longer ones stay rolled to bound compile time.

Loops that only call the model forward (Square, One Pixel) lose nothing rolled, and
unrolled they compile for minutes: Square-100 on cnn7 (batch 64, 64x64) compiles in 2.7 s
rolled against 79.9 s unrolled and runs 1.45 vs 1.50 s per batch; One Pixel (16
iterations) 2.2 vs 4.6 s to compile, 8.7 vs 8.0 img/s; the same x_adv bit for bit. They
stay rolled (`uses_gradients=False`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from jax import lax

Carry = TypeVar("Carry")

MAX_UNROLL = 256


def attack_loop(num_steps: int, body: Callable[[int, Carry], Carry], init: Carry, *,
                uses_gradients: bool = True) -> Carry:
    """`lax.fori_loop(0, num_steps, body, init)`, unrolled when the body takes a gradient
    and num_steps <= MAX_UNROLL."""
    unroll = uses_gradients and num_steps <= MAX_UNROLL
    return lax.fori_loop(0, num_steps, body, init, unroll=unroll)
