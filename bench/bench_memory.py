"""Peak memory of one attack cell against its batch size, each in a fresh process.

Not a test: run `python bench/bench_memory.py` (a minute or two). For each batch size it
starts a new Python process that builds the model (random weights), compiles the attack
through the runner's path (`dfjax.attacks.evaluate.evaluate_attack`, no memory limit)
and attacks one batch of random images; the parent reads that process's peak resident
memory (`ru_maxrss`, from os.wait4) and prints a Markdown table: the peak, the peak
before the attack (imports, JAX, the model), what the attack added, and what XLA's
memory analysis planned for the compiled attack (`dfjax.xla.compiled_memory_bytes`, the
figure the runner compares with the available memory before it runs a batch).

    python bench/bench_memory.py --model cnn7 --size 64 --steps 10 --batches 32 64 128 256
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

MIB = 2**20


def measure_one(model_name: str, size: int, steps: int, batch: int) -> dict:
    """In this (fresh) process: attack one batch as the runner does; what it used."""
    import time

    from dfjax.xla import use_cpu_cores

    devices = use_cpu_cores()
    import jax
    import numpy as np

    from dfjax.attacks.evaluate import AttackEvaluator, evaluate_attack
    from dfjax.config import AttackSpec, DefenceSpec, ModelSpec
    from dfjax.defences import defended_logits
    from dfjax.models import build_model
    from dfjax.xla import compiled_memory_bytes

    model = build_model(ModelSpec(name=model_name))
    rng = np.random.default_rng(0)
    images = rng.random((batch, size, size, 3), dtype=np.float32)
    labels = (np.arange(batch) % 2).astype(np.int32)
    variables = model.init(jax.random.key(0), images[:1], train=False)
    jax.block_until_ready(variables)
    before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    spec = AttackSpec(name="pgd", eps=8 / 255, options={"num_steps": steps})
    logits_of = defended_logits(model, DefenceSpec())
    evaluator = AttackEvaluator(memory_limit_bytes=2**62)  # measure, never split
    start = time.perf_counter()
    result = evaluate_attack(spec, logits_of, model_name, variables, images, labels,
                             jax.random.key(1), evaluator, batch)
    seconds = time.perf_counter() - start
    compiled, _ = evaluator.get(spec, logits_of, model_name, variables, images, labels,
                                jax.random.key(1))  # the cached executable
    return {"batch": batch, "devices": devices, "before_mib": before_kib / 1024,
            "xla_planned_mib": compiled_memory_bytes(compiled) / MIB,
            "compile_s": result.compile_seconds, "attack_s": result.attack_seconds,
            "wall_s": seconds}


def run_child(args: argparse.Namespace, batch: int) -> dict:
    """measure_one in a new process; adds its peak RSS (ru_maxrss of that process)."""
    command = [sys.executable, __file__, "--child", "--model", args.model, "--size",
               str(args.size), "--steps", str(args.steps), "--batches", str(batch)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    output = child.stdout.read()
    child.stdout.close()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"batch {batch}: the measuring process exited with "
                           f"{child.returncode}")
    record = json.loads(output.strip().splitlines()[-1])
    record["peak_mib"] = usage.ru_maxrss / 1024  # Linux: KiB
    record["attack_added_mib"] = record["peak_mib"] - record["before_mib"]
    return record


def markdown(records: list[dict], args: argparse.Namespace) -> str:
    lines = [f"{args.model} {args.size}x{args.size}, PGD-{args.steps}, one batch per fresh "
             f"process ({records[0]['devices']} JAX CPU devices); MiB",
             "",
             "| batch | peak RSS | before attack | attack added | XLA planned | added / planned "
             "| compile s | attack s |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        lines.append(f"| {r['batch']} | {r['peak_mib']:.0f} | {r['before_mib']:.0f} | "
                     f"{r['attack_added_mib']:.0f} | {r['xla_planned_mib']:.1f} | "
                     f"{r['attack_added_mib'] / r['xla_planned_mib']:.2f} | "
                     f"{r['compile_s']:.1f} | {r['attack_s']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cnn7")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--json", type=Path, default=None, help="also write the records here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_one(args.model, args.size, args.steps, args.batches[0])))
        return
    records = [run_child(args, batch) for batch in args.batches]
    print(markdown(records, args))
    if args.json:
        args.json.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                         "records": records}, indent=2))


if __name__ == "__main__":
    main()
