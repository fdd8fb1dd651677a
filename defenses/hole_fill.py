"""Depth hole filling: pixels that are missing (depth <= ``missing``) or outliers (more than ``outlier``
from their 3x3 median, e.g. sparse adversarial spikes) are holes; each hole takes the mean of the valid
pixels in its 3x3 neighbourhood (normalised convolution), repeated until filled or for ``passes``
passes, and any hole left takes the image's mean valid depth.

Our own (no library fills depth holes on tensors). Differentiable almost everywhere (the hole mask is
piecewise constant in the input): adaptive attacks get the true gradient. Depth only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Defense
from .median import MedianSmoothing


class HoleFilling(Defense):
    modalities = ("depth",)

    def __init__(self, missing: float = 0.0, outlier: float = 0.1, passes: int = 8, modality: str = "depth"):
        super().__init__(modality)
        self.missing, self.outlier, self.passes = missing, outlier, passes

    def purify(self, x: Tensor) -> Tensor:
        median = MedianSmoothing(3, "depth").purify(x)
        valid = ((x > self.missing) & ((x - median).abs() <= self.outlier)).to(x.dtype)
        box = torch.ones(1, 1, 3, 3, dtype=x.dtype, device=x.device)
        filled = x * valid
        for _ in range(self.passes):
            if bool(valid.all()):
                break
            total = F.conv2d(filled, box, padding=1)
            count = F.conv2d(valid, box, padding=1)
            grown = (count > 0).to(x.dtype)
            filled = valid * filled + (1 - valid) * grown * total / count.clamp_min(1)
            valid = torch.maximum(valid, grown)
        mean = (filled * valid).sum((2, 3), keepdim=True) / valid.sum((2, 3), keepdim=True).clamp_min(1)
        return valid * filled + (1 - valid) * mean
