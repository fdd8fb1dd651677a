"""Jedi (Tarchoun, Ben Khalifa, Mahjoub, Abu-Ghazaleh, Alouani, CVPR 2023, "Jedi: Entropy-based
Localization and Removal of Adversarial Patches"). A patch packs more information per pixel than a
natural image, so it shows as high local entropy. On the 8-bit grayscale image (RGB: MATLAB's
``rgb2gray``), at three window sizes w_i (8, 12, 16 px up to 800 px images, larger above) with stride w_i/2:

    H_i(p)  = entropy (256-bin histogram, bits) of the last (w_i+1)^2 window over p, on the image padded
              symmetrically by w_i/2 (windows overwrite one another, as in the official code)
    t_i     = (mu_p + 1.5 s_p) - 2 s_p (mu_p - mu_c) / mu_p + s_p (mean_windows H_i - mu_c) / s_c
    mask    = union_i 1[H_i > t_i], minus the connected blobs (8-connected) under 0.5% of the image

with the published entropy statistics of patches (mu_p, s_p) and clean images (mu_c, s_c) per window
size. The masked pixels are in-painted from their surroundings: OpenCV's Telea in-painting (radius 3)
stands in for MATLAB's ``inpaintCoherent`` (coherence transport, Bornemann and Maerz 2007, which builds
on Telea's fast marching). The optional autoencoder that completes the mask shape is not used. The
heat map's alignment reproduces the official code's cropping (a shift of a few pixels).

Not differentiable (histograms, blob removal, in-painting): adaptive attacks use BPDA with the identity.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from .base import PatchDefense

PATCH_MEAN, PATCH_STD = (5.32, 6.06, 6.47), (0.32, 0.34, 0.35)
CLEAN_MEAN, CLEAN_STD = (2.75, 3.19, 3.47), (1.16, 1.13, 1.07)
RGB2GRAY = (0.298936021293775, 0.587043074451121, 0.114020904255103)  # MATLAB rgb2gray


def window_sizes(h: int, w: int) -> tuple[int, int, int]:
    """The three window sizes for an h x w image: s = max(even ceil(size / 100), 8); (s, 1.5 s, 2 s) made even."""
    s = max(max(math.ceil(n / 100) + math.ceil(n / 100) % 2 for n in (h, w)), 8)
    mid = 1.5 * s
    return s, int(mid + mid % 2), 2 * s


def entropy(window: np.ndarray) -> float:
    """Shannon entropy (bits) of a uint8 array's 256-bin histogram."""
    p = np.bincount(window.ravel(), minlength=256) / window.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def entropy_heatmap(gray: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) uint8 -> the entropy map of windows of ``size`` (stride size/2), cropped as the official
    code crops it, and every window's entropy."""
    h, w = gray.shape
    stride = size // 2
    padded = np.pad(gray, size // 2, mode="symmetric")
    rows, cols = range(0, padded.shape[0] - size, stride), range(0, padded.shape[1] - size, stride)
    heat = np.zeros((max(h, rows[-1] + size + 1), max(w, cols[-1] + size + 1)))  # it grows past the image
    values = []
    for x in rows:
        for y in cols:
            values.append(entropy(padded[x:x + size + 1, y:y + size + 1]))
            heat[x:x + size + 1, y:y + size + 1] = values[-1]
    top, left = (math.floor((n - m) / 2 + 0.5) - 1 for n, m in zip(heat.shape, (h, w)))  # MATLAB round, 1-based
    return heat[top:top + h, left:left + w], np.array(values)


def locate_patch(gray: np.ndarray) -> np.ndarray:
    """(H, W) uint8 -> Jedi's (H, W) bool patch mask."""
    h, w = gray.shape
    mask = np.zeros((h, w), bool)
    for i, size in enumerate(window_sizes(h, w)):
        heat, values = entropy_heatmap(gray, size)
        spread = (values.mean() - CLEAN_MEAN[i]) / CLEAN_STD[i]
        base = PATCH_MEAN[i] + 1.5 * PATCH_STD[i] - 2 * (PATCH_MEAN[i] - CLEAN_MEAN[i]) / PATCH_MEAN[i] * PATCH_STD[i]
        mask |= heat > base + spread * PATCH_STD[i]
    # the official condition (more than one blob, or a blob over 0.01 pixels) holds whenever there is a blob
    blobs, n = ndimage.label(mask, structure=np.ones((3, 3)))
    areas = np.bincount(blobs.ravel(), minlength=n + 1)
    small = np.flatnonzero(areas < 0.005 * h * w)
    return mask & ~np.isin(blobs, small[small > 0])


class Jedi(PatchDefense):
    differentiable = False

    def __init__(self, radius: int = 3, modality: str = "rgb"):
        super().__init__(modality)
        self.radius = radius

    def locate(self, x: Tensor) -> Tensor:
        u8 = (x.detach().cpu().double() * 255).round().clamp(0, 255)
        gray = (sum(c * u8[:, i] for i, c in enumerate(RGB2GRAY)) if x.shape[1] == 3 else u8[:, 0]).round()
        masks = [locate_patch(g.to(torch.uint8).numpy()) for g in gray]
        return torch.from_numpy(np.stack(masks)[:, None]).to(x)

    def fill(self, x: Tensor, mask: Tensor) -> Tensor:
        out = []
        for image, m in zip(x.detach().cpu(), mask.detach().cpu()):
            hole = m[0].numpy().astype(np.uint8)
            if x.shape[1] == 3:  # 8-bit colour in-painting; only the masked pixels are replaced
                u8 = (image.permute(1, 2, 0).double() * 255).round().byte().numpy()
                painted = torch.from_numpy(cv2.inpaint(u8, hole, self.radius, cv2.INPAINT_TELEA)).permute(2, 0, 1) / 255
            else:  # depth: float in-painting
                painted = torch.from_numpy(cv2.inpaint(image[0].float().numpy(), hole, self.radius, cv2.INPAINT_TELEA))[None]
            out.append(torch.where(m.bool(), painted.to(image.dtype), image))
        return torch.stack(out).to(x)
