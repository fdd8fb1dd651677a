import warnings

import numpy as np
import py_sod_metrics as psm
import pytest

from benchmark.metrics.saliency import SODMetrics, mask_iou, summarise, to_uint8
from benchmark.tasks.saliency import SaliencyTask


def _score(pairs):
    m, scalars, f, e = SODMetrics(), [], [], []
    for pred, gt in pairs:
        s, fc, ec = m.step(pred, gt)
        scalars.append(s), f.append(fc), e.append(ec)
    return summarise(scalars, np.array(f), np.array(e))


def test_perfect_prediction_scores_one():
    gt = np.zeros((30, 40), np.uint8)
    gt[5:20, 10:30] = 255
    r = _score([(gt.copy(), gt)])
    assert abs(r["S"] - 1) < 1e-9 and r["MAE"] == 0.0 and abs(r["maxF"] - 1) < 1e-3 and abs(r["maxE"] - 1) < 1e-3


def test_mae_known_value():
    gt = np.zeros((10, 10), np.uint8)
    gt[:, :5] = 255
    pred = np.full((10, 10), 51, np.uint8)  # 0.2 everywhere: |0.2-1| on half, 0.2 on half
    assert abs(_score([(pred, gt)])["MAE"] - 0.5) < 1e-9


def test_summary_equals_pysodmetrics_reduction():
    rng = np.random.default_rng(0)
    pairs = [((rng.random((32, 24)) * 255).astype(np.uint8), (rng.random((32, 24)) > 0.7).astype(np.uint8) * 255)
             for _ in range(6)]
    ours = _score(pairs)
    sm, mae, em, wfm = psm.Smeasure(), psm.MAE(), psm.Emeasure(), psm.WeightedFmeasure()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fm = psm.Fmeasure()
    for p, g in pairs:
        for metric in (sm, mae, em, wfm, fm):
            metric.step(p, g)
    f, e = fm.get_results()["fm"], em.get_results()["em"]
    ref = {"S": sm.get_results()["sm"], "MAE": mae.get_results()["mae"], "wF": wfm.get_results()["wfm"],
           "maxF": f["curve"].max(), "meanF": f["curve"].mean(), "adpF": f["adp"],
           "maxE": e["curve"].max(), "meanE": e["curve"].mean(), "adpE": e["adp"]}
    for k, v in ref.items():
        assert abs(ours[k] - v) < 1e-9, k


def test_to_uint8_rounds_and_clips():
    assert to_uint8(np.array([-0.1, 0.5, 1.2])).tolist() == [0, 128, 255]


def test_mask_iou_known_values_and_saliency_asr_counts_clean_correct_images_only():
    gt = np.zeros((4, 4), np.uint8)
    gt[:2, :2] = 255  # 4 salient pixels
    pred = np.zeros((4, 4), np.uint8)
    pred[:2, :1] = 200  # 2 of them above 0.5 ...
    pred[3, 3] = 128  # ... and one false positive: IoU 2 / 5
    pred[2, 0] = 127  # below 0.5: not predicted
    assert mask_iou(pred, gt) == 2 / 5
    assert mask_iou(np.zeros_like(gt), np.zeros_like(gt)) == 1.0  # nothing salient, nothing predicted
    assert mask_iou(np.zeros_like(gt), gt) == 0.0

    clean = [{"image": "a", "IoU": 0.9}, {"image": "b", "IoU": 0.5}, {"image": "c", "IoU": 0.2}]
    attacked = [{"image": "a", "IoU": 0.1}, {"image": "b", "IoU": 0.6}, {"image": "c", "IoU": 0.0}]
    assert SaliencyTask().successes(attacked, clean) == [True, False]  # a broken, b held; c was wrong clean
    assert SaliencyTask().successes(attacked, clean[2:]) == []


def test_bootstrap_interval_of_a_mean_matches_the_normal_approximation_and_is_seeded():
    from benchmark.metrics.bootstrap import mean_ci

    x = np.random.default_rng(5).normal(0.5, 0.4, 400)
    se = x.std() / np.sqrt(len(x))  # about 0.02: the normal interval mean -+ 1.96 se
    low, high = mean_ci(x, seed=0)
    assert low == pytest.approx(x.mean() - 1.96 * se, abs=0.004) and high == pytest.approx(x.mean() + 1.96 * se, abs=0.004)
    assert mean_ci(x, seed=0) == (low, high) and mean_ci(x, seed=1) != (low, high)
    assert mean_ci([0.7] * 10, seed=0) == (0.7, 0.7)
    assert all(np.isnan(mean_ci([], seed=0)))
