"""An ensemble member runs the still-robust points padded to `subset_size`, not to the whole
batch, and gets the same adversarial examples for them."""

import jax
import numpy as np
import pytest

from dfjax.attacks.evaluate import SUBSET_STEPS, AttackEvaluator, subset_size
from dfjax.config import AttackSpec


def test_subset_size_rounds_up_to_an_even_step_within_the_batch():
    assert SUBSET_STEPS == 8
    assert [subset_size(c, 128, 2) for c in (1, 16, 17, 37, 113, 128)] == [
        16, 16, 32, 48, 128, 128]
    assert [subset_size(c, 100, 2) for c in (1, 14, 15, 99)] == [14, 14, 28, 100]  # step 13->14
    assert [subset_size(c, 5) for c in range(1, 6)] == [1, 2, 3, 4, 5]
    assert subset_size(3, 7, 2) == 4 and subset_size(7, 7, 2) == 7  # never over the batch


@pytest.mark.parametrize("name,options", [("apgd_ce", {"num_steps": 3}),
                                          ("apgd_margin", {"num_steps": 3}),
                                          ("square", {"num_queries": 6})])
def test_member_output_does_not_depend_on_the_padding(tiny_model, batch, name, options):
    """Points [5, 2, 7] padded (with copies of the first) to the batch of 8 and to 4: the
    same x_adv bit for bit on the three real rows (per-example, per-position draws), and
    the same logits up to rounding."""
    _, variables, logits_fn = tiny_model
    x, y = (np.asarray(a) for a in batch)
    idx = np.array([5, 2, 7])
    spec = AttackSpec(name=name, eps=8 / 255, options=options)
    evaluator = AttackEvaluator()
    key = jax.random.key(4)
    outputs = []
    for size in (8, subset_size(len(idx), 8, 2)):
        padded = np.concatenate([idx, np.full(size - len(idx), idx[0])])
        fn, _ = evaluator.get(spec, lambda v, k: (logits_fn, logits_fn), "cnn7_tiny", variables,
                              x[padded], y[padded], key, keep_adversarial=True)
        out = fn(variables, x[padded], y[padded], key, np.float32(spec.eps))
        outputs.append({k: np.asarray(out[k])[:len(idx)] for k in ("x_adv", "adv", "clean")})
    whole, subset = outputs
    assert subset["x_adv"].shape[0] == 3 and not np.array_equal(whole["x_adv"], x[idx])
    np.testing.assert_array_equal(subset["x_adv"], whole["x_adv"])
    np.testing.assert_allclose(subset["adv"], whole["adv"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(subset["clean"], whole["clean"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("name,options", [("apgd_ce", {"num_steps": 3}),
                                          ("square", {"num_queries": 6})])
def test_member_program_skips_clean_logits_and_trace_with_the_same_output(tiny_model, batch,
                                                                          name, options):
    """An ensemble member's program (member=True) computes neither the clean logits nor
    the trace (the ensemble takes the former from its clean pass) and gives the same
    x_adv and adversarial logits, bit for bit, as the full evaluation."""
    _, variables, logits_fn = tiny_model
    x, y = (np.asarray(a) for a in batch)
    spec = AttackSpec(name=name, eps=8 / 255, options=options)
    evaluator = AttackEvaluator()
    key = jax.random.key(5)
    outputs = []
    for member in (False, True):
        fn, _ = evaluator.get(spec, lambda v, k: (logits_fn, logits_fn), "cnn7_tiny", variables,
                              x, y, key, keep_adversarial=True, member=member)
        outputs.append({k: np.asarray(v) for k, v in
                        fn(variables, x, y, key, np.float32(spec.eps)).items()})
    full, member = outputs
    assert {"clean", "trace"} <= set(full) and not {"clean", "trace"} & set(member)
    assert not np.array_equal(full["x_adv"], x)
    np.testing.assert_array_equal(member["x_adv"], full["x_adv"])
    np.testing.assert_array_equal(member["adv"], full["adv"])
