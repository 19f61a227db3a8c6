"""Video-level detection metrics: a video's fake score is the mean of its frames'.

The DFDC protocol (and DeepfakeBench) scores a video by averaging the fake
probabilities of its sampled frames; accuracy, precision, recall, F1, ROC AUC and
log loss then count videos, not frames.
"""

from __future__ import annotations

import numpy as np

from dfjax.metrics.classification import classification_metrics


def video_scores(groups, labels, fake_probability) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per video: (ids [v], labels [v], mean fake probability [v]), ids sorted.

    Raises ValueError when a video's frames carry different labels.
    """
    groups = np.asarray(groups)
    labels = np.asarray(labels, np.int64)
    p = np.asarray(fake_probability, np.float64)
    if not groups.shape == labels.shape == p.shape or groups.ndim != 1:
        raise ValueError(f"groups {groups.shape}, labels {labels.shape} and probabilities "
                         f"{p.shape} must be equal 1-D shapes")
    ids, inverse = np.unique(groups, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(ids))
    mean_p = np.bincount(inverse, weights=p, minlength=len(ids)) / np.maximum(counts, 1)
    video_labels = np.zeros(len(ids), np.int64)
    video_labels[inverse] = labels
    if np.any(video_labels[inverse] != labels):
        bad = ids[np.unique(inverse[video_labels[inverse] != labels])]
        raise ValueError(f"videos {bad[:5].tolist()} have frames with different labels")
    return ids, video_labels, mean_p


def video_level_metrics(groups, labels, fake_probability, *, prefix: str = "video_"
                        ) -> dict[str, float]:
    """Classification metrics over videos (mean frame probability > 0.5 = fake).

    Args:
      groups: int [n] video id per frame.
      labels: int [n] 0 real / 1 fake per frame (constant within a video).
      fake_probability: float [n] in [0, 1] per frame.
      prefix: prepended to each key.

    Returns:
      {prefix + accuracy, precision, recall, f1, roc_auc, log_loss, num_videos}.

    Example:
        >>> m = video_level_metrics([0, 0, 1, 1], [0, 0, 1, 1], [0.2, 0.6, 0.3, 0.4])
        >>> m["video_accuracy"], m["video_num_videos"]
        (0.5, 2.0)
    """
    _, video_labels, mean_p = video_scores(groups, labels, fake_probability)
    out = classification_metrics(video_labels, mean_p, prefix=prefix)
    out[prefix + "num_videos"] = float(len(video_labels))
    return out
