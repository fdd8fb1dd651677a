"""Bilateral filtering (Tomasi and Manduchi, ICCV 1998), the edge-preserving smoother used to clean depth
maps: x'_p = sum_q w_pq x_q / sum_q w_pq over the k x k window, with
w_pq = exp(-|p - q|^2 / (2 sigma_s^2) - (x_p - x_q)^2 / (2 sigma_r^2)), k = 2 ceil(2 sigma_s) + 1,
edges reflected. Per channel (on RGB, each channel its own range kernel).

Our own torch version: ART has no bilateral filter and kornia is not a dependency. Differentiable:
adaptive attacks get the true gradient. Defaults sigma_s = 1.5 px, sigma_r = 0.1, on depth.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Defense
from .median import symmetric_pad


class BilateralFilter(Defense):
    def __init__(self, sigma_space: float = 1.5, sigma_range: float = 0.1, modality: str = "depth"):
        super().__init__(modality)
        if sigma_space <= 0 or sigma_range <= 0:
            raise ValueError("sigma_space and sigma_range must be > 0")
        self.sigma_space, self.sigma_range = sigma_space, sigma_range

    def purify(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        k = 2 * math.ceil(2 * self.sigma_space) + 1
        offsets = torch.arange(k, dtype=x.dtype, device=x.device) - k // 2
        spatial = (-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * self.sigma_space**2)).flatten()
        windows = F.unfold(symmetric_pad(x, k // 2), k).view(n, c, k * k, h * w)
        centre = x.reshape(n, c, 1, h * w)
        logw = spatial.view(1, 1, -1, 1) - (windows - centre) ** 2 / (2 * self.sigma_range**2)
        weights = torch.softmax(logw, dim=2)  # normalised w_pq, computed stably
        return (weights * windows).sum(2).view(n, c, h, w)
