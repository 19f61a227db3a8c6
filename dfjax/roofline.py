"""A roofline per layer class: how close each part of an attack step runs to the limit
that applies to it, the GEMM rate or the memory bandwidth.

A layer's roofline bound is max(flops / GEMM rate, bytes / bandwidth) (Williams et al.
2009, "Roofline: an insightful visual performance model"); it is compute-bound when its
arithmetic intensity (flops per byte) exceeds the machine balance (GEMM rate /
bandwidth), memory-bound otherwise. Its share of the bound is bound / measured time
(1 = at the limit). Flops and bytes are XLA's cost analysis of the compiled program.

The machine limits are measured in-process: the GEMM rate by
`dfjax.benchmarks.calibration_seconds`, the bandwidth by a streaming `a * s + b` over
arrays far larger than the caches (`measure_bandwidth`).

Layers are read off the model's jaxpr (`split_layers`): contiguous equations of one
Flax module (its name scope) form a layer, classified by what they execute (a conv by
kernel, stride, dilation, grouping and input width; dense; pool; batchnorm;
elementwise); equations of a non-leaf scope (activations and pools between modules)
split into pool and elementwise runs. Equations that depend on the weights only
(BatchNorm's scale, a space-to-depth kernel) are computed once beforehand, as an attack
loop hoists them. Each layer is timed as the work of one attack step: its forward and
its input VJP (`profile_model`); the whole step (forward + input gradient of the
cross-entropy, one program) is timed beside the sum of its layers, so fusion shows.

Example:
    limits = measure_limits()
    record = profile_model(model, variables, x, y, limits=limits)
    print(markdown_table(record))
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np

from dfjax.xla import jit as dfjax_jit

SMALL_CHANNELS = 16  # a conv with fewer input channels runs on narrow GEMMs
LAYOUT_PRIMITIVES = frozenset({
    "reshape", "transpose", "broadcast_in_dim", "squeeze", "expand_dims", "concatenate",
    "pad", "slice", "dynamic_slice", "convert_element_type", "copy", "copy_p", "rev"})
REDUCTION_PRIMITIVES = frozenset({"reduce_max", "reduce_min", "reduce_window_max",
                                  "reduce_window_min", "reduce_window", "reduce"})


@dataclasses.dataclass(frozen=True)
class MachineLimits:
    """The two roofs: GEMM rate (flop/s) and memory bandwidth (byte/s)."""

    gemm_flops_per_second: float
    bandwidth_bytes_per_second: float

    @property
    def balance(self) -> float:
        """Machine balance, flops per byte: above it a program is compute-bound."""
        return self.gemm_flops_per_second / self.bandwidth_bytes_per_second


def measure_bandwidth(*, mebibytes: int = 256, rounds: int = 7) -> dict[str, float]:
    """Median/min/max seconds of a jitted `a * s + b` over two float32 arrays of
    `mebibytes` each (far larger than the caches), and its bandwidth in bytes/s counting
    two reads and one write per element. `a` is donated and replaced by the result, so
    no call pays for fresh pages (which would halve the figure)."""
    n = mebibytes * 2**20 // 4
    a = jnp.ones((n,), jnp.float32)
    b = jnp.ones((n,), jnp.float32)
    stream = dfjax_jit(lambda a, b, s: a * s + b, donate_argnums=0)
    s = jnp.float32(0.5)  # a converges to 2: no denormals, no overflow
    a = stream(a, b, s).block_until_ready()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        a = stream(a, b, s).block_until_ready()
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    return {"median": median, "min": float(min(times)), "max": float(max(times)),
            "bytes": 3.0 * 4 * n, "bytes_per_second": 3.0 * 4 * n / median}


def measure_limits(*, gemm_rounds: int = 7, bandwidth_rounds: int = 7
                   ) -> tuple[MachineLimits, dict[str, Any]]:
    """(MachineLimits measured now, the raw measurements with the load average)."""
    from dfjax.benchmarks import calibration_seconds

    load_before = os.getloadavg()
    gemm = calibration_seconds(rounds=gemm_rounds)
    bandwidth = measure_bandwidth(rounds=bandwidth_rounds)
    limits = MachineLimits(gemm["gflops"] * 1e9, bandwidth["bytes_per_second"])
    return limits, {"gemm": gemm, "bandwidth": bandwidth, "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg()}


def cost_of(compiled: Any) -> tuple[float, float]:
    """(flops, bytes accessed) of a compiled executable, from XLA's cost analysis."""
    cost = compiled.cost_analysis() or {}
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0))


def bound(flops: float, bytes_accessed: float, limits: MachineLimits) -> dict[str, Any]:
    """The roofline of one program: compute and memory times (s), the bound (their max),
    which roof applies ("compute" or "memory") and the arithmetic intensity (flop/byte)."""
    compute = flops / limits.gemm_flops_per_second
    memory = bytes_accessed / limits.bandwidth_bytes_per_second
    return {"compute_s": compute, "memory_s": memory, "bound_s": max(compute, memory),
            "bound": "compute" if compute >= memory else "memory",
            "intensity": flops / bytes_accessed if bytes_accessed else float("inf")}


# ---------------------------------------------------------------- splitting a jaxpr


def _primitives(eqn: Any) -> set[str]:
    """Names of the primitives an equation executes, looking inside its sub-jaxprs
    (jit, custom_vjp_call, custom_jvp_call)."""
    names = {eqn.primitive.name}
    for sub in jcore.jaxprs_in_params(eqn.params):
        for inner in sub.eqns:
            names |= _primitives(inner)
    return names


def _convs(eqn: Any) -> list[Any]:
    """The conv_general_dilated equations inside eqn (itself included)."""
    if eqn.primitive.name == "conv_general_dilated":
        return [eqn]
    return [c for sub in jcore.jaxprs_in_params(eqn.params) for inner in sub.eqns
            for c in _convs(inner)]


def conv_class(eqn: Any) -> str:
    """'conv{kh}x{kw}/s{stride}[/d{dilation}][ depthwise|grouped] c_in<16|c_in>=16' for
    a conv_general_dilated equation (dimension numbers as dfjax's models use them)."""
    params = eqn.params
    lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
    spec = params["dimension_numbers"]
    kh, kw = (rhs[i] for i in spec.rhs_spec[2:])
    c_in = lhs[spec.lhs_spec[1]]
    stride = params["window_strides"][0]
    dilation = params["rhs_dilation"][0]
    groups = params["feature_group_count"]
    name = f"conv{kh}x{kw}/s{stride}" + (f"/d{dilation}" if dilation > 1 else "")
    if groups > 1:
        name += " depthwise" if groups == c_in else " grouped"
    return name + (" c_in<16" if c_in < SMALL_CHANNELS else " c_in>=16")


def _kind(eqn: Any) -> str:
    """conv / dense / pool / layout / elementwise for one equation."""
    names = _primitives(eqn)
    if "conv_general_dilated" in names:
        return "conv"
    if "dot_general" in names:
        return "dense"
    if names & REDUCTION_PRIMITIVES:
        return "pool"
    if names <= LAYOUT_PRIMITIVES | {"jit", "pjit"}:
        return "layout"
    return "elementwise"


@dataclasses.dataclass
class Layer:
    """A run of a model's x-dependent jaxpr equations computed as one layer."""

    scope: str
    layer_class: str
    eqns: list[Any]


def _scope(eqn: Any) -> str:
    return str(eqn.source_info.name_stack)


def _classify(scope: str, eqns: Sequence[Any], leaf: bool) -> str:
    kinds = [_kind(e) for e in eqns]
    if "conv" in kinds:
        return conv_class(_convs(eqns[kinds.index("conv")])[0])
    if "dense" in kinds:
        return "dense"
    if leaf and "BatchNorm" in scope.rsplit("/", 1)[-1]:
        return "batchnorm"
    if "pool" in kinds:
        return "pool"
    return "elementwise" if "elementwise" in kinds else "layout"


def _x_dependent(jaxpr: Any) -> list[bool]:
    """Which equations depend on the jaxpr's (non-constant) inputs."""
    tainted = set(jaxpr.invars)
    flags = []
    for eqn in jaxpr.eqns:
        hit = any(isinstance(v, jcore.Var) and v in tainted for v in eqn.invars)
        if hit:
            tainted.update(eqn.outvars)
        flags.append(hit)
    return flags


def split_layers(jaxpr: Any) -> tuple[list[Layer], list[Any]]:
    """(layers, weight-only equations) of a model's jaxpr (from jax.make_jaxpr of x ->
    logits with the weights closed over). A layer is a maximal run of x-dependent
    equations of one name scope; the runs of a scope that holds other modules (an
    activation, a pool or a residual add between modules) are split where pool and
    elementwise work alternate (layout equations join the run they are in)."""
    flags = _x_dependent(jaxpr)
    scopes = [_scope(e) for e, f in zip(jaxpr.eqns, flags) if f]
    parents = {s.rsplit("/", 1)[0] for s in scopes if "/" in s}
    runs: list[tuple[str, list[Any]]] = []
    for eqn, dependent in zip(jaxpr.eqns, flags):
        if not dependent:
            continue
        scope = _scope(eqn)
        if runs and runs[-1][0] == scope:
            kind = _kind(eqn)
            previous = {_kind(e) for e in runs[-1][1]} - {"layout"}
            splits = scope in parents and kind in ("pool", "elementwise") and previous and (
                kind not in previous)
            if not splits:
                runs[-1][1].append(eqn)
                continue
        runs.append((scope, [eqn]))
    layers = [Layer(scope, _classify(scope, eqns, scope not in parents), eqns)
              for scope, eqns in runs]
    weight_only = [e for e, f in zip(jaxpr.eqns, flags) if not f]
    return layers, weight_only


def _evaluate(eqns: Sequence[Any], env: dict) -> None:
    """Run equations, reading and writing variables in env (jax.core.eval_jaxpr's loop)."""
    for eqn in eqns:
        values = [v.val if isinstance(v, jcore.Literal) else env[v] for v in eqn.invars]
        with eqn.ctx.manager:
            outs = eqn.primitive.bind(*values, **eqn.primitive.get_bind_params(eqn.params))
        outs = outs if eqn.primitive.multiple_results else [outs]
        for var, value in zip(eqn.outvars, outs):
            if not isinstance(var, jcore.DropVar):
                env[var] = value


def _boundary(eqns: Sequence[Any], later: Sequence[Any], final: Sequence[Any]
              ) -> tuple[list[Any], list[Any]]:
    """(variables read by eqns but defined before them, variables they define that are
    read later or are final outputs)."""
    defined = {v for e in eqns for v in e.outvars}
    inputs: list[Any] = []
    for e in eqns:
        for v in e.invars:
            if isinstance(v, jcore.Var) and v not in defined and v not in inputs:
                inputs.append(v)
    used = {v for e in later for v in e.invars if isinstance(v, jcore.Var)} | set(final)
    return inputs, [v for e in eqns for v in e.outvars if v in used]


# ---------------------------------------------------------------- timing


def _is_float(v: Any) -> bool:
    return jnp.issubdtype(v.aval.dtype, jnp.floating)


def time_compiled(fn: Callable, args: tuple, *, rounds: int) -> dict[str, float]:
    """Median/min/max seconds of a compiled function (one warm-up call first)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return {"median": float(np.median(times)), "min": float(min(times)),
            "max": float(max(times))}


def _layer_program(eqns, inputs, outputs, consts: dict) -> tuple[Callable, tuple]:
    """(fn, args): fn(constants, activations, cotangents) -> (outputs, input VJP), the
    forward and input gradient one attack step computes for these equations."""
    const_vars = [v for v in inputs if v in consts]
    act_vars = [v for v in inputs if v not in consts]
    diff = [_is_float(v) for v in act_vars]

    def forward(const_values, act_values):
        env = dict(zip(const_vars, const_values)) | dict(zip(act_vars, act_values))
        _evaluate(eqns, env)
        return [env[v] for v in outputs]

    def program(const_values, act_values, cotangents):
        diff_values = [a for a, d in zip(act_values, diff) if d]

        def of_diff(*values):
            it = iter(values)
            full = [next(it) if d else a for a, d in zip(act_values, diff)]
            return forward(const_values, full)

        outs, vjp = jax.vjp(of_diff, *diff_values)
        cot = [c if c is not None else jnp.zeros_like(o) for c, o in zip(cotangents, outs)]
        return outs, vjp(cot)

    keys = iter(jax.random.split(jax.random.key(0), len(act_vars) + len(outputs) + 1))
    acts = [jax.random.normal(next(keys), v.aval.shape, v.aval.dtype) if _is_float(v)
            else jnp.zeros(v.aval.shape, v.aval.dtype) for v in act_vars]
    cots = [jax.random.normal(next(keys), v.aval.shape, v.aval.dtype) if _is_float(v)
            else None for v in outputs]
    return program, ([consts[v] for v in const_vars], acts, cots)


def _record(compiled, args, limits, rounds) -> dict[str, Any]:
    flops, bytes_accessed = cost_of(compiled)
    timing = time_compiled(compiled, args, rounds=rounds)
    roof = bound(flops, bytes_accessed, limits)
    return {"flops": flops, "bytes": bytes_accessed, "measured_s": timing["median"],
            "measured_min_s": timing["min"], "measured_max_s": timing["max"], **roof,
            "share": roof["bound_s"] / timing["median"]}


def _aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Sums over layers; share = sum of bounds / sum of measured times."""
    measured = sum(r["measured_s"] for r in rows)
    bound_s = sum(r["bound_s"] for r in rows)
    compute_bound = sum(r["bound_s"] for r in rows if r["bound"] == "compute")
    return {"layers": len(rows), "flops": sum(r["flops"] for r in rows),
            "bytes": sum(r["bytes"] for r in rows), "measured_s": measured,
            "bound_s": bound_s, "share": bound_s / measured if measured else 0.0,
            "compute_bound_fraction": compute_bound / bound_s if bound_s else 0.0,
            "bound": "compute" if 2 * compute_bound >= bound_s else "memory"}


def profile_model(model: Any, variables: Any, x: jax.Array, y: jax.Array, *,
                  limits: MachineLimits, rounds: int = 5,
                  loss: Callable | None = None) -> dict[str, Any]:
    """The roofline record of one model at one input shape.

    x float32 [b, h, w, c] in [0, 1], y int32 [b]. Returns {"layers": one row per layer
    (scope, class, shapes, flops, bytes, measured and bound seconds, bound, share),
    "classes": sums per layer class, "total": the sum over layers, "step": the whole
    attack step (forward + input gradient of `loss`, default dfjax.losses.cross_entropy,
    summed) compiled as one program, with "layers_over_step" = sum of layer times /
    step time}. Eval mode (train=False), as attacks run the model.
    """
    from dfjax.losses import cross_entropy

    loss = loss or cross_entropy
    closed = jax.make_jaxpr(lambda xa: model.apply(variables, xa, train=False))(x)
    jaxpr = closed.jaxpr
    layers, weight_only = split_layers(jaxpr)
    consts = dict(zip(jaxpr.constvars, closed.consts))
    _evaluate(weight_only, consts)  # hoisted, as in an attack loop

    rows = []
    for i, layer in enumerate(layers):
        inputs, outputs = _boundary(layer.eqns, [e for later in layers[i + 1:]
                                                 for e in later.eqns], jaxpr.outvars)
        program, args = _layer_program(layer.eqns, inputs, outputs, consts)
        compiled = dfjax_jit(program).lower(*args).compile()
        rows.append({"scope": layer.scope, "class": layer.layer_class,
                     "inputs": [list(v.aval.shape) for v in inputs if v not in consts],
                     "outputs": [list(v.aval.shape) for v in outputs],
                     **_record(compiled, args, limits, rounds)})

    x_var = jaxpr.invars[0]
    step_consts = [v for v in jaxpr.constvars] + [v for e in weight_only for v in e.outvars
                                                   if v in consts]
    needed = {v for layer in layers for e in layer.eqns for v in e.invars
              if isinstance(v, jcore.Var)}
    step_consts = [v for v in dict.fromkeys(step_consts) if v in needed]
    x_dependent = [e for layer in layers for e in layer.eqns]

    def step(const_values, xa, ya):
        def total_loss(xb):
            env = dict(zip(step_consts, const_values)) | {x_var: xb}
            _evaluate(x_dependent, env)
            return loss(env[jaxpr.outvars[0]], ya).sum()

        return jax.value_and_grad(total_loss)(xa)

    step_args = ([consts[v] for v in step_consts], x, y)
    compiled = dfjax_jit(step).lower(*step_args).compile()
    step_row = _record(compiled, step_args, limits, rounds)
    classes: dict[str, list] = {}
    for row in rows:
        classes.setdefault(row["class"], []).append(row)
    total = _aggregate(rows)
    step_row["layers_over_step"] = total["measured_s"] / step_row["measured_s"]
    return {"layers": rows, "classes": {k: _aggregate(v) for k, v in sorted(classes.items())},
            "total": total, "step": step_row}


def markdown_table(record: dict[str, Any], *, title: str = "") -> str:
    """Per layer class: layers, GFLOP, MB, measured ms, bound ms, roof, share of the
    bound; then the sum over layers and the whole step (one program)."""
    lines = ([f"**{title}**", ""] if title else []) + [
        "| layer class | layers | GFLOP | MB | measured ms | bound ms | roof | share |",
        "|---|---|---|---|---|---|---|---|"]

    def line(name, r, layers):
        lines.append(f"| {name} | {layers} | {r['flops'] / 1e9:.3g} | {r['bytes'] / 1e6:.3g} "
                     f"| {1e3 * r['measured_s']:.3g} | {1e3 * r['bound_s']:.3g} | "
                     f"{r['bound']} | {100 * r['share']:.1f}% |")

    for name, r in record["classes"].items():
        line(name, r, r["layers"])
    line("**sum of layers**", record["total"], record["total"]["layers"])
    line("**whole step (one program)**", record["step"], "–")
    return "\n".join(lines) + "\n"
