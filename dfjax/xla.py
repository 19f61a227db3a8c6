"""XLA compiler options dfjax compiles with, and `jit`, jax.jit with them.

On XLA:CPU (JAX 0.10.2) convolutions, dots and reductions are by default handed to
YNNPACK fusions, which run on one thread: measured on the 2-core Zen3 CI machine, a
64x64x16->32 3x3 conv (batch 64) takes 43 ms in YNNPACK whether one or two cores are
free, and 26 ms in XLA's own (Eigen, multi-threaded) kernels; cnn7's PGD-10 (batch 64,
128x128, a first version of the fast layers) ran 42.8 img/s without YNNPACK fusions and
24.1 img/s with them, meso4's 84.1 and 35.1. So on CPU dfjax turns them off (`xla_cpu_experimental_ynn_fusion_type` = "").
dfjax's runner, training loops and benches compile with these options; code that calls
jax.jit itself gets the same with `dfjax.xla.jit`, or for a whole process with
`XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=` set before JAX starts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

CPU_COMPILER_OPTIONS: dict[str, Any] = {"xla_cpu_experimental_ynn_fusion_type": ""}


def compiler_options(backend: str | None = None) -> dict[str, Any]:
    """The options for `backend` (default: JAX's default backend): CPU_COMPILER_OPTIONS on
    "cpu", none elsewhere. Pass to `jax.jit(..., compiler_options=...)` or
    `lowered.compile(...)`."""
    backend = backend or jax.default_backend()
    return dict(CPU_COMPILER_OPTIONS) if backend == "cpu" else {}


def jit(fun: Callable, **kwargs) -> Callable:
    """jax.jit(fun, **kwargs) compiled with compiler_options() (merged under any
    `compiler_options` given)."""
    options = {**compiler_options(), **(kwargs.pop("compiler_options", None) or {})}
    return jax.jit(fun, compiler_options=options, **kwargs)
