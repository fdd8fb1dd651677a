"""Salient-object-detection metrics through PySODMetrics, per image and per dataset.

Per image we keep what PySODMetrics computes for that image: S-measure (Fan et al. 2017), MAE,
weighted F (Margolin et al. 2014), adaptive F (threshold 2*mean) and adaptive E, and the 256-threshold
F and E curves. Dataset scores are PySODMetrics' own reductions: the mean over images, and for the
curves the max / mean of the image-averaged curve (maxF, meanF, maxE, meanE).
"""
from __future__ import annotations

import numpy as np
import py_sod_metrics as psm

from .patch import mask_counts, mask_scores

SCALARS = ("S", "MAE", "wF", "adpF", "adpE")
SUMMARY = ("S", "maxF", "meanF", "adpF", "maxE", "meanE", "adpE", "MAE", "wF")
# Patch cells are also scored with the patch region excluded (benchmark/metrics/masked.py): the same
# metrics but wF, suffixed "_nopatch".
HIGHER_IS_BETTER = {f"{m}{suffix}": m != "MAE" for m in SUMMARY for suffix in ("", "_nopatch")}


def to_uint8(prob: np.ndarray) -> np.ndarray:
    """A probability map in [0,1] as the 8-bit grey image PySODMetrics (and the official evals) read."""
    return (np.clip(prob, 0.0, 1.0) * 255).round().astype(np.uint8)


def mask_iou(pred_u8: np.ndarray, gt_u8: np.ndarray) -> float:
    """IoU of the prediction and the GT, both binarised at 0.5 (pixel value > 127), counted as the patch
    masks are (``benchmark/metrics/patch.py``: 1.0 where both are empty, nothing salient and nothing
    predicted, a correct map). An attack succeeds on an image when this falls below 0.5 (as
    ``SaliencyTask.success`` decides it at network resolution)."""
    counts = mask_counts(pred_u8[None], gt_u8[None], threshold=128)
    return mask_scores(counts["mask_tp"], counts["mask_fp"], counts["mask_fn"])["NmIoU"]


class SODMetrics:
    """Accumulates one pass over a dataset; ``step`` returns the image's own scores."""

    def __init__(self) -> None:
        self.sm, self.mae, self.wfm, self.em = psm.Smeasure(), psm.MAE(), psm.WeightedFmeasure(), psm.Emeasure()
        self.fm = psm.FmeasureV2({"fm": psm.FmeasureHandler(with_dynamic=True, with_adaptive=True, beta=0.3)})

    def step(self, pred_u8: np.ndarray, gt_u8: np.ndarray) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
        """Score one uint8 prediction against its uint8 GT (same size).

        Returns (scalars, F-curve[256], E-curve[256]) of this image.
        """
        if pred_u8.shape != gt_u8.shape:
            raise ValueError(f"prediction {pred_u8.shape} and GT {gt_u8.shape} differ in size")
        for metric in (self.sm, self.mae, self.wfm, self.em, self.fm):
            metric.step(pred_u8, gt_u8)
        fm = self.fm._metric_handlers["fm"]
        scalars = {
            "S": float(self.sm.sms[-1]),
            "MAE": float(self.mae.maes[-1]),
            "wF": float(self.wfm.weighted_fms[-1]),
            "adpF": float(fm.adaptive_results[-1]),
            "adpE": float(self.em.adaptive_ems[-1]),
        }
        return scalars, np.asarray(fm.dynamic_results[-1], dtype=np.float64), np.asarray(self.em.changeable_ems[-1], dtype=np.float64)


def summarise(scalars: list[dict[str, float]], f_curves: np.ndarray, e_curves: np.ndarray) -> dict[str, float]:
    """Dataset scores from per-image records, reduced exactly as PySODMetrics' ``get_results``; scalars
    the records lack (wF of patch-excluded scores) are left out."""
    f_curve, e_curve = np.mean(f_curves, axis=0), np.mean(e_curves, axis=0)
    out = {k: float(np.mean([r[k] for r in scalars])) for k in SCALARS if k in scalars[0]}
    out.update(maxF=float(f_curve.max()), meanF=float(f_curve.mean()), maxE=float(e_curve.max()), meanE=float(e_curve.mean()))
    return {k: out[k] for k in SUMMARY if k in out}
