"""Fixed-shape batches over n examples: one compiled function serves every batch."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def padded_batches(n: int, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(index array of length batch_size, mask float32 [batch_size]) covering 0..n-1; the
    last batch is padded by repeating index 0 (mask 0 there), so every batch has one
    static shape."""
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        mask = np.ones(batch_size, np.float32)
        if len(idx) < batch_size:
            mask[len(idx):] = 0
            idx = np.concatenate([idx, np.zeros(batch_size - len(idx), idx.dtype)])
        yield idx, mask
