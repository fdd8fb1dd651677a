"""Patch-mask localisation scores against a hand-made example."""
import numpy as np
import pytest

from benchmark.metrics.patch import PatchMaskIoU


def test_smiou_nmiou_precision_recall_by_hand():
    m = PatchMaskIoU()
    true = np.zeros((4, 4))
    true[:2, :2] = 1  # 4 true pixels
    pred = np.zeros((4, 4))
    pred[:2, :3] = 0.7  # 6 predicted: TP 4, FP 2, FN 0
    pred[3, 3] = 0.49  # below the threshold: not predicted
    m.step(pred, true)
    second_true = np.zeros((4, 4))
    second_true[3, :] = 1  # 4 true pixels, 1 found: TP 1, FP 0, FN 3
    second_pred = np.zeros((4, 4))
    second_pred[3, 0] = 0.5
    m.step(second_pred, second_true)
    m.step(np.zeros((4, 4)), np.zeros((4, 4)))  # empty union: IoU 1, nothing added to the sums
    r = m.get_results()
    assert r["SmIoU"] == pytest.approx(5 / 10)
    assert r["NmIoU"] == pytest.approx((4 / 6 + 1 / 4 + 1) / 3)
    assert r["mask_precision"] == pytest.approx(5 / 7) and r["mask_recall"] == pytest.approx(5 / 8)


def test_no_predicted_patch_anywhere_has_no_precision_and_shapes_must_match():
    m = PatchMaskIoU()
    m.step(np.zeros((3, 3)), np.ones((3, 3)))
    r = m.get_results()
    assert r["SmIoU"] == 0 and r["NmIoU"] == 0 and np.isnan(r["mask_precision"]) and r["mask_recall"] == 0
    with pytest.raises(ValueError, match="shape"):
        m.step(np.zeros((3, 3)), np.zeros((3, 4)))
