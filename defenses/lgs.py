"""Local Gradients Smoothing (Naseer, Khan, Porikli, WACV 2019, "Local Gradients Smoothing: Defense
against localized adversarial attacks"). A patch is a small region of unnaturally dense high-frequency
structure, so LGS suppresses the image where the local gradient is strong:

    g   = || (x_{i,j} - x_{i,j+1}, x_{i,j} - x_{i+1,j}) ||_2        forward differences, 0 past the edge
    g~  = (g - min g) / (max g - min g + 1e-7)                       per image
    W   = union of the window x window blocks (stride window - overlap, no padding) whose mean g~ > threshold
    m   = clip(smoothing * g~ * 1_W, 0, 1)                            the soft patch mask (out.mask)
    x'  = x * (1 - m)

on the grayscale image (ITU-R 601 luma, torchvision's ``rgb_to_grayscale``) or on a one-channel map as
is. Defaults are the paper's: window 15, overlap 5, threshold 0.1, smoothing 2.3. On ``rgbd`` each
modality gets its own mask and out.mask is their union (max). Pixels no whole block covers (the right
and bottom remainders) are never masked, as in the public reference implementation.

Differentiable: the block choice is piecewise constant, the rest is autograd's, except the square root
at g = 0 (flat regions, the last row and column), where the gradient is taken of sqrt(g^2 + 1e-12)
and the value is exact.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.functional import rgb_to_grayscale

from models.base import straight_through

from .base import PatchDefense


def luma(x: Tensor) -> Tensor:
    """(N,C,H,W) with C = 1 or 3 -> (N,1,H,W): a one-channel map as is, RGB as its ITU-R 601 luma."""
    return x if x.shape[1] == 1 else rgb_to_grayscale(x)


def gradient_magnitude(x: Tensor) -> Tensor:
    """(N,1,H,W) -> the forward-difference gradient magnitude, zero difference past the last row/column."""
    dx = F.pad(x[..., :, :-1] - x[..., :, 1:], (0, 1, 0, 0))
    dy = F.pad(x[..., :-1, :] - x[..., 1:, :], (0, 0, 0, 1))
    squared = dx.square() + dy.square()
    return straight_through(squared.sqrt(), (squared + 1e-12).sqrt())


class LocalGradientsSmoothing(PatchDefense):
    def __init__(self, window: int = 15, overlap: int = 5, threshold: float = 0.1, smoothing: float = 2.3,
                 modality: str = "rgb"):
        super().__init__(modality)
        if not 0 <= overlap < window:
            raise ValueError(f"LGS needs 0 <= overlap < window, got window {window}, overlap {overlap}")
        self.window, self.overlap, self.threshold, self.smoothing = window, overlap, threshold, smoothing

    def locate(self, x: Tensor) -> Tensor:
        """(N,C,H,W) with C = 1 or 3 -> the (N,1,H,W) soft patch mask m."""
        g = gradient_magnitude(luma(x))
        lo, hi = g.amin((2, 3), keepdim=True), g.amax((2, 3), keepdim=True)
        g = (g - lo) / (hi - lo + 1e-7)
        size, stride = self.window, self.window - self.overlap
        blocks = F.unfold(g.detach(), size, stride=stride)  # (N, window^2, L)
        kept = (blocks.mean(1, keepdim=True) > self.threshold).to(g.dtype).expand_as(blocks)
        covered = F.fold(kept, g.shape[-2:], size, stride=stride) >= 1
        return (self.smoothing * g * covered).clamp(0, 1)

    def fill(self, x: Tensor, mask: Tensor) -> Tensor:
        return x * (1 - mask)
