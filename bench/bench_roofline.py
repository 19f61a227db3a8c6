"""Roofline per layer class for zoo models (dfjax/roofline.py), as attacks run them.

    python bench/bench_roofline.py [--models cnn7 meso4 ...] [--size 128] [--batch 64]
        [--rounds 5] [--variants fast plain] [--pgd-rounds 0] [--limit-rounds 7]
        [--out PATH]

For each model and variant ("fast": the model as attacks run it, eval mode with its
fast layers where it has them; "plain": dfjax.benchmarks.plain_model) it times every
layer's forward + input VJP and the whole attack step, and compares each with its
roofline bound under the GEMM rate and memory bandwidth measured in the same process.
With --pgd-rounds N it also times PGD-10 (eps 8/255, batch split across the CPU
devices as the runner does) of both variants, interleaved, N rounds each.
Writes results/bench/roofline-<models>.json (or --out) and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

DEFAULT_MODELS = ("cnn7", "meso4", "cnn6", "mesoinception4", "gan_disc")
EPS = 8 / 255


def _setup(name: str, size: int, batch: int, variant: str):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from dfjax.benchmarks import plain_model
    from dfjax.config import ModelSpec
    from dfjax.models import build_model

    model = build_model(ModelSpec(name=name))
    model = plain_model(model) if variant == "plain" else model
    x = jnp.asarray(np.random.default_rng(0).random((batch, size, size, 3), np.float32))
    y = jnp.asarray(np.arange(batch) % 2, jnp.int32)
    variables = plain_model(model).init(jax.random.key(0), x[:1], train=False)
    return model, variables, x, y


def _pgd_rates(name: str, size: int, batch: int, rounds: int) -> dict[str, dict]:
    """PGD-10 images/s of the fast and plain variants, timed interleaved."""
    import jax
    import numpy as np

    from dfjax.attacks import ATTACKS
    from dfjax.config import AttackSpec
    from dfjax.models import make_logits_fn
    from dfjax.xla import compile_split

    attack = ATTACKS.get("pgd").bind(AttackSpec(name="pgd", eps=EPS,
                                                options={"num_steps": 10}))
    runs = {}
    for variant in ("fast", "plain"):
        model, variables, x, y = _setup(name, size, batch, variant)

        def fn(variables, x, y, key, eps, model=model):
            return attack(make_logits_fn(model, variables), x, y, key, eps)

        args = (variables, x, y, jax.random.key(1), np.float32(EPS))
        start = time.perf_counter()
        compiled = compile_split(fn, *args)
        compile_s = time.perf_counter() - start
        placed = compiled.place(*args)
        jax.block_until_ready(compiled(*placed))
        runs[variant] = (compiled, placed, compile_s, [])
    for _ in range(rounds):
        for compiled, placed, _, times in runs.values():
            start = time.perf_counter()
            jax.block_until_ready(compiled(*placed))
            times.append(time.perf_counter() - start)
    return {variant: {"median_s": float(np.median(t)), "min_s": min(t), "max_s": max(t),
                      "images_per_second": batch / float(np.median(t)),
                      "compile_s": compile_s, "rounds": rounds}
            for variant, (_, _, compile_s, t) in runs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--variants", nargs="+", default=["fast", "plain"],
                        choices=["fast", "plain"])
    parser.add_argument("--pgd-rounds", type=int, default=0)
    parser.add_argument("--limit-rounds", type=int, default=7,
                        help="rounds of the GEMM and bandwidth measurements")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    from dfjax.xla import use_cpu_cores

    use_cpu_cores()
    import jax

    from dfjax.roofline import markdown_table, measure_limits, profile_model

    limits, raw = measure_limits(gemm_rounds=args.limit_rounds,
                                 bandwidth_rounds=args.limit_rounds)
    print(f"GEMM {limits.gemm_flops_per_second / 1e9:.1f} GFLOP/s, bandwidth "
          f"{limits.bandwidth_bytes_per_second / 1e9:.1f} GB/s, balance "
          f"{limits.balance:.1f} flop/byte, loadavg {raw['loadavg_before']}")
    records = []
    for name in args.models:
        for variant in args.variants:
            start = time.perf_counter()
            model, variables, x, y = _setup(name, args.size, args.batch, variant)
            if variant == "plain" and "fast" in args.variants and not hasattr(model, "fast"):
                continue  # no fast layers: the fast record is the plain one
            record = profile_model(model, variables, x, y, limits=limits, rounds=args.rounds)
            record.update(model=name, variant=variant, size=args.size, batch=args.batch,
                          seconds=time.perf_counter() - start, loadavg=os.getloadavg())
            records.append(record)
            print(markdown_table(record, title=f"{name} ({variant}), {args.size}x{args.size}, "
                                               f"batch {args.batch}"))
            sys.stdout.flush()
    pgd = {}
    if args.pgd_rounds:
        for name in args.models:
            pgd[name] = _pgd_rates(name, args.size, args.batch, args.pgd_rounds)
            pgd[name]["loadavg"] = os.getloadavg()
            print(f"PGD-10 {name}: fast {pgd[name]['fast']['images_per_second']:.1f} img/s, "
                  f"plain {pgd[name]['plain']['images_per_second']:.1f} img/s, "
                  f"loadavg {pgd[name]['loadavg']}")
    out = args.out or Path("results/bench") / f"roofline-{'-'.join(args.models)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"gemm_flops_per_second": limits.gemm_flops_per_second,
               "bandwidth_bytes_per_second": limits.bandwidth_bytes_per_second,
               "balance_flops_per_byte": limits.balance, **raw,
               "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "jax": jax.__version__, "devices": len(jax.devices()),
               "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")}
    out.write_text(json.dumps({"machine": machine, "size": args.size, "batch": args.batch,
                               "records": records, "pgd10": pgd,
                               "loadavg_end": os.getloadavg()}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
