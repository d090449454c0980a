"""Box IoU, REC accuracy and phrase-grounding recall@k against hand-computed values."""

import numpy as np
import pytest

from kosmos2.metrics import box_iou, rec_accuracy, rec_hits, recall_at_k, valid_box


@pytest.mark.unit
def test_box_iou_hand_values():
    assert box_iou([0, 0, 2, 2], [1, 1, 3, 3]) == pytest.approx(1 / 7)  # inter 1, union 4 + 4 - 1
    assert box_iou([0, 0, 2, 2], [0, 0, 2, 2]) == 1.0
    assert box_iou([0, 0, 1, 1], [1, 0, 2, 1]) == 0.0  # touching
    assert box_iou([0, 0, 4, 2], [1, 0, 3, 2]) == pytest.approx(0.5)
    assert box_iou([0, 0, 0, 2], [0, 0, 0, 2]) == 0.0  # zero area
    assert box_iou([0, 0, np.nan, 2], [0, 0, 1, 2]) == 0.0
    m = box_iou([[0, 0, 2, 2], [0, 0, 4, 2]], [[1, 1, 3, 3], [1, 0, 3, 2], [5, 5, 6, 6]])
    assert m.shape == (2, 3)
    # [0,0,2,2] vs [1,0,3,2]: inter 2, union 6; [0,0,4,2] vs [1,1,3,3]: inter 2, union 8 + 4 - 2
    np.testing.assert_allclose(m, [[1 / 7, 2 / 6, 0], [2 / 10, 0.5, 0]])
    with pytest.raises(ValueError):
        box_iou([0, 0, 1], [0, 0, 1, 1])


@pytest.mark.unit
def test_rec_accuracy_counts_missing_and_invalid_predictions_as_wrong():
    gt = [[0, 0, 4, 2]] * 6
    preds = [[1, 0, 3, 2], [0, 0, 4, 2], None, [3, 3, 1, 1], [0, 0, 1, 1], "junk"]
    # IoU: 0.5 (>= counts), 1.0, missing, inverted, 0.125, junk
    assert rec_hits(preds, gt) == [True, True, False, False, False, False]
    assert rec_accuracy(preds, gt) == pytest.approx(2 / 6)
    assert rec_accuracy(preds, gt, thr=0.6) == pytest.approx(1 / 6)
    assert rec_accuracy([], []) == 0.0
    assert not valid_box([0, 0, 1]) and valid_box((0.1, 0.1, 0.2, 0.3))
    with pytest.raises(ValueError):
        rec_accuracy([None], [])


@pytest.mark.unit
def test_recall_at_k_any_box_protocol():
    g = [0, 0, 10, 10]
    far = [50, 50, 60, 60]
    preds = [
        [g],  # hit at 1
        [far, far, [0, 0, 10, 9]],  # hit at 3 -> R@5
        [far] * 6 + [g],  # hit at 7 -> R@10
        [far] * 12 + [g],  # hit at 13 -> never counted
        [],  # nothing generated
        [[20, 20, 30, 30]],  # matches the second GT box of the phrase (any-box)
        [g],  # phrase without GT boxes: not scored
    ]
    gts = [[g], [g], [g], [g], [g], [g, [20, 20, 30, 30]], []]
    r = recall_at_k(preds, gts)
    assert r["n"] == 6
    assert r["R@1"] == pytest.approx(2 / 6)
    assert r["R@5"] == pytest.approx(3 / 6)
    assert r["R@10"] == pytest.approx(4 / 6)
    assert recall_at_k(preds, gts, ks=(1, 20), thr=0.95)["R@20"] == pytest.approx(4 / 6)  # [0,0,10,9] has IoU 0.9
