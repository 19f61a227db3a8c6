"""The torchattacks ensemble (dfjax.peers.torch_ensemble) keeps the AutoAttack
bookkeeping and its margin APGD climbs the 2-class margin."""

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchattacks")

from dfjax.losses import margin  # noqa: E402
from dfjax.peers.torch_ensemble import (  # noqa: E402
    MarginAPGD,
    build_members,
    logit_margin,
    predicted,
    run_ensemble,
)


@pytest.fixture(scope="module")
def tiny():
    """(a linear 2-class torch model on 8x8x3 images, x [32, 3, 8, 8] in [0, 1], y [32])
    with about half the points classified correctly."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2)).eval()
    x = torch.rand(32, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    y = predicted(model, x)
    y[::2] = 1 - y[::2]  # every other point misclassified from the start
    return model, x, y


def test_logit_margin_is_dfjax_margin():
    logits = np.random.default_rng(0).normal(size=(16, 2)).astype(np.float32)
    y = np.arange(16) % 2
    expected = np.asarray(margin(jnp.asarray(logits), jnp.asarray(y)))
    got = logit_margin(torch.from_numpy(logits), torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_margin_apgd_increases_the_margin_loss(tiny):
    """APGD's best point has a higher margin than the clean image on every point, and the
    margin rises on average (a small budget: no point is fooled at once)."""
    model, x, y = tiny
    attack = MarginAPGD(model, norm="Linf", eps=0.01, steps=10, n_restarts=1, seed=0)
    x_best, _, loss_best, _ = attack.attack_single_run(x, y)
    with torch.no_grad():
        before = logit_margin(model(x), y)
        after = logit_margin(model(x_best), y)
    assert torch.all(after >= before - 1e-6)
    assert float((after - before).mean()) > 0.0
    torch.testing.assert_close(loss_best, after, rtol=0, atol=1e-5)
    assert float((x_best - x).abs().max()) <= 0.01 + 1e-6


class _Breaks:
    """A stand-in member that 'breaks' the points whose first pixel is above `threshold`
    (returns the image with the other class's template) and leaves the rest alone."""

    def __init__(self, model, threshold):
        self.model, self.threshold, self.calls = model, threshold, []

    def __call__(self, x, y):
        self.calls.append(len(x))
        out = x.clone()
        chosen = x[:, 0, 0, 0] > self.threshold
        weight = self.model[1].weight.detach()  # [2, 192]: push towards the other class
        direction = (weight[1 - y] - weight[y]).reshape(-1, 3, 8, 8)
        out[chosen] = (x[chosen] + 100 * direction[chosen]).clamp(0, 1)
        return out


def test_robust_only_where_no_member_broke_the_point(tiny):
    """A point counts as robust only if it is clean-correct and no member broke it; each
    broken point is credited to exactly one member, and later members only see what is
    still robust."""
    model, x, y = tiny
    members = [("first", _Breaks(model, 0.7)), ("second", _Breaks(model, 0.4)),
               ("third", _Breaks(model, -1.0))]
    result = run_ensemble(model, members, x, y)
    clean_correct = (predicted(model, x) == y).numpy()
    adv_correct = (predicted(model, result.x_adv) == y).numpy()
    broken = np.any(list(result.flipped_by.values()), axis=0)
    assert np.array_equal(result.robust, clean_correct & ~broken)
    assert np.array_equal(result.robust, clean_correct & adv_correct)
    assert np.sum(list(result.flipped_by.values()), axis=0).max() <= 1
    assert members[0][1].calls == [int(clean_correct.sum())]
    assert members[1][1].calls == [int(clean_correct.sum() - result.flipped_by["first"].sum())]
    assert not result.robust.any() and result.attacked["third"] > 0  # the last breaks all


def test_preset_never_leaves_robust_a_point_its_first_member_breaks(tiny):
    """torchattacks members as built for dfjax's preset v1: the ensemble's robust points
    are a subset of those APGD-CE alone (same seed, same points) fails to break, and its
    x_adv stays within the budget."""
    model, x, y = tiny
    eps = 0.02
    members = build_members(model, eps=eps, num_steps=5, num_queries=20)
    assert [name for name, _ in members] == ["apgd_ce", "apgd_margin", "square"]
    result = run_ensemble(model, members, x, y)
    alone = build_members(model, eps=eps, num_steps=5, num_queries=20)[0][1]
    clean_correct = (predicted(model, x) == y).numpy()
    idx = torch.from_numpy(np.flatnonzero(clean_correct))
    survives_alone = np.zeros(len(y), bool)
    survives_alone[idx.numpy()] = (predicted(model, alone(x[idx], y[idx])) == y[idx]).numpy()
    assert not np.any(result.robust & ~survives_alone)
    assert result.robust.sum() < clean_correct.sum()  # the budget breaks some points
    assert float((result.x_adv - x).abs().max()) <= eps + 1e-6
