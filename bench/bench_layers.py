"""Per-layer timings of the ResNet and Xception layer classes on XLA:CPU, plain layers
against the fast eval-mode layers of dfjax/models/_cpu_kernels.py.

    python bench/bench_layers.py [--sizes 64 128] [--batch 64] [--rounds 5] [--only NAME]
    python bench/bench_layers.py --pgd resnet18 --sizes 64 --batch 64 --rounds 2

For each layer at the shape the zoo's models give it at each input size: the forward
and the forward + input VJP (what an attack step runs), compiled with dfjax's options
and the batch split across the CPU devices (`compile_split`, as the runner does),
plain and fast interleaved round by round (medians, with min and max). GFLOP/s count
the plain layer's FLOPs (XLA's cost analysis, `cost_flops`) for both, so a ratio of
rates is a ratio of times. Prints a table; writes results/bench/layers-<sizes>.json
with the machine's load average. With --pgd MODEL: PGD-10 (Linf, eps 8/255) img/s of the
whole model, plain layers (fast=False) against fast ones, compiled as the runner does.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from dfjax.xla import use_cpu_cores

use_cpu_cores()

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402

from dfjax.benchmarks import cost_flops  # noqa: E402
from dfjax.models import _cpu_kernels as kernels  # noqa: E402
from dfjax.xla import compile_split  # noqa: E402

EPSILON = 1e-5
RESULTS = Path(__file__).resolve().parents[1] / "results" / "bench"


def _conv(x, kernel, stride, padding, groups=1):
    return lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                    feature_group_count=groups)


def _batch_norm(z, p):
    """nn.BatchNorm in eval mode, as flax computes it."""
    multiplier = p["scale"] * lax.rsqrt(p["var"] + EPSILON)
    return (z - p["mean"].reshape(1, 1, 1, -1)) * multiplier.reshape(1, 1, 1, -1) + (
        p["bias"].reshape(1, 1, 1, -1))


def _folded_conv(x, p, stride, padding):
    kernel, bias = kernels.fold_batch_norm(p["kernel"], p["scale"], p["bias"], p["mean"],
                                           p["var"], EPSILON)
    return kernels.conv_fast(x, kernel, stride, padding) + bias.reshape(1, 1, 1, -1)


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer class at one shape: plain(p, x) and fast(p, x) (None: no fast form)."""

    name: str
    model: str
    input_shape: tuple[int, int, int]  # h, w, c
    params: dict[str, tuple[int, ...]]
    plain: Callable
    fast: Callable | None


def _conv_bn(name, model, size, c_in, c_out, k, stride, padding, relu=False):
    def plain(p, x):
        z = _batch_norm(_conv(x, p["kernel"], stride, padding), p)
        return nn.relu(z) if relu else z

    def fast(p, x):
        z = _folded_conv(x, p, stride, padding)
        return nn.relu(z) if relu else z

    params = {"kernel": (k, k, c_in, c_out), **{n: (c_out,) for n in
                                                 ("scale", "bias", "mean", "var")}}
    return Layer(name, model, (size, size, c_in), params, plain, fast)


def _separable(name, size, c_in, c_out):
    def plain(p, x):
        x = _conv(x, p["depthwise"], 1, ((1, 1), (1, 1)), groups=c_in)
        return _batch_norm(_conv(x, p["kernel"], 1, ((0, 0), (0, 0))), p)

    def fast(p, x):
        return _folded_conv(kernels.depthwise_conv(x, p["depthwise"], ((1, 1), (1, 1))),
                            p, 1, ((0, 0), (0, 0)))

    params = {"depthwise": (3, 3, 1, c_in), "kernel": (1, 1, c_in, c_out),
              **{n: (c_out,) for n in ("scale", "bias", "mean", "var")}}
    return Layer(name, "xception", (size, size, c_in), params, plain, fast)


def _max_pool(name, model, size, c, padding):
    return Layer(name, model, (size, size, c), {},
                 lambda p, x: nn.max_pool(x, (3, 3), strides=(2, 2), padding=padding),
                 lambda p, x: kernels.max_pool_3x3_stride2(x, padding))


def layers(size: int) -> list[Layer]:
    """The layer classes of resnet18/50 and xception at input size `size`."""
    same, one, none = ((1, 1), (1, 1)), ((0, 1), (0, 1)), ((0, 0), (0, 0))
    s2, s4, s8, s16, s32 = (size // d for d in (2, 4, 8, 16, 32))
    bn = {n: (64,) for n in ("scale", "bias", "mean", "var")}
    return [
        _conv_bn("conv7x7/2 3->64 +BN+ReLU (stem)", "resnet", size, 3, 64, 7, 2,
                 ((3, 3), (3, 3)), relu=True),
        _max_pool("maxpool3x3/2 pad1 64", "resnet", s2, 64, same),
        Layer("BatchNorm eval 64 (alone)", "resnet", (s4, s4, 64), bn,
              lambda p, x: _batch_norm(x, p), None),
        _conv_bn("conv3x3/1 64->64 +BN", "resnet", s4, 64, 64, 3, 1, same),
        _conv_bn("conv3x3/2 64->128 +BN", "resnet", s4, 64, 128, 3, 2, same),
        _conv_bn("conv3x3/1 128->128 +BN", "resnet", s8, 128, 128, 3, 1, same),
        _conv_bn("conv3x3/1 256->256 +BN", "resnet", s16, 256, 256, 3, 1, same),
        _conv_bn("conv3x3/2 256->512 +BN", "resnet", s16, 256, 512, 3, 2, same),
        _conv_bn("conv3x3/1 512->512 +BN", "resnet", s32, 512, 512, 3, 1, same),
        _conv_bn("conv1x1/2 64->128 +BN", "resnet", s4, 64, 128, 1, 2, none),
        _conv_bn("conv1x1/1 256->64 +BN", "resnet50", s4, 256, 64, 1, 1, none),
        _conv_bn("conv1x1/1 64->256 +BN", "resnet50", s4, 64, 256, 1, 1, none),
        _conv_bn("conv1x1/1 1024->256 +BN", "resnet50", s16, 1024, 256, 1, 1, none),
        _conv_bn("conv1x1/1 512->2048 +BN", "resnet50", s32, 512, 2048, 1, 1, none),
        Layer("global avg pool 512", "resnet", (s32, s32, 512), {},
              lambda p, x: jnp.mean(x, axis=(1, 2)), None),
        _conv_bn("conv3x3/2 SAME 3->32 +BN+ReLU", "xception", size, 3, 32, 3, 2, one,
                 relu=True),
        _conv_bn("conv3x3/1 32->64 +BN+ReLU", "xception", s2, 32, 64, 3, 1, same, relu=True),
        _separable("sepconv 64->128 +BN", s2, 64, 128),
        _max_pool("maxpool3x3/2 SAME 128", "xception", s2, 128, one),
        _separable("sepconv 728->728 +BN", s16, 728, 728),
        _separable("sepconv 1536->2048 +BN", s32, 1536, 2048),
    ]


def _vjp(fn):
    def forward_and_input_vjp(p, x, g):
        y, vjp = jax.vjp(lambda a: fn(p, a), x)
        return y, vjp(g)[0]

    return forward_and_input_vjp


def _compile(fn, p, x, g):
    forward = compile_split(lambda x, p: fn(p, x), x, p, batch_argnums=(0,))
    backward = compile_split(lambda x, p, g: _vjp(fn)(p, x, g), x, p, g,
                             batch_argnums=(0, 2))
    return ((lambda: forward(x, p)), (lambda: backward(x, p, g)),
            cost_flops(forward), cost_flops(backward))


def measure(layer: Layer, batch: int, rounds: int) -> dict:
    keys = iter(jax.random.split(jax.random.key(0), 16))
    p = {n: jax.random.normal(next(keys), s) * (0.05 if n in ("kernel", "depthwise") else 1)
         for n, s in layer.params.items()}
    if "var" in p:
        p["var"] = jnp.abs(p["var"]) + 0.5
    x = jax.random.normal(next(keys), (batch, *layer.input_shape))
    y = jax.eval_shape(lambda: layer.plain(p, x))
    g = jax.random.normal(next(keys), y.shape)
    variants = {"plain": layer.plain, **({"fast": layer.fast} if layer.fast else {})}
    runs = {}
    for variant, fn in variants.items():
        forward, backward, flops_f, flops_b = _compile(fn, p, x, g)
        runs[variant] = {"forward": forward, "vjp": backward}
        if variant == "plain":
            flops = {"forward": flops_f, "vjp": flops_b}
    times = {(v, k): [] for v in runs for k in ("forward", "vjp")}
    for _ in range(rounds + 1):  # the first round warms up
        for (variant, kind), samples in times.items():
            start = time.perf_counter()
            jax.block_until_ready(runs[variant][kind]())
            samples.append(time.perf_counter() - start)
    row = {"layer": layer.name, "model": layer.model, "input": list(layer.input_shape),
           "batch": batch, "gflop": {k: v / 1e9 for k, v in flops.items()}}
    for (variant, kind), samples in times.items():
        samples = samples[1:]
        median = statistics.median(samples)
        row[f"{variant}_{kind}_ms"] = {"median": 1e3 * median, "min": 1e3 * min(samples),
                                       "max": 1e3 * max(samples)}
        row[f"{variant}_{kind}_gflops"] = flops[kind] / 1e9 / median if median else None
    return row


def pgd_throughput(model_name: str, size: int, batch: int, rounds: int) -> dict:
    """PGD-10 img/s of `model_name`, plain and fast layers, same weights, interleaved."""
    import numpy as np

    from dfjax.attacks import pgd
    from dfjax.models import MODELS, make_logits_fn

    x = jnp.asarray(np.random.default_rng(0).random((batch, size, size, 3), np.float32))
    y = jnp.asarray(np.arange(batch) % 2, jnp.int32)
    plain = MODELS.get(model_name).module(fast=False)
    variables = plain.init(jax.random.key(0), x[:1], train=False)
    args = (variables, x, y, jax.random.key(1), jnp.float32(8 / 255))
    runs, compile_s = {}, {}
    for variant, model in (("plain", plain), ("fast", MODELS.get(model_name).module())):
        def attack(variables, x, y, key, eps, model=model):
            return pgd(make_logits_fn(model, variables), x, y, key, eps=eps,
                       step_size=eps / 4, num_steps=10)

        start = time.perf_counter()
        compiled = compile_split(attack, *args)
        compile_s[variant] = time.perf_counter() - start
        runs[variant] = (compiled, compiled.place(*args))
    samples = {v: [] for v in runs}
    for _ in range(rounds):
        for variant, (compiled, placed) in runs.items():
            start = time.perf_counter()
            jax.block_until_ready(compiled.compiled(*placed))
            samples[variant].append(time.perf_counter() - start)
    row = {"model": model_name, "size": size, "batch": batch, "attack": "pgd-10",
           "compile_s": compile_s}
    for variant, times in samples.items():
        row[f"{variant}_img_per_s"] = {"median": batch / statistics.median(times),
                                       "best": batch / min(times), "seconds": times}
    return row


def _format(row: dict, size: int) -> str:
    def cell(variant, kind):
        ms = row.get(f"{variant}_{kind}_ms")
        if ms is None:
            return f"{'-':>16}"
        rate = row[f"{variant}_{kind}_gflops"]
        return f"{ms['median']:8.2f} {rate:6.1f}G" if rate else f"{ms['median']:8.2f}   ----"

    return (f"{size:4d} {row['layer']:36s} {cell('plain', 'forward')} {cell('fast', 'forward')}"
            f" {cell('plain', 'vjp')} {cell('fast', 'vjp')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default=None, help="layers whose name contains this")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--pgd", nargs="+", default=None, metavar="MODEL",
                        help="PGD-10 throughput of these models instead of the layer table")
    args = parser.parse_args()
    if args.pgd:
        load, rows = [os.getloadavg()], []
        for name in args.pgd:
            for size in args.sizes:
                rows.append(pgd_throughput(name, size, args.batch, args.rounds))
                plain, fast = rows[-1]["plain_img_per_s"], rows[-1]["fast_img_per_s"]
                print(f"{name} {size}x{size} b{args.batch} PGD-10 img/s: plain "
                      f"{plain['median']:.2f} (best {plain['best']:.2f}), fast "
                      f"{fast['median']:.2f} (best {fast['best']:.2f}); "
                      f"loadavg {os.getloadavg()}", flush=True)
        load.append(os.getloadavg())
        out = args.out or RESULTS / f"pgd-zoo-{'-'.join(args.pgd)}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"loadavg_start_end": load, "cpu_count": os.cpu_count(),
                                   "jax": jax.__version__, "rows": rows}, indent=1))
        print(f"wrote {out}")
        return
    print(f"batch {args.batch}, {len(jax.devices())} CPU devices; ms (median) and GFLOP/s of "
          "the plain layer's FLOPs")
    print(f"size {'layer':36s} {'plain fwd':>16} {'fast fwd':>16} {'plain fwd+vjp':>16} "
          f"{'fast fwd+vjp':>16}")
    rows, load = [], [os.getloadavg()]
    for size in args.sizes:
        for layer in layers(size):
            if args.only and args.only not in layer.name:
                continue
            row = measure(layer, args.batch, args.rounds)
            row["size"] = size
            rows.append(row)
            print(_format(row, size), flush=True)
    load.append(os.getloadavg())
    out = args.out or RESULTS / f"layers-{'-'.join(map(str, args.sizes))}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                               "cpu_count": os.cpu_count(), "loadavg_start_end": load,
                               "jax": jax.__version__, "devices": len(jax.devices()),
                               "rows": rows}, indent=1))
    print(f"loadavg start {load[0]}, end {load[1]}; wrote {out}")


if __name__ == "__main__":
    main()
