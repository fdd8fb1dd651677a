"""SOD metrics over a subset of pixels: the scores with a patch's pixels excluded (``S_nopatch``, ...).

A patch cell is also scored with the patch region removed from the scene: from the prediction and from
the GT alike. Each metric below is PySODMetrics' own definition (github.com/lartpang/PySODMetrics) evaluated on
the kept pixels ``K = {i : keep_i}``, n = |K|, instead of on the whole image: every min, max, mean,
variance, count, centroid and area weight is taken over K only. With ``keep`` all True it equals
PySODMetrics 1.6 to rounding (measured <= 2e-16; tests check 1e-12), and keeping a rectangle equals
PySODMetrics on that crop.

Inputs, as PySODMetrics reads them, but over K: p_i = x_i / 255 min-max normalised over K (left as is when
constant on K; so a saturated patch does not rescale the rest), g_i = [gt_i > 128]; mu(.) is the mean
over the pixels named, FG = sum_K g, BG = n - FG. A kept GT that is all background or all foreground
takes PySODMetrics' rules for such a GT (the S, E and F cases with y, FG or BG = 0 below).

* MAE = mu_K |p - g|.
* S-measure (Fan et al., ICCV 2017), alpha = 0.5: with y = mu_K g, S = 1 - mu_K p if y = 0, mu_K p if y = 1,
  else max(0, alpha S_o + (1 - alpha) S_r).
  Object term: S_o = y O(p on K&g) + (1 - y) O(1 - p on K&~g), O(x) = 2 mu(x) / (mu(x)^2 + 1 + std1(x) + eps),
  std1 the sample std (ddof 1; 0 for one pixel).
  Region term: the centroid (r, c) = round(mean row, mean column) of the kept foreground pixels (image
  coordinates) splits the image into the quadrants rows <= r / > r by columns <= c / > c; S_r =
  sum_q (n_q / n) SSIM_q over the kept pixels K_q of each quadrant, n_q = |K_q|, with
  SSIM = 4 mx my sxy / ((mx^2 + my^2)(sx + sy) + eps) (1 when numerator and denominator are both 0;
  variances and covariance divided by n_q - 1 + eps). A quadrant with no kept pixel has weight 0 and is
  skipped (PySODMetrics returns NaN when the GT centroid falls on the last row or column, which leaves a
  quadrant empty; there we return the finite value instead).
* F-measure (Achanta et al., CVPR 2009), beta^2 = 0.3: for a binarisation b of p on K, TP = sum_K b g,
  FP = sum_K b (1 - g), P = TP / (TP + FP), R = TP / FG (0 where the denominator is 0),
  F = (1 + beta^2) P R / (beta^2 P + R) (0 where that denominator is 0).
* E-measure (Fan et al., IJCAI 2018): with the four counts of (b, g) on K and the bias-free values
  a = b - mu_K b, e = g - mu_K g, the alignment xi = 2 a e / (a^2 + e^2 + eps), E = sum_K (1 + xi)^2 / 4
  / (n - 1 + eps); when FG = 0, E = sum_K (1 - b) / (n - 1 + eps), when BG = 0, E = sum_K b / (n - 1 + eps).
* adaptive F and E: b = [p >= min(2 mu_K p, 1)]. Curves (256 entries): b = [floor(255 p) >= t], entry
  255 - t for t = 0..255 (index 0 is the strictest threshold), as PySODMetrics orders them.
* No kept pixel: every score and curve entry is NaN (there is nothing to score).

Weighted F (Margolin et al., CVPR 2014) is left out: it copies each background pixel's error from its
nearest GT-foreground pixel (a distance transform) and smooths the error with a 7x7 Gaussian, both of
which read values across the excluded region. Restricting it to K needs choices PySODMetrics does not make
(nearest kept or any foreground pixel, zero-filled or renormalised smoothing), so any masked wF would be
our own metric rather than wF on the remaining scene.

We write our own because PySODMetrics has no mask support, and the previous work-around (pasting the GT
into the prediction inside the patch) scores those pixels as perfect and lifts every score.
"""
from __future__ import annotations

import numpy as np

EPS = np.spacing(1)  # PySODMetrics' (MATLAB's) eps
MASKED_SCALARS = ("S", "MAE", "adpF", "adpE")
DEFINITION = ("_nopatch scores: S-measure, MAE, adaptive/max/mean F (beta^2 = 0.3) and E-measure computed as "
              "PySODMetrics does, on the kept pixels only (the patch region removed from prediction and GT): "
              "min-max normalisation, means, variances, counts, the GT centroid and the quadrant area weights "
              "all over the kept pixels; wF is not reported.")


def _divide(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    """num / den, 0 where den = 0 (PySODMetrics' ``_BaseHandler.divide``)."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast_shapes(num.shape, den.shape)), where=den != 0)


def _f_measure(tp: np.ndarray | int, fp: np.ndarray | int, n_fg: int, beta2: float) -> np.ndarray:
    """F = (1 + beta^2) P R / (beta^2 P + R), P = TP / (TP + FP), R = TP / FG, each 0 on a zero denominator."""
    p, r = _divide(tp, np.add(tp, fp)), _divide(tp, n_fg)
    return _divide((beta2 + 1) * p * r, beta2 * p + r)


def _e_measure(tp: np.ndarray | int, fp: np.ndarray | int, n_fg: int, n: int) -> np.ndarray:
    """E = sum (1 + xi)^2 / 4 / (n - 1 + eps) over the four (pred, GT) cells, xi = 2 a e / (a^2 + e^2 + eps)."""
    pred_fg = np.add(tp, fp)
    if n_fg == 0:
        total = n - pred_fg
    elif n_fg == n:
        total = pred_fg
    else:
        mp, mg = pred_fg / n, n_fg / n
        fn = n_fg - tp
        cells = ((tp, 1 - mp, 1 - mg), (fp, 1 - mp, -mg), (fn, -mp, 1 - mg), (n - pred_fg - fn, -mp, -mg))
        total = sum(((2 * (a * e) / (a**2 + e**2 + EPS) + 1) ** 2 / 4) * count for count, a, e in cells)
    return np.asarray(total / (n - 1 + EPS), np.float64)


def _s_object(x: np.ndarray) -> float:
    """O(x) = 2 mu / (mu^2 + 1 + std1 + eps)."""
    mean = np.mean(x)
    std = np.std(x, ddof=1) if x.size > 1 else 0.0
    return 2 * mean / (mean**2 + 1 + std + EPS)


def _ssim(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM = 4 mx my sxy / ((mx^2 + my^2)(sx + sy) + eps); 1 when numerator and denominator are both 0."""
    n = x.size
    mx, my = np.mean(x), np.mean(y)
    sx = np.sum((x - mx) ** 2) / (n - 1 + EPS)
    sy = np.sum((y - my) ** 2) / (n - 1 + EPS)
    sxy = np.sum((x - mx) * (y - my)) / (n - 1 + EPS)
    num, den = 4 * mx * my * sxy, (mx**2 + my**2) * (sx + sy)
    if num != 0:
        return num / (den + EPS)
    return 1.0 if den == 0 else 0.0


class MaskedSODMetrics:
    """PySODMetrics' S, MAE, adaptive F/E and F/E curves over the kept pixels of each image (see the module)."""

    alpha = 0.5  # S = alpha S_object + (1 - alpha) S_region
    beta2 = 0.3  # beta^2 of the F-measure

    def step(self, pred_u8: np.ndarray, gt_u8: np.ndarray,
             keep: np.ndarray) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
        """Score one uint8 prediction against its uint8 GT on the pixels where ``keep`` (bool, same size).

        Returns (scalars ``MASKED_SCALARS``, F-curve[256], E-curve[256]), as ``SODMetrics.step`` without wF.
        """
        if not pred_u8.shape == gt_u8.shape == keep.shape:
            raise ValueError(f"prediction {pred_u8.shape}, GT {gt_u8.shape} and keep {keep.shape} differ in size")
        if keep.dtype != bool:
            raise TypeError(f"keep must be a bool mask, got {keep.dtype}")
        n = int(np.count_nonzero(keep))
        if n == 0:
            return dict.fromkeys(MASKED_SCALARS, float("nan")), np.full(256, np.nan), np.full(256, np.nan)
        rows, cols = np.nonzero(keep)
        p = pred_u8[keep] / 255
        if p.max() != p.min():
            p = (p - p.min()) / (p.max() - p.min())
        g = gt_u8[keep] > 128
        n_fg = int(np.count_nonzero(g))

        # Curves: counts of kept foreground / background pixels with floor(255 p) >= 255, 254, ..., 0.
        q = (p * 255).astype(np.uint8)
        tps = np.cumsum(np.bincount(q[g], minlength=256)[::-1])
        fps = np.cumsum(np.bincount(q[~g], minlength=256)[::-1])
        b = p >= min(2 * p.mean(), 1)
        tp, fp = int(np.count_nonzero(b & g)), int(np.count_nonzero(b & ~g))

        scalars = {
            "S": float(self._s_measure(p, g, rows, cols)),
            "MAE": float(np.mean(np.abs(p - g))),
            "adpF": float(_f_measure(tp, fp, n_fg, self.beta2)),
            "adpE": float(_e_measure(tp, fp, n_fg, n)),
        }
        return scalars, _f_measure(tps, fps, n_fg, self.beta2), _e_measure(tps, fps, n_fg, n)

    def _s_measure(self, p: np.ndarray, g: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> float:
        """S = max(0, alpha S_o + (1 - alpha) S_r) on the kept pixels (p, g at image positions rows, cols)."""
        y = np.mean(g)
        if y == 0:
            return 1 - np.mean(p)
        if y == 1:
            return np.mean(p)
        s_object = _s_object(p[g]) * y + _s_object(1 - p[~g]) * (1 - y)
        top, left = rows <= np.round(np.mean(rows[g])), cols <= np.round(np.mean(cols[g]))
        s_region = 0.0
        for quadrant in (top & left, top & ~left, ~top & left, ~top & ~left):
            if quadrant.any():
                weight = np.count_nonzero(quadrant) / p.size
                s_region += _ssim(p[quadrant], g[quadrant].astype(np.float64)) * weight
        return max(0.0, self.alpha * s_object + (1 - self.alpha) * s_region)
