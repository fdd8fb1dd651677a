"""Learned patch segmenter, in the style of SAC (Liu, Levine, Ma, Fan, Wang, Gong, Beg, Bharadwaj, CVPR 2022,
"Segment and Complete: Defending Object Detectors against Adversarial Patch Attacks with Robust Patch
Detection") and PatchZero (Xu, Ahmed, Sun, Sapiro, WACV 2023): a small U-Net reads the RGB-D input and
gives every pixel a patch probability; the pixels above ``threshold`` form the mask, optionally completed
to a square (SAC's shape completion, here the bounding square of the largest connected blob), and are
filled with the image's mean over the unmasked pixels (PatchZero's fill; ``fill="neighbours"``: the
Gaussian-weighted mean of the unmasked neighbours instead):

    p    = sigmoid(U([rgb, depth]))                      (N,1,H,W)
    mask = complete(1[p > threshold])
    x'   = x (1 - mask) + fill(x, mask) mask             on the configured modality

The network reads both modalities whatever it fills, so it can use what the depth-consistency defense
uses by hand: an RGB sticker has no depth counterpart. Trained by our own recipe
(``benchmark/training/segmenter.py``) on the synthetic train split with random, universal and per-image
adversarial patches, and cached like the tiny models; ``checkpoint="trained"`` is that cached variant,
which the runner loads (``load``), otherwise a path to a state_dict.

Adaptive attacks: the threshold is a step, so the exact gradient of the mask is zero; the mask passes the
probability's gradient backward (straight-through, BPDA), so an attacker can learn to hide the patch from
the segmenter, as SAC's adaptive attack does.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor, nn

from models.base import load_state_dict_file, straight_through

from .base import Defense, DefenseOutput
from .gaussian import fill_from_neighbours

FILLS = ("mean", "neighbours")


def _stage(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SegmenterNet(nn.Module):
    """A small U-Net at half resolution: a stride-2 stem, three stages down (``width``, 2x, 4x channels;
    2x2 max pooling between them), two up (bilinear upsampling, the skip concatenated), a 1x1 head, and
    the logits upsampled to the input's size: one patch logit per pixel, any H, W. Half resolution costs
    a quarter of the compute; a patch's edge is still placed to within a pixel or two."""

    def __init__(self, in_channels: int = 4, width: int = 16):
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w),
                                  nn.ReLU(inplace=True))
        self.down = nn.ModuleList([_stage(w, w), _stage(w, 2 * w), _stage(2 * w, 4 * w)])
        self.up = nn.ModuleList([_stage(6 * w, 2 * w), _stage(3 * w, w)])
        self.head = nn.Conv2d(w, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        size, x, skips = x.shape[-2:], self.stem(x), []
        for i, stage in enumerate(self.down):
            x = stage(x if i == 0 else F.max_pool2d(x, 2, ceil_mode=True))
            skips.append(x)
        for stage, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = stage(torch.cat([x, skip], 1))
        return F.interpolate(self.head(x), size=size, mode="bilinear", align_corners=False)


def square_completion(mask: Tensor) -> Tensor:
    """(N,1,H,W) binary -> per image, the square around the largest connected blob (side: the longer side
    of its bounding box, centred on it, moved inside the image); empty masks stay empty."""
    out = torch.zeros_like(mask)
    h, w = mask.shape[-2:]
    for i, m in enumerate(mask[:, 0].detach().cpu().numpy() > 0.5):
        labels, count = ndimage.label(m)
        if count == 0:
            continue
        largest = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
        rows, cols = np.nonzero(labels == largest)
        side = min(max(rows.max() - rows.min(), cols.max() - cols.min()) + 1, h, w)
        top = int(np.clip((rows.min() + rows.max() + 1 - side) // 2, 0, h - side))
        left = int(np.clip((cols.min() + cols.max() + 1 - side) // 2, 0, w - side))
        out[i, 0, top:top + side, left:left + side] = 1
    return out


class PatchSegmenter(Defense):
    needs_rgbd = True
    trained_variant = "patch-segmenter"  # what checkpoint="trained" names: a recipe in benchmark/training

    def __init__(self, threshold: float = 0.5, complete: bool = False, fill: str = "mean", sigma: float = 8.0,
                 checkpoint: str = "trained", modality: str = "rgbd"):
        super().__init__(modality)
        if fill not in FILLS:
            raise ValueError(f"patch-segmenter fill must be one of {FILLS}, got {fill!r}")
        if not 0 < threshold < 1:
            raise ValueError(f"patch-segmenter threshold is a probability in (0, 1), got {threshold}")
        self.threshold, self.complete, self.fill, self.sigma, self.checkpoint = threshold, complete, fill, sigma, checkpoint
        self.net = SegmenterNet().eval().requires_grad_(False)
        if checkpoint != "trained":
            self.load(Path(checkpoint))

    def load(self, path: Path) -> None:
        self.net.load_state_dict(load_state_dict_file(path), strict=True)

    def train(self, mode: bool = True) -> "PatchSegmenter":
        super().train(mode)
        self.net.eval()  # a fixed defense: BatchNorm keeps its running statistics whatever the model's mode
        return self

    def probability(self, rgb: Tensor, depth: Tensor) -> Tensor:
        """(N,1,H,W): the segmenter's patch probability per pixel."""
        return torch.sigmoid(self.net(torch.cat([rgb, depth], 1).to(next(self.net.parameters()).dtype))).to(rgb.dtype)

    def filled(self, x: Tensor, mask: Tensor) -> Tensor:
        if self.fill == "neighbours":
            return fill_from_neighbours(x, mask, self.sigma)
        keep = 1 - mask
        mean = (x * keep).sum((2, 3), keepdim=True) / keep.sum((2, 3), keepdim=True).clamp_min(1.0)
        return x * keep + mean * mask

    def forward(self, rgb: Tensor | None, depth: Tensor | None) -> DefenseOutput:
        if rgb is None or depth is None:
            raise ValueError("patch-segmenter reads RGB and depth together: it needs both modalities")
        p = self.probability(rgb, depth)
        hard = (p > self.threshold).to(p.dtype)
        if self.complete:
            hard = square_completion(hard)
        mask = straight_through(hard, p)
        if self.acts_on("rgb"):
            rgb = self.filled(rgb, mask)
        if self.acts_on("depth"):
            depth = self.filled(depth, mask)
        return DefenseOutput(rgb, depth, hard.detach())
