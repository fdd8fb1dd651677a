"""Gaussian blur: x' = G_sigma * x, a k x k kernel with k = 2 ceil(3 sigma) + 1, edges reflected
(torchvision's ``gaussian_blur``). Differentiable: adaptive attacks get the true gradient.
Default sigma = 1 pixel.
"""
from __future__ import annotations

import math

from torch import Tensor
from torchvision.transforms.functional import gaussian_blur

from .base import Defense


class GaussianBlur(Defense):
    def __init__(self, sigma: float = 1.0, modality: str = "rgb"):
        super().__init__(modality)
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.sigma = sigma

    def purify(self, x: Tensor) -> Tensor:
        k = 2 * math.ceil(3 * self.sigma) + 1
        k = min(k, 2 * (min(x.shape[-2:]) // 2) - 1)  # reflection needs the kernel inside the image
        return gaussian_blur(x, [k, k], [self.sigma, self.sigma])


def fill_from_neighbours(x: Tensor, mask: Tensor, sigma: float) -> Tensor:
    """x with the pixels under ``mask`` (N,1,H,W) replaced by the Gaussian-weighted mean of the unmasked
    ones, a normalised convolution G * (x (1 - m)) / G * (1 - m): the masked pixels do not leak into it."""
    blur = GaussianBlur(sigma).purify
    keep = 1 - mask
    return x * keep + blur(x * keep) / blur(keep).clamp_min(1e-6) * mask
