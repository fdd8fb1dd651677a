"""How well a patch defense localises the patch, against the attack's true patch mask (APDE, "Revisiting
Adversarial Patch Defenses on Object Detectors", ICCV 2025, scores a defense's mask this way):

    SmIoU     = sum_i TP_i / sum_i (TP_i + FP_i + FN_i)            pooled over the dataset
    NmIoU     = mean_i TP_i / (TP_i + FP_i + FN_i)                 mean over images
    precision = sum_i TP_i / sum_i (TP_i + FP_i),  recall = sum_i TP_i / sum_i (TP_i + FN_i)

with soft masks binarised at 0.5 (a pixel is "patch" where mask >= 0.5). An image whose union is empty
(no true patch and none predicted) counts as IoU 1 in NmIoU: the defense correctly found nothing; it adds
nothing to SmIoU's sums. A pooled ratio whose denominator is 0 (no patch pixel predicted, or none true,
anywhere) is NaN.
"""
from __future__ import annotations

import numpy as np

def mask_counts(predicted: np.ndarray, true: np.ndarray, threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Per image of (N, ...) masks: TP, FP and FN pixel counts, each mask binarised at ``threshold``."""
    if predicted.shape != true.shape:
        raise ValueError(f"predicted mask {predicted.shape} and true mask {true.shape} differ in shape")
    p, t = (predicted >= threshold).reshape(len(predicted), -1), (true >= threshold).reshape(len(true), -1)
    return {"mask_tp": (p & t).sum(1), "mask_fp": (p & ~t).sum(1), "mask_fn": (~p & t).sum(1)}


def mask_scores(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> dict[str, float]:
    """SmIoU, NmIoU, precision and recall from per-image counts (see the module docstring)."""
    tp, fp, fn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, fn))
    union = tp + fp + fn
    per_image = np.divide(tp, union, out=np.ones_like(tp), where=union > 0)

    def ratio(num: float, den: float) -> float:
        return float(num / den) if den > 0 else float("nan")

    return {"SmIoU": ratio(tp.sum(), union.sum()), "NmIoU": float(per_image.mean()) if len(tp) else float("nan"),
            "mask_precision": ratio(tp.sum(), (tp + fp).sum()), "mask_recall": ratio(tp.sum(), (tp + fn).sum())}


class PatchMaskIoU:
    """Accumulate ``step(predicted, true)`` per image ((H, W) arrays in [0,1]); ``get_results()``."""

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold
        self.counts: list[dict[str, np.ndarray]] = []

    def step(self, predicted: np.ndarray, true: np.ndarray) -> None:
        self.counts.append(mask_counts(predicted[None], true[None], self.threshold))

    def get_results(self) -> dict[str, float]:
        return mask_scores(*(np.concatenate([c[k] for c in self.counts]) if self.counts else np.zeros(0)
                             for k in ("mask_tp", "mask_fp", "mask_fn")))
