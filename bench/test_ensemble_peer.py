"""The worst-case ensemble: dfjax's `auto` (preset v1) against the same ensemble assembled
from torchattacks 3.5.1, on the same weights and examples, in one process.

Detector: cnn7 trained on synthetic_faces 64x64 (4000 examples, 8 epochs) through the
runner's checkpoint cache, as tests/peers/test_torch_crosscheck.py (clean accuracy ~0.67
on the runner's 256-example evaluation subset); its weights copied into the torch mirror
(dfjax.peers.torch_models.from_flax). Budget Linf eps = 1/255: this detector is fragile,
so at larger budgets the ensemble leaves nothing robust and both sides agree trivially.

  torchattacks -- dfjax.peers.torch_ensemble: APGD-CE, APGD on the 2-class logit margin
                  (torchattacks' DLR needs >= 3 classes), Square, each on the points still
                  robust; torch.set_num_threads(2);
  dfjax        -- `auto` through dfjax.attacks.evaluate.evaluate_attack, as the runner
                  calls it: batches of the runner's eval_batch_size (128), each split
                  across the CPU devices, members on the still-robust points.
Same steps (20), queries (200 model calls per example) and p_init (0.05) on both sides.

Recorded per side (extra_info): images/s over the 256 examples, per-member seconds and
points attacked, robust accuracy with its binomial standard error, the 1-min load and
GLIBC_TUNABLES (set it for torch timings, see docs/peers.md); for dfjax also the compile
seconds (outside the timed rounds), ratio_vs_torchattacks and the robust accuracy
difference in standard errors.
"""

import os
import time
from collections import defaultdict

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchattacks")

from dfjax.attacks.auto import OPTIONS  # noqa: E402
from dfjax.attacks.evaluate import AttackEvaluator, evaluate_attack  # noqa: E402
from dfjax.config import (  # noqa: E402
    AttackSpec,
    DefenceSpec,
    ModelSpec,
)
from dfjax.defences import defended_logits  # noqa: E402
from dfjax.losses import predicted_class  # noqa: E402
from dfjax.peers.reference import trained_cnn7  # noqa: E402
from dfjax.peers.torch_ensemble import build_members, run_ensemble  # noqa: E402
from dfjax.peers.torch_models import from_flax, nhwc_to_nchw  # noqa: E402

N_EVAL = 256
EPS = 1 / 255
BATCH = 128  # the runner's eval_batch_size
TORCH_THREADS = 2
P_INIT = 0.05  # dfjax square's default, passed to torchattacks (whose own is 0.8)

_RESULTS: dict[str, dict] = {}  # implementation -> its extra_info


def _rounds(short: bool) -> int:
    return 1 if short else 3


@pytest.fixture(scope="module")
def trained():
    """(model, variables, x float32 [256, 64, 64, 3], y int32 [256]) of a trained cnn7."""
    return trained_cnn7(N_EVAL)


def _accuracy_info(correct: np.ndarray, robust: np.ndarray) -> dict:
    p = float(robust.mean())
    return {"clean_accuracy": float(correct.mean()), "robust_accuracy": p,
            "robust_accuracy_se": float(np.sqrt(p * (1 - p) / len(robust)))}


def _common_info(seconds: list[float]) -> dict:
    median = float(np.median(seconds))
    return {"n_examples": N_EVAL, "eps": EPS, "image_size": 64, "model": "cnn7",
            "num_steps": OPTIONS["num_steps"], "num_queries": OPTIONS["num_queries"],
            "p_init": P_INIT, "seconds": median, "seconds_min": min(seconds),
            "seconds_max": max(seconds), "images_per_second": N_EVAL / median,
            "loadavg_1min": os.getloadavg()[0],
            "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")}


def test_torchattacks_ensemble(benchmark, trained, short):
    model, variables, x, y = trained
    torch.set_num_threads(TORCH_THREADS)
    torch_model = from_flax("cnn7", variables).eval()
    xt, yt = nhwc_to_nchw(x), torch.from_numpy(y.astype(np.int64))
    members = build_members(torch_model, eps=EPS, num_steps=OPTIONS["num_steps"],
                            num_queries=OPTIONS["num_queries"], p_init=P_INIT)
    runs = []

    def once():
        runs.append(run_ensemble(torch_model, members, xt, yt))

    benchmark.pedantic(once, rounds=_rounds(short), iterations=1, warmup_rounds=0)
    result = runs[-1]
    assert float((result.x_adv - xt).abs().max()) <= EPS + 1e-6
    assert 0 <= float(result.x_adv.min()) and float(result.x_adv.max()) <= 1
    with torch.no_grad():
        correct = (torch_model(xt).argmax(1) == yt).numpy()
    info = _common_info(list(benchmark.stats.stats.data)) | _accuracy_info(correct,
                                                                           result.robust)
    info |= {"implementation": "torchattacks", "torch_threads": torch.get_num_threads(),
             "torch": torch.__version__}
    for name in result.seconds:
        info[f"seconds_{name}"] = float(np.median([r.seconds[name] for r in runs]))
        info[f"attacked_{name}"] = result.attacked[name]
        info[f"flipped_by_{name}"] = int(result.flipped_by[name].sum())
    benchmark.extra_info.update(info)
    _RESULTS["torchattacks"] = info
    assert 0 < info["robust_accuracy"] < info["clean_accuracy"], info  # informative eps


class _TimedEvaluator(AttackEvaluator):
    """An AttackEvaluator whose compiled functions add their wall seconds (placement and
    run, to the results being ready) to `seconds[attack name]`, and count the points
    (padding included) each attack ran on in `points[attack name]`."""

    def __init__(self):
        super().__init__()
        self.seconds: dict[str, float] = defaultdict(float)
        self.points: dict[str, int] = defaultdict(int)

    def get(self, attack_spec, *args, **kwargs):
        fn, compile_seconds = super().get(attack_spec, *args, **kwargs)

        def timed(variables, x, *rest):
            start = time.perf_counter()
            out = jax.block_until_ready(fn(variables, x, *rest))
            self.seconds[attack_spec.name] += time.perf_counter() - start
            self.points[attack_spec.name] += x.shape[0]
            return out

        return timed, compile_seconds


def test_dfjax_ensemble(benchmark, trained, short):
    model, variables, x, y = trained
    spec = AttackSpec(name="auto", eps=EPS, options={"num_steps": OPTIONS["num_steps"],
                                                     "num_queries": OPTIONS["num_queries"]})
    defence = DefenceSpec()
    kind = (ModelSpec(name="cnn7").canonical(), defence.canonical())
    evaluator = _TimedEvaluator()
    logits_of = defended_logits(model, defence)

    def once():
        evaluator.seconds.clear()
        evaluator.points.clear()
        result = evaluate_attack(spec, logits_of, kind, variables, x, y, jax.random.key(0),
                                 evaluator, BATCH)
        return result, dict(evaluator.seconds), dict(evaluator.points)

    start = time.perf_counter()
    first, _, _ = once()  # compiles every member at every subset size it meets
    first_seconds = time.perf_counter() - start
    runs = []
    benchmark.pedantic(lambda: runs.append(once()), rounds=_rounds(short), iterations=1,
                       warmup_rounds=0)
    result, _, points = runs[-1]
    assert result.compile_seconds == 0.0  # the timed rounds reuse the first run's programs
    correct = np.asarray(predicted_class(result.outputs["clean"])) == y
    robust = np.asarray(predicted_class(result.outputs["adv"])) == y
    info = _common_info(list(benchmark.stats.stats.data)) | _accuracy_info(correct, robust)
    info |= {"implementation": "dfjax", "batch": BATCH, "devices": len(jax.devices()),
             "compile_seconds": first.compile_seconds, "first_run_seconds": first_seconds}
    for name, flipped in result.flipped_by.items():
        info[f"seconds_{name}"] = float(np.median([r[1].get(name, 0.0) for r in runs]))
        info[f"attacked_{name}"] = points.get(name, 0)  # padded to the compiled batch
        info[f"flipped_by_{name}"] = int(flipped.sum())
    peer = _RESULTS.get("torchattacks")
    if peer is not None:
        info["ratio_vs_torchattacks"] = info["images_per_second"] / peer["images_per_second"]
        diff = info["robust_accuracy"] - peer["robust_accuracy"]
        info["robust_accuracy_diff_in_se"] = diff / np.hypot(info["robust_accuracy_se"],
                                                             peer["robust_accuracy_se"])
    benchmark.extra_info.update(info)
    _RESULTS["dfjax"] = info
    assert 0 < info["robust_accuracy"] < info["clean_accuracy"], info  # informative eps
