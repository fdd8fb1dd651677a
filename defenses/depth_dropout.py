"""Depth dropout: replace the depth map by a heavily blurred version of itself (``mode="blur"``,
Gaussian sigma = ``sigma`` px) or by its mean (``mode="constant"``), so the model keeps at most the
depth's coarse layout. Measures how much of a model's accuracy, and of its vulnerability, comes through
depth. Differentiable. Depth only.
"""
from __future__ import annotations

from torch import Tensor

from .base import Defense
from .gaussian import GaussianBlur


class DepthDropout(Defense):
    modalities = ("depth",)

    def __init__(self, mode: str = "blur", sigma: float = 4.0, modality: str = "depth"):
        super().__init__(modality)
        if mode not in ("blur", "constant"):
            raise ValueError(f"depth-dropout mode is 'blur' or 'constant', not {mode!r}")
        self.mode, self.sigma = mode, sigma

    def purify(self, x: Tensor) -> Tensor:
        if self.mode == "constant":
            return x.mean((2, 3), keepdim=True).expand_as(x).clone()
        return GaussianBlur(self.sigma, "depth").purify(x)
