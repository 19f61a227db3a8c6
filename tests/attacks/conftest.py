"""One trained cnn7 shared by every slow attack test (and the torchattacks cross-check)."""

import dataclasses

import jax
import pytest

from dfjax.config import AttackSpec, Cell, DatasetSpec, DefenceSpec, ModelSpec, TrainSpec

# The cells' dataset label says what the detector really saw: checkerboard_splits()
# below, built by this fixture. "checkerboard" is no registered dataset on purpose:
# nothing loads or validates these cells' dataset (the fixture trains the detector and
# run_cell takes the test split as given; the name only enters the cell id, hence the
# per-cell attack key), and a registered name such as synthetic_faces would claim data
# (and a DATA_VERSIONS entry) these cells never used.
DATASET = DatasetSpec(name="checkerboard", image_size=32, num_examples=2000)
MODEL = ModelSpec(name="cnn7")
TRAINING = TrainSpec(epochs=4)


@dataclasses.dataclass
class Trained:
    model: object
    variables: dict
    detector: object  # dfjax.training.detectors.Detector
    test: object  # Split
    history: list

    def cell(self, name, eps, norm="linf", n_eval=128, **options):
        return Cell(dataset=DATASET, model=MODEL, training=TRAINING, defence=DefenceSpec(),
                    attack=AttackSpec(name=name, norm=norm, eps=eps, options=options),
                    n_eval=n_eval, seed=0)


def checkerboard_splits(n: int = 2000, size: int = 32, seed: int = 0):
    """An easy real/fake task: smooth random images; fakes carry a faint checkerboard
    (a generator-upsampling artifact) of amplitude 16/255 in a random quadrant.

    Used instead of synthetic_faces: at 32x32, 2000 examples and 4-8 epochs cnn7 stayed
    at chance on it when this was written (val accuracy 0.49-0.54, lr 3e-4 and 1e-3,
    difficulty 0.05 and the default), and a strength test needs a detector that works."""
    import numpy as np

    from dfjax.data.base import DatasetSplits, Split

    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0.15, 0.85, (n, size // 8, size // 8, 3))
    base = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)
    base += rng.normal(0, 0.03, base.shape)
    labels = (np.arange(n) % 2).astype(np.int32)
    yy, xx = np.mgrid[:size, :size]
    board = np.where((yy + xx) % 2 == 0, 1.0, -1.0)[None, :, :, None] * 16 / 255
    quadrant = rng.integers(0, 4, n)
    mask = np.zeros((n, size, size, 1))
    for q in range(4):
        r, c = divmod(q, 2)
        sel = quadrant == q
        mask[sel, r * size // 2:(r + 1) * size // 2, c * size // 2:(c + 1) * size // 2] = 1
    images = base + labels[:, None, None, None] * mask * board
    images = np.clip(np.round(images * 255), 0, 255).astype(np.uint8)
    bounds = {"train": (0, int(0.7 * n)), "validation": (int(0.7 * n), int(0.8 * n)),
              "test": (int(0.8 * n), n)}
    splits = {k: Split(images[a:b], labels[a:b], np.arange(a, b), np.zeros(b - a, np.int32))
              for k, (a, b) in bounds.items()}
    return DatasetSplits(**splits)


@pytest.fixture(scope="session")
def trained_cnn7():
    """cnn7 trained 4 epochs on 2000 32x32 checkerboard-artifact images (~20 s on 2 cores)."""
    from dfjax.models import build_model
    from dfjax.training.detectors import train_new_detector

    splits = checkerboard_splits()
    model = build_model(MODEL)
    detector = train_new_detector(model, splits, TRAINING,
                                  key=jax.random.fold_in(jax.random.key(0), 1))
    return Trained(model, detector.variables, detector, splits.test, detector.history)


@pytest.fixture(scope="session")
def evaluate_cell(trained_cnn7):
    """cell -> metrics, extra (via dfjax.runner.run_cell, one shared evaluator)."""
    from dfjax.attacks.evaluate import AttackEvaluator
    from dfjax.runner import run_cell

    evaluator = AttackEvaluator()
    cache = {}

    def run(cell):
        if cell.cell_id not in cache:
            metrics, _, extra = run_cell(cell, trained_cnn7.detector, trained_cnn7.test,
                                         evaluator, 128)
            cache[cell.cell_id] = metrics, extra
        return cache[cell.cell_id]

    return run
