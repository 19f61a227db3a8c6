"""Cross-check against torchattacks 3.5.1: the same trained cnn7 (weights copied into a
torch mirror, dfjax.peers.torch_models), the same 256 test examples, the same budgets
and hyperparameters -> robust accuracies that agree within a few points.

Tolerances. The two libraries draw different random starts / square positions, so
their robust accuracies on 256 examples differ by sampling noise on the examples near
the decision boundary: if a fraction d of the examples is flipped by one run and not
the other, the difference has sd ~ sqrt(d / 256) -- d = 0.1 gives 2 points. On top
there are small, documented algorithmic differences: dfjax's PGD returns the
highest-loss iterate (torchattacks the last one); dfjax's APGD halves its step at
ceil(0.22 N) (torchattacks at int(0.22 N)). So PGD/APGD must agree within 6 points
(3 sd). Square is random search (variance over the trajectory, not just the start),
and torchattacks draws one square position per batch and iteration where dfjax draws
one per example: 12 points. A real bug (wrong step sign, missing projection, wrong
loss or layout) moves robust accuracy by tens of points at these budgets.

Budgets: this detector is fragile -- PGD takes it to ~0 robust accuracy already at
2/255, where any two correct attacks agree trivially -- so the informative budgets
0.5/255 and 1/255 are checked as well as 2/255 and 4/255.

Slow: cnn7 on synthetic_faces 64x64 (4000 examples, 8 epochs; ~0.7-0.78 clean
accuracy, cf. tests/test_strength.py) is trained once through the runner's
content-hash cache (`get_detector`: $DFJAX_CHECKPOINT_DIR, default
~/.cache/dfjax/checkpoints; data in $DFJAX_DATA_DIR) -- minutes the first time on 2
busy cores, ~1 minute after; then 2 x 10 attacks on 256 examples.
"""

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchattacks = pytest.importorskip("torchattacks")

from dfjax.attacks import ATTACKS  # noqa: E402
from dfjax.config import (  # noqa: E402
    AttackSpec,
)
from dfjax.models import make_logits_fn  # noqa: E402
from dfjax.peers.reference import trained_cnn7  # noqa: E402
from dfjax.peers.torch_models import from_flax, nchw_to_nhwc, nhwc_to_nchw  # noqa: E402

pytestmark = pytest.mark.slow

N_EVAL = 256
DELTAS = (0.5, 1, 2, 4)  # eps = delta / 255
SQUARE_DELTAS = (1, 4)  # Square is the slow part (100 forward passes per budget)
SQUARE_ITERATIONS = 100  # dfjax: 101 queries (a rolled loop: forward only)  # torchattacks n_queries = iterations after the first query
SQUARE_P_INIT = 0.05  # dfjax's default; passed to both
TOLERANCE = {"pgd": 0.06, "apgd_ce": 0.06, "square": 0.12}


@pytest.fixture(scope="module")
def trained():
    """(model, variables, x float32 [256, 64, 64, 3], y int32 [256]) of a trained cnn7."""
    return trained_cnn7(N_EVAL)


def _dfjax_attack(name, delta, options):
    spec = AttackSpec(name=name, eps=delta / 255, options=options)
    return ATTACKS.get(name).bind(spec)


def _write_record(results, directory):
    """directory/crosscheck.json: what `python -m dfjax.peers.report` renders."""
    import datetime
    import os
    from importlib import metadata

    from dfjax.runner.environment import environment

    env = environment()
    rows = [{"attack": k[0], "delta": k[1], "tolerance": TOLERANCE[k[0]], **v}
            for k, v in results.items() if k != "clean"]
    record = {"clean": results["clean"], "n_eval": N_EVAL,
              "square_iterations": SQUARE_ITERATIONS, "rows": rows,
              "meta": {"date": datetime.date.today().isoformat(),
                       "revision": env["git_revision"],
                       "machine": f"{os.cpu_count()} x {env['cpu']}",
                       "torch": torch.__version__, "torchattacks": metadata.version("torchattacks"),
                       "load": os.getloadavg()[0]}}
    (directory / "crosscheck.json").write_text(json.dumps(record, indent=1))


@pytest.fixture(scope="module")
def table(trained, peers_report_dir):
    """{(attack, delta): {"dfjax": robust acc, "torchattacks": robust acc}} and clean acc;
    written to --peers-report DIR/crosscheck.json when that option is given."""
    model, variables, x, y = trained
    logits_fn = jax.jit(make_logits_fn(model, variables))

    def accuracy(x_adv):
        return float(np.mean(np.asarray(jnp.argmax(logits_fn(jnp.asarray(x_adv)), -1)) == y))

    torch_model = from_flax("cnn7", variables)
    xt, yt = nhwc_to_nchw(x), torch.from_numpy(y.astype(np.int64))
    dfjax_options = {"pgd": {"num_steps": 10}, "apgd_ce": {"num_steps": 10},
                     "square": {"num_queries": SQUARE_ITERATIONS + 1, "p_init": SQUARE_P_INIT}}
    results = {"clean": accuracy(x)}
    for attack, options in dfjax_options.items():
        # one compile per attack: eps is traced, so every budget reuses it
        bound = _dfjax_attack(attack, DELTAS[0], options)
        run = jax.jit(lambda x, y, key, eps, b=bound: b(logits_fn, x, y, key, eps))
        for delta in SQUARE_DELTAS if attack == "square" else DELTAS:
            eps = delta / 255
            seed = int(4 * delta)
            start = time.perf_counter()
            x_dfjax = np.asarray(run(jnp.asarray(x), jnp.asarray(y), jax.random.key(seed),
                                     jnp.float32(eps)))
            dfjax_seconds = time.perf_counter() - start
            torch.manual_seed(seed)
            if attack == "pgd":
                peer = torchattacks.PGD(torch_model, eps=eps, alpha=2.5 * eps / 10, steps=10,
                                        random_start=True)
            elif attack == "apgd_ce":
                peer = torchattacks.APGD(torch_model, norm="Linf", eps=eps, steps=10, loss="ce",
                                         n_restarts=1, seed=seed)
            else:
                peer = torchattacks.Square(torch_model, norm="Linf", eps=eps,
                                           n_queries=SQUARE_ITERATIONS, p_init=SQUARE_P_INIT,
                                           n_restarts=1, seed=seed)
            start = time.perf_counter()
            x_torch = nchw_to_nhwc(peer(xt, yt))
            torch_seconds = time.perf_counter() - start
            for x_adv in (x_dfjax, x_torch):
                assert np.abs(x_adv - x).max() <= eps + 1e-6
                assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
            results[(attack, delta)] = {"dfjax": accuracy(x_dfjax),
                                        "torchattacks": accuracy(x_torch),
                                        "dfjax_s": dfjax_seconds, "torchattacks_s": torch_seconds}
    lines = [f"clean accuracy {results['clean']:.3f} on {N_EVAL} examples",
             "| attack | eps | dfjax robust acc | torchattacks robust acc | |diff| | tolerance "
             "| dfjax s (1st: + compile) | torchattacks s |", "|---|---|---|---|---|---|---|---|"]
    for key, r in results.items():
        if key != "clean":
            lines.append(f"| {key[0]} | {key[1]:g}/255 | {r['dfjax']:.3f} | "
                         f"{r['torchattacks']:.3f} | {abs(r['dfjax'] - r['torchattacks']):.3f} "
                         f"| {TOLERANCE[key[0]]:.2f} | {r['dfjax_s']:.1f} | "
                         f"{r['torchattacks_s']:.1f} |")
    print("\n" + "\n".join(lines))
    if peers_report_dir is not None:
        _write_record(results, peers_report_dir)
    return results


def test_detector_is_trained(table, record_property):
    record_property("crosscheck", json.dumps({f"{k[0]}@{k[1]}" if k != "clean" else k: v
                                              for k, v in table.items()}))
    assert table["clean"] > 0.6


@pytest.mark.parametrize("attack,delta", [(a, d) for a in ("pgd", "apgd_ce") for d in DELTAS]
                         + [("square", d) for d in SQUARE_DELTAS])
def test_robust_accuracies_agree(table, attack, delta):
    r = table[(attack, delta)]
    assert abs(r["dfjax"] - r["torchattacks"]) <= TOLERANCE[attack], r


@pytest.mark.parametrize("library", ["dfjax", "torchattacks"])
def test_both_gradient_attacks_actually_attack(table, library):
    """Not vacuous: at 4/255 both libraries' PGD and APGD cut robust accuracy clearly."""
    for attack in ("pgd", "apgd_ce"):
        assert table[(attack, 4)][library] < table["clean"] - 0.1, (attack, table)
