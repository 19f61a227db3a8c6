"""A picture of a dataset: one row of real and one row of fake examples, labelled.

Used by `dfjax data show NAME --out FILE.png`, so a person can look at the data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dfjax.data.base import DatasetSplits

_CLASS_NAMES = ("real", "fake")
_CELL_INCHES = 1.3
_DPI = 100


def save_grid(splits: DatasetSplits, path: str | Path, *, n_per_class: int = 8,
              split: str = "test") -> Path:
    """Writes a PNG grid: the first `n_per_class` reals (top row) and fakes (bottom row).

    Args:
      splits: a loaded dataset; images uint8 [n, h, w, c] with c = 1 or 3.
      path: the PNG file to write (parent folders are created).
      n_per_class: columns, i.e. examples shown per class (fewer if the split has fewer).
      split: "train", "validation" or "test".

    Returns:
      The path written. The image is about 130 * n_per_class x 290 pixels.

    Example:
      >>> from dfjax.data.show import save_grid
      >>> save_grid(splits, "/tmp/faces.png")  # doctest: +SKIP
    """
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1; got {n_per_class}")
    data = splits.split(split)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(_CELL_INCHES * n_per_class, _CELL_INCHES * 2 + 0.6), dpi=_DPI)
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, n_per_class, squeeze=False)
    for label, row in enumerate(axes):
        index = np.flatnonzero(data.labels == label)[:n_per_class]
        for column, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            if column >= len(index):
                ax.axis("off")
                continue
            image = data.images[index[column]]
            if image.shape[-1] == 1:
                ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            else:
                ax.imshow(image, interpolation="nearest")
            ax.set_title(f"{_CLASS_NAMES[label]}, id {int(data.groups[index[column]])}", fontsize=8)
            if column == 0:
                ax.set_ylabel(_CLASS_NAMES[label], fontsize=10)
    figure.suptitle(f"{split}: {len(data)} examples", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path
