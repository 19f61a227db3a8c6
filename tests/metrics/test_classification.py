import math

import numpy as np
import pytest

from dfjax.metrics import (
    accuracy,
    attack_success_rate,
    classification_metrics,
    confusion,
    log_loss,
    precision_recall_f1,
    robust_flags,
    roc_auc,
    summary,
)


def test_confusion_precision_recall_by_hand():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    p = np.array([1, 0, 1, 1, 0, 0, 0, 1])
    assert confusion(y, p) == {"tp": 3, "fp": 1, "tn": 3, "fn": 1}
    assert accuracy(y, p) == 6 / 8
    precision, recall, f1 = precision_recall_f1(y, p)
    assert precision == 3 / 4 and recall == 3 / 4 and f1 == pytest.approx(0.75)


def test_no_predicted_positives_gives_zero_precision():
    assert precision_recall_f1(np.array([1, 0]), np.array([0, 0])) == (0.0, 0.0, 0.0)


def test_roc_auc_by_hand_with_ties():
    y = np.array([0, 0, 1, 1])
    assert roc_auc(y, np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert roc_auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert roc_auc(y, np.array([0.9, 0.8, 0.1, 0.2])) == 0.0
    assert math.isnan(roc_auc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_log_loss_by_hand():
    y = np.array([1, 0])
    p = np.array([0.8, 0.4])
    assert log_loss(y, p) == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2)
    assert np.isfinite(log_loss(np.array([1]), np.array([0.0])))  # clipped, not inf


def test_classification_metrics_threshold_and_prefix():
    m = classification_metrics(np.array([1, 0, 1, 0]), np.array([0.9, 0.6, 0.4, 0.1]),
                               prefix="adv_")
    assert m["adv_accuracy"] == 0.5 and m["adv_precision"] == 0.5 and m["adv_recall"] == 0.5
    assert m["adv_roc_auc"] == 0.75


def test_robust_flags_and_success_rate():
    y = np.array([1, 0, 1, 0])
    clean = robust_flags(y, np.array([0.9, 0.1, 0.2, 0.3]))
    adv = robust_flags(y, np.array([0.4, 0.1, 0.2, 0.9]))
    assert clean.tolist() == [True, True, False, True]
    assert adv.tolist() == [False, True, False, False]
    assert attack_success_rate(clean, adv) == pytest.approx(2 / 3)


def test_shape_mismatch_rejected():
    with pytest.raises(ValueError, match="equal 1-D"):
        accuracy(np.array([1, 0]), np.array([1]))


def test_summary():
    s = summary([0.1, 0.5, 0.3], prefix="tcp")
    assert s == {"tcp_mean": pytest.approx(0.3), "tcp_median": 0.3, "tcp_min": 0.1}


def test_roc_curve_points_and_area():
    """Scores .1 .4 .35 .8 for labels 0 0 1 1: the curve steps through (0, .5), (.5, .5),
    (.5, 1), (1, 1) and its trapezoid area equals roc_auc (0.75)."""
    from dfjax.metrics.classification import roc_auc, roc_curve

    y, s = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    fpr, tpr = roc_curve(y, s)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(y, s)) == 0.75
    tied_fpr, tied_tpr = roc_curve(np.array([0, 1]), np.array([0.5, 0.5]))
    np.testing.assert_allclose(tied_fpr, [0, 1])
    np.testing.assert_allclose(tied_tpr, [0, 1])
