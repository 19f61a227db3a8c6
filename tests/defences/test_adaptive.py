"""Defences are evaluated adaptively (issue 13): an input transform that looks robust when
the attack ignores it (`adaptive=False`: PGD on the bare detector, its examples scored
through the defence) is attacked through its BPDA / EOT form by default, and that form
is stronger.

One cnn7 is trained on a constructed task whose cue survives the transforms (see
`tinted_blob_splits`), so each defended detector stays accurate while the bare detector
is not robust at the budget; every cell runs through `dfjax.runner.run_cell`, Linf PGD-20
at eps 8/255 with step eps/4, 256 test examples.

Measured when this was written (2-core machine, nothing else running; the module took
1 min 53 s, most of it compiling one attack per cell):

| defence (attack form)                           | clean | robust |
|-------------------------------------------------|-------|--------|
| none                                            | 0.957 | 0.094  |
| jpeg q75, non-adaptive                          | 0.957 | 0.480  |
| jpeg q75, adaptive (BPDA differentiable JPEG)   | 0.957 | 0.156  |
| bit_depth 3, non-adaptive                       | 0.938 | 0.230  |
| bit_depth 3, adaptive (BPDA identity)           | 0.938 | 0.117  |
| random_resize_pad, non-adaptive                 | 0.816 | 0.398  |
| random_resize_pad, adaptive, 1 draw (no EOT)    | 0.812 | 0.316  |
| random_resize_pad, adaptive, EOT 8 (default)    | 0.820 | 0.289  |

(random_resize_pad's clean accuracy differs per cell: each cell scores its own draws,
and the zero padding costs it about 0.14; its EOT row is still 19 points above the
undefended one: the scored draw is one the attacker never saw.)

JPEG needs two things. A surrogate that sees the codec: BPDA with the identity (Athalye
et al. 2018's choice) left it at 0.453 here (0.42 measured outside with step eps/8),
Gaussian blur of sigma 1 at 0.18, the differentiable JPEG dfjax declares at 0.15 (all
step eps/4). And steps large enough to survive quantisation: with PGD's default step
eps/8 = 1/255 the same surrogate stalls at 0.33 (blur: 0.22), hence step eps/4 here; the
`auto` ensemble's APGD adapts its step size on its own.
"""

import jax
import numpy as np
import pytest

from dfjax.config import AttackSpec, Cell, DatasetSpec, DefenceSpec, ModelSpec, TrainSpec

pytestmark = pytest.mark.slow

# The cells' dataset label names what the detector saw: tinted_blob_splits() below, built
# here. As with "checkerboard" in tests/attacks/conftest.py, it is no registered dataset:
# nothing loads these cells' dataset, the name only enters the cell id (hence the key).
DATASET = DatasetSpec(name="tinted_blob", image_size=32, num_examples=2000)
MODEL = ModelSpec(name="cnn7")
TRAINING = TrainSpec(epochs=4)
# step eps/4 (rel_step_size 5): with the default eps/8, steps of 1/255 are mostly erased by
# the JPEG codec and BPDA on jpeg stalls (0.33 robust; see the module docstring)
ATTACK = AttackSpec(name="pgd", eps=8 / 255, options={"num_steps": 20, "rel_step_size": 5.0})
N_EVAL = 256

# name -> defence spec of each cell the tests compare
DEFENCES = {
    "none": DefenceSpec(),
    "jpeg_non_adaptive": DefenceSpec(name="jpeg", options={"quality": 75, "adaptive": False}),
    "jpeg": DefenceSpec(name="jpeg", options={"quality": 75}),
    "bit_depth_non_adaptive": DefenceSpec(name="bit_depth",
                                          options={"bits": 3, "adaptive": False}),
    "bit_depth": DefenceSpec(name="bit_depth", options={"bits": 3}),
    "resize_pad_non_adaptive": DefenceSpec(name="random_resize_pad",
                                           options={"adaptive": False}),
    "resize_pad_no_eot": DefenceSpec(name="random_resize_pad", options={"eot_samples": 1}),
    "resize_pad": DefenceSpec(name="random_resize_pad"),  # EOT over the default 8 draws
}


def tinted_blob_splits(n: int = 2000, size: int = 32, seed: int = 0):
    """A real/fake task whose cue survives JPEG, bit-depth reduction and resizing: smooth
    near-grey images (a random 4x4 grey field, +-0.05 per channel, upsampled bicubically,
    plus pixel noise of sd 3/255); fakes carry a colour cast in a Gaussian blob (sd 4 px,
    random centre): red +48/255, green -48/255 at its peak, a low-frequency generator
    artifact. Splits 70/10/20, uint8."""
    import cv2

    from dfjax.data.base import DatasetSplits, Split

    rng = np.random.default_rng(seed)
    coarse = (rng.uniform(0.2, 0.8, (n, 4, 4, 1))
              + rng.normal(0, 0.05, (n, 4, 4, 3))).astype(np.float32)
    images = np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_CUBIC)
                       for c in coarse])
    images += rng.normal(0, 3 / 255, images.shape)
    labels = (np.arange(n) % 2).astype(np.int32)
    yy, xx = np.mgrid[:size, :size]
    sigma = 4.0
    cy, cx = rng.uniform(sigma, size - sigma, (2, n))
    blob = np.exp(-((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2)
                  / (2 * sigma ** 2))
    cast = blob[..., None] * np.array([1.0, -1.0, 0.0]) * 48 / 255
    images = np.clip(images + labels[:, None, None, None] * cast, 0, 1)
    images = np.round(images * 255).astype(np.uint8)
    bounds = {"train": (0, int(0.7 * n)), "validation": (int(0.7 * n), int(0.8 * n)),
              "test": (int(0.8 * n), n)}
    return DatasetSplits(**{
        k: Split(images[a:b], labels[a:b], np.arange(a, b), np.zeros(b - a, np.int32))
        for k, (a, b) in bounds.items()})


@pytest.fixture(scope="module")
def cells():
    """name -> (metrics, extra) of each cell in DEFENCES, through run_cell on one cnn7
    trained 4 epochs on tinted_blob_splits() (about 25 s).

    run_cell's sanity checks (dfjax.attacks.sanity: twice the steps and an unbounded
    attack, each one more compilation per cell) are stubbed out: they have their own tests,
    and this module is about the attack forms. The attacks run on one CPU device: compiling dominates here, and a
    split batch compiles slower (random_resize_pad with 4 draws on cnn7_tiny: 86 s split
    over two devices, 61 s on one)."""
    from dfjax.attacks.evaluate import AttackEvaluator
    from dfjax.models import build_model
    from dfjax.runner import pipeline
    from dfjax.training.detectors import train_new_detector

    splits = tinted_blob_splits()
    detector = train_new_detector(build_model(MODEL), splits, TRAINING,
                                  key=jax.random.fold_in(jax.random.key(0), 1))
    evaluator = AttackEvaluator(devices=jax.devices()[:1])
    results = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "sanity_checks", lambda *args, **kwargs: {})
        for name, defence in DEFENCES.items():
            cell = Cell(dataset=DATASET, model=MODEL, training=TRAINING, defence=defence,
                        attack=ATTACK, n_eval=N_EVAL, seed=0)
            metrics, _, extra = pipeline.run_cell(cell, detector, splits.test, evaluator,
                                                  N_EVAL)
            results[name] = metrics, extra
            print(f"{name:26s} clean {metrics['clean_accuracy']:.3f} "
                  f"robust {metrics['robust_accuracy']:.3f}")
    return results


def clean(cells, name):
    return cells[name][0]["clean_accuracy"]


def robust(cells, name):
    return cells[name][0]["robust_accuracy"]


def test_cue_survives_the_defences_and_the_bare_detector_is_not_robust(cells):
    assert clean(cells, "none") >= 0.9
    for name in ("jpeg", "jpeg_non_adaptive", "bit_depth", "bit_depth_non_adaptive"):
        assert clean(cells, name) >= 0.88, name
    for name in ("resize_pad", "resize_pad_no_eot", "resize_pad_non_adaptive"):
        assert clean(cells, name) >= 0.75, name  # zero padding costs it about 0.1
    assert robust(cells, "none") <= 0.25


def test_rows_record_the_attack_form(cells):
    for name, (metrics, extra) in cells.items():
        non_adaptive = name.endswith("_non_adaptive")
        assert metrics["adaptive"] == (0.0 if non_adaptive else 1.0), name
        assert extra["defence"]["adaptive"] is not non_adaptive, name
        if non_adaptive:
            assert extra["defence"]["surrogate"] == "none (attack ignores the defence)", name
            assert metrics["eot_samples"] == 1.0, name
    assert cells["jpeg"][1]["defence"]["surrogate"] == "differentiable_jpeg"
    assert cells["bit_depth"][1]["defence"]["surrogate"] == "identity"
    assert cells["resize_pad"][0]["eot_samples"] == 8.0
    assert cells["resize_pad_no_eot"][0]["eot_samples"] == 1.0


def test_bit_depth_looks_robust_only_when_the_attack_ignores_it(cells):
    """Measured: undefended 0.094; non-adaptive 0.230 (+13.5 points); BPDA 0.117 (+2)."""
    baseline = robust(cells, "none")
    assert robust(cells, "bit_depth_non_adaptive") >= baseline + 0.1
    assert robust(cells, "bit_depth") <= baseline + 0.1
    assert robust(cells, "bit_depth") <= robust(cells, "bit_depth_non_adaptive") - 0.06


def test_jpeg_looks_robust_only_when_the_attack_ignores_it(cells):
    """Measured: undefended 0.094; non-adaptive 0.480 (+39 points); BPDA through the
    differentiable JPEG 0.156 (+6). BPDA runs the real codec forward (host callback)."""
    baseline = robust(cells, "none")
    assert robust(cells, "jpeg_non_adaptive") >= baseline + 0.2
    assert robust(cells, "jpeg") <= baseline + 0.1
    assert robust(cells, "jpeg") <= robust(cells, "jpeg_non_adaptive") - 0.2


def test_random_resize_pad_looks_robust_until_attacked_with_eot(cells):
    """Measured: undefended 0.094; non-adaptive 0.398; one draw per step 0.316; EOT over
    8 draws 0.289."""
    baseline = robust(cells, "none")
    assert robust(cells, "resize_pad_non_adaptive") >= baseline + 0.2
    assert robust(cells, "resize_pad") <= robust(cells, "resize_pad_no_eot")
    assert robust(cells, "resize_pad") <= robust(cells, "resize_pad_non_adaptive") - 0.05
