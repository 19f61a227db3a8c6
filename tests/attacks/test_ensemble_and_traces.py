"""Fast checks of the ensemble logic, the sanity flag, traces and bad inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dfjax.attacks import ATTACKS, black_box_beats_white_box
from dfjax.attacks.apgd import checkpoints
from dfjax.attacks.auto import member_specs, run_ensemble
from dfjax.attacks.evaluate import AttackEvaluator, evaluate_attack, subset_size
from dfjax.attacks.square import p_schedule
from dfjax.config import AttackSpec, DefenceSpec
from dfjax.defences import defended_logits
from dfjax.losses import predicted_class, true_class_probability
from dfjax.models import make_logits_fn


def test_sanity_flag_on_constructed_cases():
    apgd = np.array([True, False, False, False])
    margin = np.array([False, True, False, False])
    square_only_missed = np.array([True, True, False, False])  # nothing new
    square_new = np.array([False, False, True, False])  # point 2: missed by white box
    assert not black_box_beats_white_box(
        {"apgd_ce": apgd, "apgd_margin": margin, "square": square_only_missed})
    assert black_box_beats_white_box(
        {"apgd_ce": apgd, "apgd_margin": margin, "square": square_new})
    assert not black_box_beats_white_box({"apgd_ce": apgd, "apgd_margin": margin})
    assert black_box_beats_white_box({"square": square_new})


def test_apgd_checkpoints_follow_the_paper():
    # N = 100: p = 0, .22, .41, .57, .70, .80, .87, .93, .99 (Croce & Hein, Sec. 3.2)
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(1) == []
    assert all(0 < w < 10 for w in checkpoints(10))


def test_square_p_schedule_halves_at_milestones():
    p = p_schedule(10_000, 0.08)
    assert p[0] == pytest.approx(0.08) and p[11] == pytest.approx(0.04)
    assert p[-1] == pytest.approx(0.08 / 2 ** 9)
    assert np.all(np.diff(p) <= 0)


def test_auto_members_depend_on_norm():
    options = ATTACKS.get("auto").resolve_spec(AttackSpec(name="auto", eps=0.1))
    assert [s.name for s in member_specs(AttackSpec(name="auto", eps=0.1), options, ATTACKS)] == [
        "apgd_ce", "apgd_margin", "square"]
    l2 = member_specs(AttackSpec(name="auto", norm="l2", eps=0.5), options, ATTACKS)
    assert [s.name for s in l2] == ["apgd_ce", "apgd_margin"]  # square is linf only


def test_ensemble_runs_each_member_on_still_robust_points_only():
    """run_ensemble with scripted members: member 0 sees the clean-correct points only,
    member i the points no earlier member broke; a point keeps the outputs of the first
    member that broke it; flipped_by says which one did; x_adv is the breaking member's
    output, else the first member's, else (never attacked) the clean image."""
    y = np.array([0, 1, 0, 1, 0, 1])
    clean = np.where(y[:, None] == 1, [[0.0, 1.0]], [[1.0, 0.0]])
    clean[5] = [1.0, 0.0]  # point 5 is misclassified before any attack
    x = np.arange(6, dtype=np.float32)[:, None]
    breaks = {0: {1}, 1: {1, 2, 3}, 2: {0, 3}}  # member -> points it would flip
    seen = {}

    def run_member(i, member, idx):
        seen[i] = idx.tolist()
        adv = clean[idx].copy()
        for j, point in enumerate(idx):
            if point in breaks[i]:
                adv[j] = adv[j, ::-1]
        linf = np.full(len(idx), 0.1 * (i + 1))
        return {"adv": adv, "linf": linf, "l2": linf, "l0": linf, "in_range": True,
                "x_adv": x[idx] + 10 * (i + 1)}

    members = [AttackSpec(name=n) for n in ("apgd_ce", "apgd_margin", "square")]
    out, flipped_by = run_ensemble(members, clean, run_member, y, x)
    assert seen == {0: [0, 1, 2, 3, 4], 1: [0, 2, 3, 4], 2: [0, 4]}
    np.testing.assert_array_equal(flipped_by["apgd_ce"], [0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(flipped_by["apgd_margin"], [0, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(flipped_by["square"], [1, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(out["linf"], [0.3, 0.1, 0.2, 0.2, 0.0, 0.0])
    wrong = np.asarray(predicted_class(out["adv"])) != y
    np.testing.assert_array_equal(wrong, [1, 1, 1, 1, 0, 1])
    np.testing.assert_array_equal(out["clean"], clean)
    np.testing.assert_array_equal(out["x_adv"][:, 0], [30, 11, 22, 23, 14, 5])
    np.testing.assert_array_equal(x[:, 0], np.arange(6))  # the caller's images untouched


EPS_POOLED = 4 / 255


def test_ensemble_through_the_evaluator(tiny_model, batch):
    """The registered `auto` run as the runner runs it, at batch 4 over 8 points: the
    clean pass in two batches gives the detector's clean logits; the first member runs
    only on the clean-correct points, pooled over both batches into batches of at most 4
    (the last padded to `subset_size`), each later member only on the points still
    robust; within budget, every point broken by at most one member, and broken exactly
    where the adversarial prediction is wrong on a clean-correct point."""
    model = tiny_model[0]
    x = np.asarray(batch[0])
    # an init whose logit margins on this batch are small (0-0.15): some points flip
    variables = jax.jit(model.init)(jax.random.key(8), x[:1])
    logits_fn = make_logits_fn(model, variables)
    y = np.array(predicted_class(logits_fn(x)), np.int32)
    y[[1, 6]] = 1 - y[[1, 6]]  # 6 clean-correct points: 4 from the first batch, 2 from the second
    calls = []

    class Recording(AttackEvaluator):
        def get(self, attack_spec, logits_of, kind, variables, x, *rest, **kwargs):
            calls.append((attack_spec.name, x.shape[0]))
            return super().get(attack_spec, logits_of, kind, variables, x, *rest, **kwargs)

    spec = AttackSpec(name="auto", eps=EPS_POOLED, options={"num_steps": 3, "num_queries": 4})
    result = evaluate_attack(spec, defended_logits(model, DefenceSpec()), "cnn7_tiny", variables,
                             x, y, jax.random.key(1), Recording(), batch_size=4,
                             keep_adversarial=True)
    assert result.outputs["x_adv"].shape == x.shape and result.outputs["clean"].shape == (8, 2)
    np.testing.assert_allclose(result.outputs["clean"], logits_fn(x), rtol=0, atol=1e-5)
    assert result.outputs["linf"].max() <= EPS_POOLED + 1e-6 and result.in_range
    flips = np.stack(list(result.flipped_by.values()))
    assert list(result.flipped_by) == ["apgd_ce", "apgd_margin", "square"]
    assert flips.sum(axis=0).max() <= 1
    clean_ok = np.asarray(predicted_class(result.outputs["clean"])) == y
    adv_wrong = np.asarray(predicted_class(result.outputs["adv"])) != y
    np.testing.assert_array_equal(flips.any(axis=0), clean_ok & adv_wrong)

    def pooled(count):  # batches of 4, the last padded to subset_size (2 devices)
        full, rest = divmod(count, 4)
        return [4] * full + ([subset_size(rest, 4, 2)] if rest else [])

    np.testing.assert_array_equal(clean_ok, [1, 0, 1, 1, 1, 1, 0, 1])
    assert [size for name, size in calls if name == "apgd_ce"] == pooled(clean_ok.sum())
    robust_after_ce = int(clean_ok.sum() - flips[0].sum())
    assert 0 < robust_after_ce < 6  # APGD-CE broke some of its points, not all
    assert [size for name, size in calls if name == "apgd_margin"] == pooled(robust_after_ce)


@pytest.mark.parametrize("name", [n for n in ATTACKS.names() if ATTACKS.get(n).traces])
def test_trace_is_true_class_probability_per_step(name, tiny_model, batch):
    _, _, logits_fn = tiny_model
    x, y = batch
    entry = ATTACKS.get(name)
    norm = entry.norms[0]
    options = {k: v for k, v in {"num_steps": 3, "num_queries": 4}.items() if k in entry.options}
    attack = entry.bind(AttackSpec(name=name, norm=norm, eps=8 / 255, options=options),
                        return_trace=True)
    x_adv, trace = jax.jit(lambda x, y: attack(logits_fn, x, y, jax.random.key(0), 8 / 255))(
        x, y)
    assert trace.shape == (4, x.shape[0]) and trace.dtype == jnp.float32
    assert np.all((np.asarray(trace) >= 0) & (np.asarray(trace) <= 1))
    plain = attack_plain = entry.bind(AttackSpec(name=name, norm=norm, eps=8 / 255,
                                                 options=options))
    del attack_plain
    np.testing.assert_allclose(np.asarray(plain(logits_fn, x, y, jax.random.key(0), 8 / 255)),
                               np.asarray(x_adv), atol=1e-6)
    if name == "square":  # the best point is what the trace's last row describes
        np.testing.assert_allclose(trace[-1], true_class_probability(logits_fn(x_adv), y),
                                   atol=1e-5)


def test_pgd_targeted_leaves_target_class_examples_alone(tiny_model, batch):
    _, _, logits_fn = tiny_model
    x, y = batch
    spec = AttackSpec(name="pgd_targeted", eps=16 / 255, options={"num_steps": 3})
    x_adv = ATTACKS.get("pgd_targeted").bind(spec)(logits_fn, x, y, jax.random.key(0), 16 / 255)
    real = np.asarray(y) == 0
    np.testing.assert_array_equal(np.asarray(x_adv)[real], np.asarray(x)[real])
    assert np.all(np.abs(np.asarray(x_adv - x))[~real].max(axis=(1, 2, 3)) > 0)


def test_pgd_restarts_keep_the_best(tiny_model, batch):
    from dfjax.attacks import pgd
    from dfjax.losses import cross_entropy

    _, _, logits_fn = tiny_model
    x, y = batch
    kw = {"eps": 8 / 255, "step_size": 2 / 255, "num_steps": 3}
    one = pgd(logits_fn, x, y, jax.random.key(0), num_restarts=1, **kw)
    three = pgd(logits_fn, x, y, jax.random.key(0), num_restarts=3, **kw)
    # restart 0 of both is the same trajectory; more restarts only raise each loss
    assert np.all(np.asarray(cross_entropy(logits_fn(three), y))
                  >= np.asarray(cross_entropy(logits_fn(one), y)) - 1e-6)


def test_noise_gaussian_stays_in_budget(tiny_model, batch):
    x, y = batch
    for norm, eps in (("linf", 8 / 255), ("l2", 0.5)):
        spec = AttackSpec(name="noise", norm=norm, eps=eps, options={"distribution": "gaussian"})
        x_adv = ATTACKS.get("noise").bind(spec)(None, x, y, jax.random.key(0), eps)
        d = np.asarray(x_adv - x).reshape(8, -1)
        n = np.abs(d).max(1) if norm == "linf" else np.sqrt((d ** 2).sum(1))
        assert n.max() <= eps + 1e-6 and n.min() > 0


@pytest.mark.parametrize("name,norm,eps,match", [
    ("pgd", "linf", 1.5, "linf eps"), ("pgd", "l2", -0.1, ">= 0"),
    ("pgd", "linf", float("nan"), "finite"), ("one_pixel", "l0", 1.5, "whole number"),
    ("square", "l2", 0.5, "supports norms"), ("cw_l2", "linf", 0.1, "supports norms"),
])
def test_bad_budget_rejected_before_compiling(name, norm, eps, match):
    with pytest.raises(ValueError, match=match):
        ATTACKS.get(name).bind(AttackSpec(name=name, norm=norm, eps=eps))


@pytest.mark.parametrize("name,option", [
    ("pgd", "num_steps"), ("apgd_ce", "num_steps"), ("square", "num_queries"),
    ("one_pixel", "iterations"), ("cw_l2", "binary_search_steps"), ("pgd", "num_restarts"),
])
def test_bad_counts_rejected(name, option):
    norm = ATTACKS.get(name).norms[0]
    with pytest.raises(ValueError, match=option):
        ATTACKS.get(name).bind(AttackSpec(name=name, norm=norm, eps=0.0, options={option: 0}))


@pytest.mark.parametrize("name", [n for n in ATTACKS.names() if ATTACKS.get(n).fn])
def test_label_shape_mismatch_rejected(name, tiny_model, batch):
    _, _, logits_fn = tiny_model
    x, y = batch
    norm = ATTACKS.get(name).norms[0]
    attack = ATTACKS.get(name).bind(AttackSpec(name=name, norm=norm, eps=0.0))
    with pytest.raises(ValueError, match="y must be"):
        jax.eval_shape(lambda x, y: attack(logits_fn, x, y, jax.random.key(0), 0.0), x, y[:3])
