"""sanity_checks' probe_memo: cells that share one reuse the first cell's probe flags."""

import jax
import numpy as np

from dfjax.attacks import sanity
from dfjax.attacks.evaluate import AttackEvaluator
from dfjax.config import AttackSpec, DefenceSpec, ModelSpec
from dfjax.defences import defended_logits
from dfjax.models import build_model
from dfjax.training.loop import create_variables

PROBE_FLAGS = ("sanity_nondeterministic", "sanity_probability_outputs",
               "sanity_zero_gradient_fraction", "sanity_zero_gradients")


def _checks(evaluator, key_seed, probe_memo):
    model = build_model(ModelSpec(name="cnn7_tiny"))
    variables = create_variables(model, (16, 16, 3), jax.random.key(0))
    images = np.asarray(jax.random.uniform(jax.random.key(1), (8, 16, 16, 3)))
    labels = np.arange(8) % 2
    return sanity.sanity_checks(
        AttackSpec(name="fgsm", eps=4 / 255), 0.5, defended_logits(model, DefenceSpec()),
        ("cnn7_tiny", "none"), variables, images, labels, jax.random.key(key_seed), evaluator,
        4, detector=("d", "none"), probe_memo=probe_memo)


def test_probe_runs_once_per_memo_and_gives_the_fresh_flags(monkeypatch):
    """Two cells with one probe_memo (other keys): one probe pass; their flags equal those
    of a cell computed without memo."""
    calls = []
    probe_flags = sanity._probe_flags
    monkeypatch.setattr(sanity, "_probe_flags", lambda *a: calls.append(1) or probe_flags(*a))
    evaluator = AttackEvaluator()
    first = _checks(evaluator, 2, probe_memo=("d", "none", 8, 0, 4))
    second = _checks(evaluator, 3, probe_memo=("d", "none", 8, 0, 4))
    fresh = _checks(AttackEvaluator(), 3, probe_memo=None)
    assert len(calls) == 2  # the first memoised cell and the unmemoised one
    assert {k: second[k] for k in PROBE_FLAGS} == {k: first[k] for k in PROBE_FLAGS}
    assert {k: fresh[k] for k in PROBE_FLAGS} == {k: first[k] for k in PROBE_FLAGS}


def test_no_memo_probes_every_cell(monkeypatch):
    """probe_memo None (a randomised defence): the probe runs for each cell."""
    calls = []
    probe_flags = sanity._probe_flags
    monkeypatch.setattr(sanity, "_probe_flags", lambda *a: calls.append(1) or probe_flags(*a))
    evaluator = AttackEvaluator()
    _checks(evaluator, 2, probe_memo=None)
    _checks(evaluator, 3, probe_memo=None)
    assert len(calls) == 2
