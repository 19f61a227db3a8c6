"""Which test examples a detector's cells are evaluated on."""

from __future__ import annotations

import numpy as np

from dfjax.data.base import Split


def evaluation_subset(split: Split, n_eval: int, seed: int) -> Split:
    """The examples every cell of a detector is evaluated on (seeded, so the same for all):
    `split` at `evaluation_indices(split, n_eval, seed)`."""
    return split.select(evaluation_indices(split, n_eval, seed))


def evaluation_indices(split: Split, n_eval: int, seed: int) -> np.ndarray:
    """int64 [m <= n_eval]: indices into `split` of the evaluated examples, increasing.

    Still images: the first n_eval of a seeded permutation, in split order. Video frames
    (any frame index > 0): whole videos in seeded order until n_eval frames are reached,
    so the video-level metrics see every sampled frame of each video they score.
    """
    rng = np.random.default_rng(seed)
    if split.frames.any():
        videos = rng.permutation(np.unique(split.groups))
        frames_per_video = np.array([np.sum(split.groups == v) for v in videos])
        keep = videos[: max(1, int(np.searchsorted(np.cumsum(frames_per_video), n_eval,
                                                   side="right")))]
        order = np.flatnonzero(np.isin(split.groups, keep))
    else:
        order = np.sort(rng.permutation(len(split))[:n_eval])
    return order.astype(np.int64)
