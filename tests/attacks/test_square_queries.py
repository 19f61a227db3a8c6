"""Square's query budget: queries counted per example, and what more queries guarantee.

What holds exactly: within one run each example's best margin (and so its true-class
probability trace) never rises, so an example fooled after q queries stays fooled.
What does not: a run with a larger budget is no continuation of one with a smaller
budget, even with the same key (the square sizes follow p_schedule scaled to the
budget; only query 1, the stripes, is shared), so robust accuracy against the budget
is monotone within sampling noise only (checked on a trained detector, slow).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dfjax.attacks.square import p_schedule, queries_used, query_metrics, square
from dfjax.losses import predicted_class
from dfjax.reporting.queries import rises_beyond_noise

EPS = 0.06
# Distance of each example's mean pixel from the decision boundary of `mean_detector`:
# the first is misclassified from the start, those within EPS can be pushed across,
# those beyond EPS cannot (Linf moves the mean by at most EPS).
OFFSETS = np.array([-0.3, 0.005, 0.01, 0.02, 0.03, 0.05, 0.2, 0.3], np.float32)


def mean_detector(x):
    """Logits [b, 2]: class 0 ("real") when the mean pixel is above 0.5, margin 100 x
    its distance from 0.5."""
    score = 50.0 * (x.mean(axis=(1, 2, 3)) - 0.5)
    return jnp.stack([score, -score], axis=1)


def run_square(num_queries, key=jax.random.key(1)):
    x = jnp.asarray(np.broadcast_to(0.5 + OFFSETS[:, None, None, None],
                                    (len(OFFSETS), 16, 16, 3)).copy())
    y = jnp.zeros(len(OFFSETS), jnp.int32)
    attack = jax.jit(lambda x, y, key: square(mean_detector, x, y, key, eps=EPS,
                                              num_queries=num_queries, return_trace=True))
    x_adv, trace = attack(x, y, key)
    return np.asarray(predicted_class(mean_detector(x_adv)) != y), np.asarray(trace)


def test_queries_used_is_the_first_fooling_query_else_the_budget():
    trace = np.array([[0.9, 0.9, 0.4, 0.9],
                      [0.5, 0.8, 0.4, 0.9],   # p(y) = 1/2 fools (Square's stopping rule)
                      [0.5, 0.3, 0.4, 0.9]])
    np.testing.assert_array_equal(queries_used(trace), [2, 3, 1, 3])
    with pytest.raises(ValueError, match=r"trace must be \[num_queries >= 1, b\]"):
        queries_used(np.zeros(4))


def test_query_metrics_average_over_all_points_and_median_over_the_fooled():
    trace = np.array([[0.9, 0.9, 0.4, 0.9],
                      [0.5, 0.8, 0.4, 0.9],
                      [0.5, 0.3, 0.4, 0.9]])
    metrics = query_metrics(trace)
    assert metrics == {"queries_budget": 3.0, "queries_mean": 2.25, "queries_median": 2.5,
                       "queries_median_to_flip": 2.0}
    assert math.isnan(query_metrics(np.full((5, 2), 0.9))["queries_median_to_flip"])


@pytest.mark.parametrize("num_queries", [10, 300])
def test_queries_used_below_the_budget_exactly_on_the_fooled_examples(num_queries):
    """A point Square fooled cost fewer queries than the budget (or fell on the last one),
    a point it did not fool cost the whole budget; the misclassified point costs one."""
    fooled, trace = run_square(num_queries)
    used = queries_used(trace)
    assert used[0] == 1 and fooled[0]
    np.testing.assert_array_equal(used[~fooled], num_queries)
    assert np.all(trace[used[fooled] - 1, np.flatnonzero(fooled)] <= 0.5)
    assert not fooled[OFFSETS > EPS].any()  # out of reach: the whole budget spent


def test_square_trace_never_rises_within_a_run():
    """The exact monotone property: each example's best true-class probability is
    non-increasing in the queries, so once fooled it stays fooled."""
    _, trace = run_square(300)
    assert np.all(np.diff(trace, axis=0) <= 1e-6), np.max(np.diff(trace, axis=0))
    fooled_at = trace <= 0.5
    assert np.all(fooled_at[1:] >= fooled_at[:-1])


def test_more_queries_share_only_the_first_query_with_the_same_key():
    """With one key, Square-100 starts where Square-10 starts (query 1, the stripes, is
    the same), but its square sizes are scaled to 100 queries, not 10: it does not
    continue Square-10's run, so cross-budget monotonicity is statistical (see the slow
    test) -- if this ever changes, the curve becomes exactly monotone."""
    _, trace_10 = run_square(10)
    _, trace_100 = run_square(100)
    np.testing.assert_array_equal(trace_10[0], trace_100[0])
    assert not np.array_equal(p_schedule(9, 0.05), p_schedule(99, 0.05)[:9])


@pytest.mark.slow
def test_robust_accuracy_does_not_rise_with_the_query_budget_beyond_noise(
        trained_cnn7, evaluate_cell):
    """Square at 10, 100 and 1000 queries on the trained cnn7 (each a cell with its own
    key, 128 examples, 4/255): a larger budget's robust accuracy is never above a smaller
    budget's by more than the two-proportion z-test the report uses (z = 1.96); 1000
    queries leave fewer points robust than 10 (the budget buys the attacker something)."""
    budgets = (10, 100, 1000)
    robust = {}
    for q in budgets:
        metrics, _ = evaluate_cell(trained_cnn7.cell("square", 4 / 255, num_queries=q))
        robust[q] = metrics["robust_accuracy"]
    for i, small in enumerate(budgets):
        for large in budgets[i + 1:]:
            assert not rises_beyond_noise(robust[small], 128, robust[large], 128), robust
    assert robust[1000] < robust[10], robust
