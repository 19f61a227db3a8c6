"""Drawing helpers for the face renderer and the manipulations: antialiased shapes
from signed distances, painted onto a batch of images in place."""

from __future__ import annotations

import numpy as np


def per_image(p: np.ndarray) -> np.ndarray:
    """[b] -> [b, 1, 1] (broadcasts against a [b, h, w] pixel grid)."""
    return p[:, None, None]


def coverage(signed_distance: np.ndarray, px: np.ndarray) -> np.ndarray:
    """Antialiased coverage in [0, 1] of a shape from its signed distance (< 0 inside)."""
    return np.clip(0.5 - signed_distance / px, 0.0, 1.0)


def ellipse_sd(x, y, cx, cy, a, b):
    """Approximate signed distance to an ellipse (exact on the minor axis)."""
    r = np.sqrt(((x - cx) / a) ** 2 + ((y - cy) / b) ** 2)
    return (r - 1.0) * np.minimum(a, b)


def paint(image: np.ndarray, coverage: np.ndarray, colour: np.ndarray) -> None:
    """In place: image [b, h, w, 3] <- colour [b, 3] (or [b, h, w, 3]) where coverage [b, h, w]."""
    rows = np.flatnonzero(coverage.any(axis=(0, 2)))
    cols = np.flatnonzero(coverage.any(axis=(0, 1)))
    if rows.size == 0:
        return
    box = (slice(None), slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    colour = colour[:, None, None, :] if colour.ndim == 2 else colour[box]
    region = image[box]  # a view: only the batch's bounding box of the shape is touched
    region += coverage[box][..., None] * (colour - region)
