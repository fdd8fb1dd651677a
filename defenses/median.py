"""Median smoothing, the spatial squeezer of feature squeezing (Xu, Evans, Qi, NDSS 2018):
x'_p = median of x over the k x k window around p, per channel, edges extended by reflection
(half-sample symmetric, as ``scipy.ndimage.median_filter`` and ART's ``SpatialSmoothing``).

Our own torch version: ART's numpy ``SpatialSmoothing`` has no gradient and its PyTorch one needs
kornia. The median selects one input value per window, so autograd through it is exact almost
everywhere: adaptive attacks get the true gradient. Default k = 3 (the paper's 2x2 and 3x3).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Defense


def symmetric_pad(x: Tensor, pad: int) -> Tensor:
    """Pad the last two dims by ``pad`` with half-sample symmetric reflection (d c b a | a b c d)."""
    if pad == 0:
        return x
    x = torch.cat([x[..., :pad, :].flip(-2), x, x[..., -pad:, :].flip(-2)], -2)
    return torch.cat([x[..., :pad].flip(-1), x, x[..., -pad:].flip(-1)], -1)


class MedianSmoothing(Defense):
    def __init__(self, window: int = 3, modality: str = "rgb"):
        super().__init__(modality)
        if window < 1 or window % 2 == 0:
            raise ValueError(f"median window must be odd and positive, got {window}")
        self.window = window

    def purify(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        patches = F.unfold(symmetric_pad(x, self.window // 2), self.window)  # (N, C k k, H W)
        # the window along the last, contiguous dim: torch's median is ~1.7x faster there than along a
        # strided dim, with the same values and the same selected indices (hence the same gradient)
        windows = patches.view(n, c, self.window**2, h * w).transpose(2, 3).contiguous()
        return windows.median(-1).values.view(n, c, h, w)
