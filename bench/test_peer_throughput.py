"""PGD-10 and FGSM throughput (images/s) of dfjax against PyTorch peers, in one process.

Peers, on the same weights (dfjax.peers.torch_models.from_flax of one Flax init):
  torchattacks  -- torchattacks 3.5.1 as users run it: default torch settings, NCHW,
                   torch.set_num_threads(2);
  torch_tuned   -- the tightest PGD loop we could write by hand: channels_last
                   model and input, no parameter gradients, summed CE, in-place sign
                   step and clamp to precomputed [lo, hi] bounds under no_grad;
  dfjax         -- the jitted attack, compiled once with dfjax.xla's options and
                   its batch split across the CPU devices (one per core), as
                   bench/test_attack_throughput.py and the runner, with
                   `ratio_vs_<peer>` = dfjax img/s / peer img/s and `percent_of_gemm_rate`
                   = FLOPs of the plain-layer model's attack (XLA cost analysis; the fast
                   layers execute ~20% more for cnn7) / median / calibration GEMM rate.
Models: every zoo model. The small detectors (cnn7, meso4, cnn6, mesoinception4,
gan_disc) at 128x128, batch 64, 5 rounds; the ImageNet-style ones (xception, resnet18,
resnet50) at their native 224x224 but batch 32 and 3 rounds: on a 2-core machine one
PGD-10 call of resnet50 at batch 64 takes minutes per implementation and its autograd
activations several GB, so the smaller batch keeps a full run to roughly an hour per
malloc setting and within memory. Each figure records its batch, image size and rounds
in extra_info, and images/s uses that batch. float32, eps 8/255, PGD step 2.5 eps / 10.

`--short` (CI; `dfjax bench compare` relies on its figure names): cnn7 and meso4 only,
every model at 64x64, 3 rounds. `--models cnn7,resnet18` picks the models (also with
--short), so a full run can be split across processes.
glibc malloc settings change PyTorch's CPU speed (docs/peers.md): run this file twice,
with and without GLIBC_TUNABLES; each figure records the setting it ran under.
"""

import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchattacks = pytest.importorskip("torchattacks")

from dfjax.attacks import ATTACKS
from dfjax.benchmarks import cost_flops, plain_model
from dfjax.config import AttackSpec, ModelSpec
from dfjax.models import build_model, make_logits_fn
from dfjax.peers.torch_models import from_flax, nhwc_to_nchw
from dfjax.xla import compile_split
from dfjax.xla import jit as dfjax_jit

EPS = 8 / 255
STEPS = 10
ALPHA = 2.5 * EPS / STEPS
TORCH_THREADS = 2
IMPLEMENTATIONS = {"pgd": ("torchattacks", "torch_tuned", "dfjax"),
                   "fgsm": ("torchattacks", "dfjax")}
SHORT_MODELS = ("cnn7", "meso4")  # --short's subset: keep it (CI's figure names)
SMALL_MODELS = ("cnn7", "meso4", "cnn6", "mesoinception4", "gan_disc")  # 128x128, batch 64
IMAGENET_MODELS = ("xception", "resnet18", "resnet50")  # 224x224, batch 32, fewer rounds
SHORT_SIZE = 64

_RATES: dict[tuple[str, str, str], float] = {}  # (model, attack, impl) -> images/s


def batch_size(model_name: str) -> int:
    return 32 if model_name in IMAGENET_MODELS else 64


def image_size(model_name: str, short: bool) -> int:
    if short:
        return SHORT_SIZE
    return 224 if model_name in IMAGENET_MODELS else 128


def rounds(model_name: str, short: bool) -> int:
    return 3 if short or model_name in IMAGENET_MODELS else 5


def _selected_models(config) -> list[str]:
    """--models (comma-separated), else --short's subset, else the whole zoo."""
    chosen = config.getoption("--models")
    if chosen:
        names = [name.strip() for name in chosen.split(",") if name.strip()]
        unknown = sorted(set(names) - set(SMALL_MODELS + IMAGENET_MODELS))
        if unknown:
            raise pytest.UsageError(f"--models: no peer bench for {unknown}; models: "
                                    f"{', '.join(SMALL_MODELS + IMAGENET_MODELS)}")
        return names
    short = config.getoption("--short") or os.environ.get("DFJAX_BENCH_SHORT")
    return list(SHORT_MODELS if short else SMALL_MODELS + IMAGENET_MODELS)


def pytest_generate_tests(metafunc):
    """Each test's `case` (model, attack): the selected models x the attacks its
    implementation runs; ids like `cnn7-pgd`, the figure names CI compares."""
    if "case" not in metafunc.fixturenames:
        return
    impl = metafunc.function.__name__.removeprefix("test_")
    cases = [(m, a) for m in _selected_models(metafunc.config)
             for a, impls in IMPLEMENTATIONS.items() if impl in impls]
    metafunc.parametrize("case", cases, ids="-".join)


@functools.cache
def _setup(model_name: str, size: int):
    """(flax model, variables, x float32 [batch, size, size, 3], y int32 [batch]) of one
    init, made once per process (the deep models' init takes seconds); batch =
    batch_size(model_name). Nothing may write into the arrays."""
    batch = batch_size(model_name)
    model = build_model(ModelSpec(name=model_name))
    x = np.random.default_rng(0).random((batch, size, size, 3), np.float32)
    y = (np.arange(batch) % 2).astype(np.int32)
    variables = model.init(jax.random.key(0), jnp.asarray(x[:1]), train=False)
    return model, variables, x, y


def _torch_setup(model_name: str, size: int):
    torch.set_num_threads(TORCH_THREADS)
    _, variables, x, y = _setup(model_name, size)
    return from_flax(model_name, variables), nhwc_to_nchw(x), torch.from_numpy(y.astype(np.int64))


def tuned_pgd(model, x, y, *, eps: float, alpha: float, steps: int, generator=None):
    """Hand-tuned Linf PGD with random start (Madry et al. 2018): x [b, c, h, w] in [0, 1]
    (use channels_last), y int64 [b]. The model's parameters must not require grad."""
    lo = (x - eps).clamp_(0.0, 1.0)
    hi = (x + eps).clamp_(0.0, 1.0)
    x_adv = torch.empty_like(x).uniform_(-eps, eps, generator=generator).add_(x)
    x_adv = torch.minimum(torch.maximum(x_adv, lo), hi)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(x_adv), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv = x_adv.detach().add_(grad.sign_(), alpha=alpha)
            x_adv = torch.minimum(torch.maximum(x_adv, lo, out=x_adv), hi, out=x_adv)
    return x_adv.detach()


def _record(benchmark, calibration, model_name, attack, impl, size, short, **extra):
    batch = batch_size(model_name)
    rate = batch / benchmark.stats.stats.median
    _RATES[(model_name, attack, impl)] = rate
    benchmark.extra_info.update({
        "model": model_name, "attack": attack, "implementation": impl, "batch": batch,
        "image_size": size, "rounds": rounds(model_name, short), "eps": EPS,
        "steps": STEPS if attack == "pgd" else 1,
        "images_per_second": rate,
        "calibration_median_s": calibration["median"],
        "calibration_gflops": calibration["gflops"],
        "torch_threads": torch.get_num_threads(),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "loadavg_1min": os.getloadavg()[0],
        **extra,
    })


def test_torchattacks(benchmark, case, short, calibration):
    model_name, attack = case
    size = image_size(model_name, short)
    model, x, y = _torch_setup(model_name, size)
    if attack == "pgd":
        atk = torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=STEPS, random_start=True)
    else:
        atk = torchattacks.FGSM(model, eps=EPS)
    benchmark.pedantic(lambda: atk(x, y), warmup_rounds=1, rounds=rounds(model_name, short),
                       iterations=1)
    _record(benchmark, calibration, model_name, attack, "torchattacks", size, short)


def test_torch_tuned(benchmark, case, short, calibration):
    model_name, attack = case
    size = image_size(model_name, short)
    model, x, y = _torch_setup(model_name, size)
    model = model.to(memory_format=torch.channels_last).requires_grad_(False)
    x = x.contiguous(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(0)
    out = tuned_pgd(model, x, y, eps=EPS, alpha=ALPHA, steps=1, generator=generator)
    assert float((out - x).abs().max()) <= EPS + 1e-6  # a real attack, within budget
    benchmark.pedantic(lambda: tuned_pgd(model, x, y, eps=EPS, alpha=ALPHA, steps=STEPS,
                                         generator=generator),
                       warmup_rounds=1, rounds=rounds(model_name, short), iterations=1)
    _record(benchmark, calibration, model_name, attack, "torch_tuned", size, short,
            memory_format="channels_last")


def test_dfjax(benchmark, case, short, calibration):
    model_name, attack = case
    size = image_size(model_name, short)
    model, variables, x, y = _setup(model_name, size)
    options = {"num_steps": STEPS} if attack == "pgd" else {}
    bound = ATTACKS.get(attack).bind(AttackSpec(name=attack, eps=EPS, options=options))

    def attack_fn(model):
        def fn(variables, x, y, key, eps):
            return bound(make_logits_fn(model, variables), x, y, key, eps)
        return fn

    args = (variables, jnp.asarray(x), jnp.asarray(y), jax.random.key(1), jnp.float32(EPS))
    start = time.perf_counter()
    compiled = compile_split(attack_fn(model), *args)  # the batch split as in the runner
    compile_seconds = time.perf_counter() - start
    flops = cost_flops(dfjax_jit(attack_fn(plain_model(model))).lower(*args).compile())
    args = compiled.place(*args)
    benchmark.pedantic(lambda: jax.block_until_ready(compiled(*args)), warmup_rounds=1,
                       rounds=rounds(model_name, short), iterations=1)
    median = benchmark.stats.stats.median
    ratios = {f"ratio_vs_{impl}": batch_size(model_name) / median / rate
              for (m, a, impl), rate in _RATES.items() if (m, a) == (model_name, attack)}
    _record(benchmark, calibration, model_name, attack, "dfjax", size, short,
            compile_seconds=compile_seconds, flops_per_call=flops,
            executed_flops_per_call=cost_flops(compiled),
            devices=len(compiled.devices),
            percent_of_gemm_rate=100 * flops / median / (calibration["gflops"] * 1e9),
            **ratios)
