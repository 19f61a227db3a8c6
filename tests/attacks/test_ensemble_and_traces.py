"""Fast checks of the ensemble logic, the sanity flag, traces and bad inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dfjax.attacks import ATTACKS, black_box_beats_white_box, member_specs
from dfjax.losses import predicted_class, true_class_probability
from dfjax.attacks.apgd import checkpoints
from dfjax.attacks.square import p_schedule
from dfjax.config import AttackSpec


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
    options = ATTACKS.get("auto").resolve_options(AttackSpec(name="auto", eps=0.1))
    assert [s.name for s in member_specs(AttackSpec(name="auto", eps=0.1), options)] == [
        "apgd_ce", "apgd_margin", "square"]
    l2 = member_specs(AttackSpec(name="auto", norm="l2", eps=0.5), options)
    assert [s.name for s in l2] == ["apgd_ce", "apgd_margin"]  # square is linf only


def test_pure_auto_flips_whatever_a_member_flips(tiny_model, batch):
    """The jittable ensemble: misclassified under it wherever any member succeeded."""
    _, _, logits_fn = tiny_model
    x, y = batch
    eps, key = 16 / 255, jax.random.key(0)
    spec = AttackSpec(name="auto", eps=eps, options={"num_steps": 3, "num_queries": 4})
    x_adv = jax.jit(lambda x, y: ATTACKS.get("auto").bind(spec)(logits_fn, x, y, key, eps))(x, y)
    wrong = np.asarray(predicted_class(logits_fn(x_adv)) != y)
    clean_wrong = np.asarray(predicted_class(logits_fn(x)) != y)
    for i, member in enumerate(member_specs(spec, ATTACKS.get("auto").resolve_options(spec))):
        attack = ATTACKS.get(member.name).bind(member)
        x_m = jax.jit(lambda x, y: attack(logits_fn, x, y, jax.random.fold_in(key, i), eps))(x, y)
        assert np.all(wrong[np.asarray(predicted_class(logits_fn(x_m)) != y)])
    assert np.all(wrong[clean_wrong])


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
    from dfjax.attacks import cross_entropy, pgd

    _, _, logits_fn = tiny_model
    x, y = batch
    kw = dict(eps=8 / 255, step_size=2 / 255, num_steps=3)
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


@pytest.mark.parametrize("name", ATTACKS.names())
def test_label_shape_mismatch_rejected(name, tiny_model, batch):
    _, _, logits_fn = tiny_model
    x, y = batch
    norm = ATTACKS.get(name).norms[0]
    attack = ATTACKS.get(name).bind(AttackSpec(name=name, norm=norm, eps=0.0))
    with pytest.raises(ValueError, match="y must be"):
        jax.eval_shape(lambda x, y: attack(logits_fn, x, y, jax.random.key(0), 0.0), x, y[:3])
