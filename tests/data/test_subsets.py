import numpy as np

from dfjax.data.base import Split
from dfjax.data.subsets import evaluation_subset


def _split(groups, frames):
    n = len(groups)
    return Split(np.zeros((n, 4, 4, 3), np.uint8), np.asarray(groups) % 2,
                 np.asarray(groups, np.int64), np.asarray(frames, np.int32))


def test_video_subset_takes_whole_videos():
    groups = np.repeat(np.arange(10), 4)
    split = _split(groups, np.tile(np.arange(4), 10))
    sub = evaluation_subset(split, 10, seed=0)
    ids, counts = np.unique(sub.groups, return_counts=True)
    assert len(ids) == 2 and (counts == 4).all()  # 8 frames: whole videos, <= n_eval
    assert np.array_equal(evaluation_subset(split, 10, seed=0).groups, sub.groups)


def test_image_subset_is_seeded_and_sorted():
    split = _split(np.arange(20), np.zeros(20))
    a, b = evaluation_subset(split, 5, seed=1), evaluation_subset(split, 5, seed=1)
    assert len(a) == 5 and np.array_equal(a.groups, b.groups)
    assert np.all(np.diff(a.groups) > 0)
