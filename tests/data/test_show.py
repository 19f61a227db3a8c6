"""save_grid writes a labelled PNG of reals and fakes."""

import cv2
import numpy as np
import pytest

from dfjax.data.base import DatasetSplits, Split
from dfjax.data.show import save_grid
from dfjax.data.face_render import generate_split_arrays


def _splits() -> DatasetSplits:
    out = generate_split_arrays("test", num_examples=60, image_size=32)
    split = Split(out["images"], out["labels"], out["groups"], np.zeros(len(out["labels"]),
                                                                          np.int32))
    return DatasetSplits(train=split.take(0), validation=split.take(0), test=split)


def test_save_grid_writes_a_png(tmp_path):
    path = save_grid(_splits(), tmp_path / "sub" / "grid.png", n_per_class=4)
    image = cv2.imread(str(path))
    assert image is not None
    height, width = image.shape[:2]
    assert 200 <= height <= 400 and 400 <= width <= 700
    assert image.std() > 10  # drawn, not blank


def test_save_grid_with_few_examples_and_bad_count(tmp_path):
    splits = _splits()
    path = save_grid(splits, tmp_path / "grid.png", n_per_class=20)  # only 6 per class
    assert cv2.imread(str(path)) is not None
    with pytest.raises(ValueError, match="n_per_class"):
        save_grid(splits, tmp_path / "bad.png", n_per_class=0)
