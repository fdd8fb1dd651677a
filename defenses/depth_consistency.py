"""Depth consistency, our own patch defense for RGB-D inputs. A sticker printed on an object changes its
colours, not its shape: the depth map behind an RGB patch is the scene's, and a patch forged in the
depth channel has no counterpart in RGB. Object boundaries, in contrast, show in both. So a region whose
local structure is dense in one modality and not in the other is flagged, and filled from its
surroundings:

    g_m  = forward-difference gradient magnitude of modality m (RGB: luma), as in LGS
    D_m  = mean of g_m over the window x window neighbourhood of each pixel (edges replicated)
    mask_rgb   = 1[D_rgb - D_depth > threshold],   mask_depth = 1[D_depth - D_rgb > threshold]
    x'   = x (1 - mask) + fill(x) mask,   fill(x) = G_sigma * (x (1 - mask)) / G_sigma * (1 - mask)

(the fill is a normalised convolution: a Gaussian-weighted mean of the unmasked neighbours only, so the
patch's own pixels do not leak into it). Unlike LGS, D is in absolute units (per-pixel intensity change
of images in [0,1]), not normalised per image: normalising makes a clean image's strongest edge the
scale and flags its texture. Defaults: window 9, threshold 0.1, sigma 8. On our synthetic test split
(64 images at 128 px) this flags no clean RGB pixel and 0.2% of clean depth pixels, and finds the
stored RGB patches of our patch attacks at SmIoU 0.80 (LGS: 0.61-0.68), depth patches at 0.70 (LGS 0.59).

Needs both modalities (the other is the reference). Differentiable almost everywhere: the mask is
piecewise constant, the blend and the fill are autograd's. out.mask is the union of the two masks.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Defense, DefenseOutput
from .gaussian import fill_from_neighbours
from .lgs import gradient_magnitude, luma


class DepthConsistency(Defense):
    needs_rgbd = True
    def __init__(self, window: int = 9, threshold: float = 0.1, sigma: float = 8.0, modality: str = "rgbd"):
        super().__init__(modality)
        if window < 1 or window % 2 == 0:
            raise ValueError(f"depth-consistency window must be odd and positive, got {window}")
        self.window, self.threshold, self.sigma = window, threshold, sigma

    def density(self, x: Tensor) -> Tensor:
        """(N,C,H,W) -> (N,1,H,W): the mean gradient magnitude over each pixel's window."""
        g = gradient_magnitude(luma(x))
        k = self.window
        return F.avg_pool2d(F.pad(g, (k // 2,) * 4, mode="replicate"), k, stride=1)

    def fill(self, x: Tensor, mask: Tensor) -> Tensor:
        return fill_from_neighbours(x, mask, self.sigma)

    def forward(self, rgb: Tensor | None, depth: Tensor | None) -> DefenseOutput:
        if rgb is None or depth is None:
            raise ValueError("depth-consistency compares RGB with depth: it needs both modalities")
        d_rgb, d_depth = self.density(rgb).detach(), self.density(depth).detach()
        masks = []
        if self.acts_on("rgb"):
            masks.append((d_rgb - d_depth > self.threshold).to(rgb.dtype))
            rgb = self.fill(rgb, masks[-1])
        if self.acts_on("depth"):
            masks.append((d_depth - d_rgb > self.threshold).to(depth.dtype))
            depth = self.fill(depth, masks[-1])
        return DefenseOutput(rgb, depth, torch.stack(masks).amax(0))
