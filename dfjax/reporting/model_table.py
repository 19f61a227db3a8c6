"""The model zoo at a glance: parameters, FLOPs, forward and input-gradient time.

FLOPs per image come from XLA's own count, `jax.jit(f).lower(x).compile()
.cost_analysis()["flops"]` of the eval-mode forward pass, divided by the batch
(XLA counts a multiply-add as 2 FLOPs), of the model's plain layers (`fast=False`
where a model has fast layers, whose space-to-depth convs execute more FLOPs for the
same function: the table counts the function's FLOPs, not the implementation's). Times
are medians over `runs` calls after a warm-up call, per image, on whatever machine runs
this.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dfjax.config import ModelSpec
from dfjax.losses import cross_entropy
from dfjax.models import build_model, count_parameters
from dfjax.training.loop import create_variables
from dfjax.xla import jit as dfjax_jit


def _median_seconds(fn, *args, runs: int) -> float:
    jax.block_until_ready(fn(*args))  # warm-up (compiles)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def model_stats(name: str, image_size: int, batch: int = 64, *, runs: int = 3,
                num_logits: int = 2) -> dict[str, float]:
    """{'params', 'flops_per_image', 'forward_ms_per_image', 'grad_ms_per_image'} of
    MODELS[name] on float32 [batch, image_size, image_size, 3] inputs."""
    model = build_model(ModelSpec(name=name, num_logits=num_logits))
    x = jnp.full((batch, image_size, image_size, 3), 0.5, jnp.float32)
    y = jnp.zeros((batch,), jnp.int32)
    variables = create_variables(model, x.shape[1:], jax.random.key(0))
    params = count_parameters(variables)
    forward = dfjax_jit(lambda v, x: model.apply(v, x, train=False))
    plain = model.clone(fast=False) if hasattr(model, "fast") else model
    cost = dfjax_jit(lambda v, x: plain.apply(v, x, train=False)).lower(
        variables, x).compile().cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jax returns one dict per device
        cost = cost[0]
    flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
    input_grad = dfjax_jit(jax.grad(
        lambda x, v: cross_entropy(model.apply(v, x, train=False), y).sum()))
    return {
        "params": params,
        "flops_per_image": flops / batch,
        "forward_ms_per_image": 1e3 * _median_seconds(forward, variables, x, runs=runs) / batch,
        "grad_ms_per_image": 1e3 * _median_seconds(input_grad, x, variables, runs=runs) / batch,
    }


def model_table_markdown(names: Sequence[str], image_size: int, batch: int = 64, *,
                         runs: int = 3) -> str:
    """A Markdown table, one row per model name (see module docstring for the method)."""
    lines = [
        (f"Models at {image_size}x{image_size}, batch {batch}; FLOPs from XLA's cost analysis "
         f"of the jitted forward pass; times are medians of {runs} runs after warm-up."),
        "",
        "| model | parameters | MFLOPs / image | forward ms / image | input-gradient ms / image |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in names:
        s = model_stats(name, image_size, batch, runs=runs)
        lines.append(f"| {name} | {s['params']:,} | {s['flops_per_image'] / 1e6:.2f} | "
                     f"{s['forward_ms_per_image']:.3f} | {s['grad_ms_per_image']:.3f} |")
    return "\n".join(lines) + "\n"
