import numpy as np
import pytest

from dfjax.metrics.video import video_level_metrics, video_scores


def test_video_score_is_the_mean_of_its_frames():
    groups = np.array([7, 3, 7, 3, 9])
    labels = np.array([1, 0, 1, 0, 1])
    p = np.array([0.9, 0.2, 0.3, 0.6, 0.4])
    ids, video_labels, mean_p = video_scores(groups, labels, p)
    assert ids.tolist() == [3, 7, 9] and video_labels.tolist() == [0, 1, 1]
    np.testing.assert_allclose(mean_p, [0.4, 0.6, 0.4])
    m = video_level_metrics(groups, labels, p, prefix="v_")
    assert m["v_num_videos"] == 3 and m["v_accuracy"] == pytest.approx(2 / 3)
    assert m["v_recall"] == 0.5 and m["v_precision"] == 1.0 and m["v_roc_auc"] == 0.75


def test_mixed_labels_in_a_video_raise():
    with pytest.raises(ValueError, match="different labels"):
        video_scores([1, 1], [0, 1], [0.5, 0.5])
