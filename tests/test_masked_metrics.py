"""MaskedSODMetrics: equals PySODMetrics (through SODMetrics) with every pixel kept and on a crop, known
values on a tiny image, and the patch case of issue 10 (pasting the GT into the patch lifts S)."""
import warnings

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from benchmark.metrics.masked import DEFINITION, MASKED_SCALARS, MaskedSODMetrics
from benchmark.metrics.saliency import SODMetrics


def _reference(pred: np.ndarray, gt: np.ndarray):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PySODMetrics' own RuntimeWarnings on degenerate inputs
        return SODMetrics().step(pred, gt)


def _assert_same(ours, ref, tol: float = 1e-12) -> None:
    (s, f, e), (rs, rf, re) = ours, ref
    for k in MASKED_SCALARS:
        assert abs(s[k] - rs[k]) < tol, (k, s[k], rs[k])
    assert f.shape == e.shape == (256,)
    np.testing.assert_allclose(f, rf, rtol=0, atol=tol)
    np.testing.assert_allclose(e, re, rtol=0, atol=tol)


def _blobs(rng: np.random.Generator, shape: tuple[int, int], fraction: float) -> np.ndarray:
    """A GT of smooth random blobs covering about ``fraction`` of the image."""
    field = gaussian_filter(rng.random(shape), 3)
    return ((field > np.quantile(field, 1 - fraction)) * 255).astype(np.uint8)


def _cases():
    rng = np.random.default_rng(0)
    for shape in ((48, 64), (37, 53), (64, 29), (40, 40)):
        gt = _blobs(rng, shape, 0.3)
        smooth = gaussian_filter(rng.random(shape), 4)
        yield f"smooth{shape}", (255 * (smooth - smooth.min()) / np.ptp(smooth)).astype(np.uint8), gt
        good = np.clip(gaussian_filter(gt.astype(float), 1.5) + rng.normal(0, 12, shape), 0, 255).astype(np.uint8)
        yield f"good{shape}", good, gt
        yield f"noise{shape}", rng.integers(0, 256, shape).astype(np.uint8), gt
    gt = _blobs(rng, (45, 70), 0.4)
    yield "constant", np.full(gt.shape, 97, np.uint8), gt
    yield "constant-zero", np.zeros(gt.shape, np.uint8), gt
    noise = rng.integers(0, 256, (33, 51)).astype(np.uint8)
    yield "gt-all-zero", noise, np.zeros(noise.shape, np.uint8)
    yield "gt-all-one", noise, np.full(noise.shape, 255, np.uint8)
    yield "gt-all-zero-constant", np.full(noise.shape, 200, np.uint8), np.zeros(noise.shape, np.uint8)


@pytest.mark.parametrize("name,pred,gt", list(_cases()), ids=lambda v: v if isinstance(v, str) else "")
def test_all_kept_equals_pysodmetrics(name, pred, gt):
    _assert_same(MaskedSODMetrics().step(pred, gt, np.ones(gt.shape, bool)), _reference(pred, gt))


def test_rectangle_kept_equals_pysodmetrics_on_the_crop():
    """Keeping a rectangle = PySODMetrics on that crop (even offsets, so round-half-even centroids agree)."""
    rng = np.random.default_rng(1)
    gt = _blobs(rng, (60, 72), 0.3)
    pred = np.clip(gaussian_filter(gt.astype(float), 2) + rng.normal(0, 40, gt.shape), 0, 255).astype(np.uint8)
    for r0, r1, c0, c1 in ((4, 50, 6, 70), (0, 31, 10, 45), (12, 60, 0, 72)):
        keep = np.zeros(gt.shape, bool)
        keep[r0:r1, c0:c1] = True
        ref = _reference(pred[r0:r1, c0:c1], gt[r0:r1, c0:c1])
        assert np.isfinite(ref[0]["S"])
        _assert_same(MaskedSODMetrics().step(pred, gt, keep), ref)


def test_known_values_on_a_tiny_image():
    """2x4 image, pixel (0,2) (a false positive) excluded: 7 kept pixels, GT fg = 4, p = x / 255 (min 0, max 1).

    p on kept fg: 1, .2, 1, 1; on kept bg: 0, 0, .4.
    MAE = (.8 + .4) / 7. Adaptive threshold min(2 * 3.6 / 7, 1) = 1: TP = 3, FP = 0, P = 1, R = 3/4,
    F = 1.3 * .75 / (.3 + .75). E (TP 3, FP 0, FN 1, TN 3; mean pred 3/7, mean GT 4/7): xi = 24/25 on the
    6 agreeing pixels ((1 + xi)^2 / 4 = .9604), -1 on the miss (0): E = 6 * .9604 / 6.
    Curves (index 255 - t): t = 200 as adaptive; t = 80 adds the .4 FP: F = .75, E = (3 + 2 + 2 / 2500) / 6;
    t = 30 adds the .2 TP: F = 1.3 * .8 / (.24 + 1); t = 0 takes all: F = 1.3 * (4/7) / (.3 * 4/7 + 1), E = 7/4 / 6.
    """
    pred = np.array([[255, 51, 255, 0], [255, 255, 0, 102]], np.uint8)
    gt = np.array([[255, 255, 0, 0], [255, 255, 0, 0]], np.uint8)
    keep = np.ones(gt.shape, bool)
    keep[0, 2] = False
    s, f, e = MaskedSODMetrics().step(pred, gt, keep)
    assert s["MAE"] == pytest.approx(1.2 / 7, abs=1e-12)
    assert s["adpF"] == pytest.approx(0.975 / 1.05, abs=1e-12)
    assert s["adpE"] == pytest.approx(0.9604, abs=1e-12)
    np.testing.assert_allclose(f[[55, 175, 225, 255]], [0.975 / 1.05, 0.75, 1.04 / 1.24, 5.2 / 8.2], atol=1e-12)
    np.testing.assert_allclose(e[[55, 175, 255]], [0.9604, 5.0008 / 6, 7 / 4 / 6], atol=1e-12)
    assert _reference(pred, gt)[0]["MAE"] == pytest.approx(2.2 / 8)  # the excluded FP counts when all kept


def _patch_case():
    """Issue 10: a 30x30 object in a 100x100 image, a 20x20 (4%) patch on it; the attack erased the object
    (prediction all zero) and the patch pixels carry the GT (the old scoring's paste)."""
    gt = np.zeros((100, 100), np.uint8)
    gt[35:65, 35:65] = 255
    patch = np.zeros(gt.shape, bool)
    patch[40:60, 40:60] = True
    erased = np.zeros(gt.shape, np.uint8)
    pasted = erased.copy()
    pasted[patch] = gt[patch]
    return gt, patch, erased, pasted


def test_patch_pixels_are_removed_not_scored_as_perfect():
    gt, patch, erased, pasted = _patch_case()
    plain = _reference(erased, gt)[0]["S"]  # S on the full map
    old = _reference(pasted, gt)[0]["S"]  # old S_nopatch: the GT pasted into the patch
    new = MaskedSODMetrics().step(pasted, gt, ~patch)[0]["S"]
    erased_on_kept = MaskedSODMetrics().step(erased, gt, ~patch)[0]["S"]
    assert plain == pytest.approx(0.455, abs=1e-3) and old == pytest.approx(0.702, abs=1e-3)  # the numbers
    assert new == pytest.approx(erased_on_kept, abs=1e-12)  # whatever the patch pixels hold does not matter
    assert abs(new - plain) < 0.03  # the erased object still scores as erased
    assert new < old - 0.2


def test_excluding_wrong_pixels_raises_the_score_and_correct_ones_do_not():
    gt = np.zeros((60, 80), np.uint8)
    gt[20:45, 25:55] = 255
    pred = np.clip(gaussian_filter(gt.astype(float), 1.5), 0, 255).astype(np.uint8)
    pred[3:15, 3:15] = 255  # a false-positive blob
    wrong, right = np.zeros(gt.shape, bool), np.zeros(gt.shape, bool)
    wrong[3:15, 3:15] = True
    right[45:57, 63:75] = True  # correct background of the same size
    m = MaskedSODMetrics()
    base = m.step(pred, gt, np.ones(gt.shape, bool))[0]
    no_wrong, no_right = m.step(pred, gt, ~wrong)[0], m.step(pred, gt, ~right)[0]
    assert no_wrong["S"] > base["S"] + 0.05 and no_wrong["MAE"] < base["MAE"] / 2
    assert no_wrong["adpF"] > base["adpF"] and no_wrong["adpE"] > base["adpE"]
    for k in MASKED_SCALARS:
        assert abs(no_right[k] - base[k]) < 0.01, k


def test_degenerate_masks():
    gt, patch, _, pasted = _patch_case()
    s, f, e = MaskedSODMetrics().step(pasted, gt, np.zeros(gt.shape, bool))
    assert all(np.isnan(v) for v in s.values()) and np.isnan(f).all() and np.isnan(e).all()
    # only the object kept: all-foreground GT on the kept pixels, scored as PySODMetrics scores an all-one GT
    obj = gt > 128
    _assert_same(MaskedSODMetrics().step(pasted, gt, obj), _reference(pasted[35:65, 35:65], gt[35:65, 35:65]))
    with pytest.raises(ValueError):
        MaskedSODMetrics().step(pasted, gt, obj[:-1])
    with pytest.raises(TypeError):
        MaskedSODMetrics().step(pasted, gt, obj.astype(np.uint8))
    assert "kept pixels" in DEFINITION and "\n" not in DEFINITION
