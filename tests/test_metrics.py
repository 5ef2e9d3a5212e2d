import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from sdaie.metrics import average_precision, detection_metrics, roc_auc


@pytest.mark.parametrize("seed", range(5))
def test_ap_and_auc_match_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=200)
    s = np.round(rng.normal(size=200) + y, 1)  # rounding makes many ties
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_known_values():
    # ranking: fake 0.9, real 0.8, fake 0.7, real 0.1 -> AP = (1 + 2/3) / 2, AUC = 3/4
    y, s = [1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]
    assert average_precision(y, s) == pytest.approx(5 / 6)
    assert roc_auc(y, s) == pytest.approx(0.75)


def test_detection_metrics_positive_class_is_named():
    y = np.array([0, 0, 0, 1, 1])
    ll = np.array([5.0, 4.0, 1.0, 2.0, 0.5])  # one-class: log-likelihood, high = real
    m = detection_metrics(y, -ll, ~(ll > 1.5))
    assert m["ap_real_pos"] == pytest.approx(average_precision_score(1 - y, ll))
    assert m["ap_fake_pos"] == pytest.approx(average_precision_score(y, -ll))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, -ll))
    assert m["real_acc"] == pytest.approx(2 / 3) and m["fake_acc"] == pytest.approx(1 / 2)
    assert m["acc"] == pytest.approx(3 / 5)
    assert (m["n_real"], m["n_fake"]) == (3, 2)


def test_single_class_set_gives_nan_not_an_error():
    m = detection_metrics([1, 1], [0.2, 0.9], [False, True])
    assert m["acc"] == 0.5 and m["fake_acc"] == 0.5
    assert math.isnan(m["real_acc"]) and math.isnan(m["roc_auc"]) and math.isnan(m["ap_real_pos"])


def test_bad_labels_rejected():
    with pytest.raises(ValueError, match="0 \\(real\\) or 1"):
        detection_metrics([0, 2], [0.1, 0.2], [False, True])


# --------------------------------------------------------------------------------------------
# Localisation
# --------------------------------------------------------------------------------------------


def test_mask_coverage_against_counting_pixels():
    from sdaie.metrics import mask_coverage, patch_labels

    rng = np.random.default_rng(0)
    mask = rng.random((40, 50)) < 0.3
    boxes = np.array([[0, 0, 16, 16], [30, 20, 46, 36], [-8, -4, 8, 12], [44, 30, 60, 46]])
    ref = []
    for x0, y0, x1, y1 in boxes:
        inside = mask[max(y0, 0):min(y1, 40), max(x0, 0):min(x1, 50)].sum()
        ref.append(inside / ((x1 - x0) * (y1 - y0)))  # outside the image counts as not set
    assert np.allclose(mask_coverage(mask, boxes), ref)
    assert patch_labels(mask, boxes, 0.3).tolist() == [int(r >= 0.3) for r in ref]


def test_overlap_scores_against_sklearn():
    from sklearn.metrics import f1_score, jaccard_score

    from sdaie.metrics import overlap_scores

    rng = np.random.default_rng(1)
    pred, truth = rng.random((30, 30)) < 0.4, rng.random((30, 30)) < 0.3
    valid = rng.random((30, 30)) < 0.8
    f1, iou = overlap_scores(pred, truth, valid)
    assert f1 == pytest.approx(f1_score(truth[valid], pred[valid]))
    assert iou == pytest.approx(jaccard_score(truth[valid], pred[valid]))
    empty = np.zeros((4, 4), bool)
    assert overlap_scores(empty, empty) == (1.0, 1.0)
    assert overlap_scores(~empty, empty) == (0.0, 0.0)


@pytest.mark.parametrize("score", [[np.inf, np.inf, 0.2, 0.9], [-np.inf, -np.inf, 0.2, -np.inf],
                                   [np.inf, -np.inf, np.inf, -np.inf]])
def test_ties_at_infinity_are_ties(score):
    """Against scikit-learn (which refuses inf) on the same ranking with finite stand-ins."""
    y = np.array([1, 0, 1, 0])
    s = np.array(score)
    same_order = np.nan_to_num(s, posinf=1e300, neginf=-1e300)
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, same_order))
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, same_order))
    assert roc_auc([1, 0], [np.inf, np.inf]) == 0.5
