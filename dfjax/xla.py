"""XLA compiler options dfjax compiles with, and `jit`, jax.jit with them.

On XLA:CPU (JAX 0.10.2) convolutions, dots and reductions are by default handed to
YNNPACK fusions, which run on one thread: measured on the 2-core Zen3 CI machine, a
64x64x16->32 3x3 conv (batch 64) takes 43 ms in YNNPACK whether one or two cores are
free, and 26 ms in XLA's own (Eigen, multi-threaded) kernels; cnn7's PGD-10 (batch 64,
128x128, a first version of the fast layers) ran 42.8 img/s without YNNPACK fusions and
24.1 img/s with them, meso4's 84.1 and 35.1. So on CPU dfjax turns them off
(`xla_cpu_experimental_ynn_fusion_type` = "").
dfjax also compiles at LLVM optimisation level 1 (`xla_backend_optimization_level`, default
2): on CPU the heavy ops (convolutions, dots) are library calls, so the level changes
compile time, not speed. Measured on the 2-core Xeon (Sapphire Rapids), JAX 0.10.2:
compiling a jitted xception_tiny init 6.0 -> 2.4 s, cnn7's PGD-10 1.49 -> 0.92 s, meso4's
1.91 -> 1.43 s, the short bench's smoke matrix 16.9 -> 12.7 s; PGD-10 and training steps
(cnn7, meso4, mesoinception4 and resnet18 at 64x64, xception at 128x128) ran equally fast,
cnn7/cnn6/resnet18_tiny's PGD outputs and parameter gradients bit-identical and meso4's
gradients equal to 5e-8. Level 0 compiles faster still but runs slower (xception_tiny's
PGD-10 x2.7, cnn7's x2).
dfjax's runner, training loops and benches compile with these options; code that calls
jax.jit itself gets the same with `dfjax.xla.jit`, or for a whole process with
`XLA_FLAGS` set to `xla_flags()` before JAX starts.

A batch split across CPU devices: `use_cpu_cores()` (called by run_all.py, the CLI and
the benches before JAX starts) gives JAX one CPU device per core, and `compile_split`
compiles an attack with its batch split across them (XLA's SPMD partitioner; each
example is computed on one device, with the same random draws: at the bench shapes x_adv
is bit-identical to the unsplit attack's, and at small shapes XLA may block a matmul
differently for the smaller per-device batch, changing results at the rounding level).
Measured on the 2-core Zen3 CI machine (batch 64, 128x128, in one process, unsplit vs
split over 2 devices, img/s): cnn7 PGD-10 47.5 -> 49.2, APGD-CE 44.5 -> 46.5, Square
10.9 -> 12.2, FGSM 388 -> 386; meso4 PGD-10 85.1 -> 90.8, APGD-CE 75.2 -> 86.4. The two
halves run concurrently, so one core's memory-bound passes (pooling, projection) overlap
the other's convolutions instead of each op being split over both cores in turn.

Memory: `compiled_memory_bytes` is what a compiled function plans to hold (XLA's memory
analysis, all devices) and `available_memory_bytes` what the machine has free; the
runner compares them before running an attack batch (dfjax.attacks.evaluate). Measured
with bench/bench_memory.py on the CI machine (cnn7, 64x64, PGD-10, batch 32 to 256):
what a batch adds to the peak RSS beyond a fixed part (compiling, the runtime) grows
with the batch as XLA's planned bytes do.

A persistent compilation cache: `use_compile_cache(dir)` (called by `dfjax run`) keeps
every compiled program on disk, keyed by XLA on the program and its options, so a second
run of the same matrix loads instead of compiling; `CompileCacheStats` counts the hits,
misses and the compile seconds JAX reports saved.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
from jax import monitoring
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dfjax import settings

CPU_COMPILER_OPTIONS: dict[str, Any] = {"xla_cpu_experimental_ynn_fusion_type": "",
                                        "xla_backend_optimization_level": 1}


def compiler_options(backend: str | None = None) -> dict[str, Any]:
    """The options for `backend` (default: JAX's default backend): CPU_COMPILER_OPTIONS on
    "cpu", none elsewhere. Pass to `jax.jit(..., compiler_options=...)` or
    `lowered.compile(...)`."""
    backend = backend or jax.default_backend()
    return dict(CPU_COMPILER_OPTIONS) if backend == "cpu" else {}


def xla_flags(options: dict[str, Any] | None = None) -> str:
    """`options` (default CPU_COMPILER_OPTIONS) as XLA_FLAGS text, e.g.
    "--xla_cpu_experimental_ynn_fusion_type= --xla_backend_optimization_level=1": set as
    XLA_FLAGS before JAX starts, every compile in the process uses them, jax.jit and
    op-by-op dispatch included."""
    options = CPU_COMPILER_OPTIONS if options is None else options
    return " ".join(f"--{name}={value}" for name, value in options.items())


def jit(fun: Callable, **kwargs) -> Callable:
    """jax.jit(fun, **kwargs) compiled with compiler_options() (merged under any
    `compiler_options` given)."""
    options = {**compiler_options(), **(kwargs.pop("compiler_options", None) or {})}
    return jax.jit(fun, compiler_options=options, **kwargs)


def use_cpu_cores(count: int | None = None) -> int:
    """Give JAX `count` CPU devices (None: `dfjax.settings.cpu_device_count()`, i.e.
    $DFJAX_CPU_DEVICES, else the cores this process may run on), so `compile_split` can
    split a batch across them. Returns the number of CPU devices JAX has.

    Must run before JAX computes anything: JAX fixes its devices when it starts. Asking
    afterwards for the count it already has is fine; asking for another raises
    RuntimeError (saying to call this first, or to set DFJAX_CPU_DEVICES to the count the
    process has), instead of running silently on devices nobody asked for.
    """
    count = settings.cpu_device_count(count)
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # JAX has started: its devices are fixed
        pass
    have = len(jax.devices("cpu"))
    if have != count:
        raise RuntimeError(
            f"use_cpu_cores: asked for {count} JAX CPU devices, but JAX has already started "
            f"with {have}. Call dfjax.xla.use_cpu_cores() before JAX computes anything, or "
            f"set DFJAX_CPU_DEVICES={have} (or pass count={have}) to keep the devices JAX has.")
    return have


class CompileCacheStats:
    """What JAX's persistent compilation cache did in this process since
    `use_compile_cache`: hits, misses, and the compile seconds the hits saved (JAX's own
    accounting: the original compile time stored with each entry, less the time the load
    took, so a program that compiled faster than it loads counts negative)."""

    def __init__(self, directory: Path):
        self.directory, self.hits, self.misses, self.saved_seconds = directory, 0, 0, 0.0

    def on_event(self, event: str, **kwargs) -> None:
        if event == "/jax/compilation_cache/cache_hits":
            self.hits += 1
        elif event == "/jax/compilation_cache/cache_misses":
            self.misses += 1

    def on_duration(self, event: str, seconds: float, **kwargs) -> None:
        if event == "/jax/compilation_cache/compile_time_saved_sec":
            self.saved_seconds += seconds

    def summary(self) -> str:
        return (f"XLA compilation cache ({self.directory}): {self.hits} programs loaded, "
                f"{self.misses} compiled and stored, {self.saved_seconds:.1f} s of "
                "compiling saved")


def use_compile_cache(directory: Path) -> CompileCacheStats:
    """Keep compiled XLA programs in `directory` across processes (every program, however
    fast it compiled) and count what the cache does from now on."""
    directory.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    stats = CompileCacheStats(directory)
    monitoring.register_event_listener(stats.on_event)
    monitoring.register_event_duration_secs_listener(stats.on_duration)
    return stats


def split_devices(batch_size: int) -> list:
    """The devices `compile_split` splits a batch of `batch_size` across: the most CPU
    devices (<= those JAX has) that divide it evenly; one device on other backends."""
    if jax.default_backend() != "cpu":
        return jax.devices()[:1]
    devices = jax.devices("cpu")
    count = max(d for d in range(1, len(devices) + 1) if batch_size % d == 0)
    return devices[:count]


class SplitCompiled:
    """A function compiled (with `compiler_options()`) for one set of argument shapes,
    its batch arguments split along axis 0 across `devices`, the rest replicated.
    Calling it places the arguments (a no-op for ones already placed) and runs it.
    `compiled` is JAX's executable: its cost and memory analyses are per device."""

    def __init__(self, fun: Callable, args: tuple, batch_argnums: tuple[int, ...],
                 devices: list | None = None):
        batch_size = args[batch_argnums[0]].shape[0]
        self.devices = devices or split_devices(batch_size)
        mesh = Mesh(np.array(self.devices), ("batch",))
        split = NamedSharding(mesh, PartitionSpec("batch"))
        replicated = NamedSharding(mesh, PartitionSpec())
        self.shardings = tuple(split if i in batch_argnums else replicated
                               for i in range(len(args)))
        self.compiled = jit(fun).lower(*self.place(*args)).compile()

    def place(self, *args) -> tuple:
        """args put on the devices, split or replicated as the compiled function expects."""
        return tuple(jax.device_put(a, s) for a, s in zip(args, self.shardings, strict=True))

    def __call__(self, *args):
        return self.compiled(*self.place(*args))


def compile_split(fun: Callable, *args, batch_argnums: tuple[int, ...] = (1, 2),
                  devices: list | None = None) -> SplitCompiled:
    """`fun` compiled for `args`, with args[i] for i in batch_argnums ([b, ...] arrays, b
    equal) split along axis 0 across `devices` (default: split_devices(b)). The default
    batch_argnums fit dfjax's attack signature (variables, x, y, key, eps)."""
    return SplitCompiled(fun, args, tuple(batch_argnums), devices)


def compiled_memory_bytes(compiled: SplitCompiled) -> int | None:
    """The bytes a compiled function plans to hold at once on all its devices together:
    XLA's memory analysis per device (arguments + outputs + temporaries, less what
    outputs alias) times the number of devices; None where XLA gives no analysis. On
    CPU the devices share the host's memory, so this is what one call adds to it."""
    stats = compiled.compiled.memory_analysis()
    if stats is None:
        return None
    per_device = (stats.argument_size_in_bytes + stats.output_size_in_bytes
                  + stats.temp_size_in_bytes - stats.alias_size_in_bytes)
    return int(per_device) * len(compiled.devices)


def available_memory_bytes(device: Any = None, *, meminfo: Path = Path("/proc/meminfo")
                           ) -> int | None:
    """Memory a new computation on `device` (default: JAX's first device) may use now: on
    CPU the host's MemAvailable (from `meminfo`), on an accelerator its memory limit less
    what is in use (`device.memory_stats()`); None where neither is known."""
    device = device or jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
        return None
    try:
        lines = meminfo.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition(":")
        if name == "MemAvailable":  # "MemAvailable:   24232084 kB"
            number, _, unit = value.strip().partition(" ")
            return int(number) * (1024 if unit.strip() == "kB" else 1)
    return None
