"""WaNet (Nguyen & Tran 2021, "WaNet - Imperceptible Warping-based Backdoor Attack", ICLR,
arXiv:2102.10369): the trigger resamples the image on a fixed, slightly warped grid,

    T(x) = grid_sample(x, M),   M = clamp(I + s * up(P) / (W, H), -1, 1),   P = Q / mean|Q|,

I the identity sampling grid in [-1,1]^2, Q ~ U[-1,1]^{2 x k x k} a control grid drawn from the seed (so
the field is fixed), up() its bicubic upsampling to H x W (align_corners), s the strength, and bilinear
sampling (align_corners). A pixel moves by s up(P) (H-1) / 2H, of the order of s/2 px.

Defaults k = 4, s = 0.5: the official code's setting for 32x32 images (VinAIResearch/Warping-based_
Backdoor_Attack-release, config.py, CIFAR-10 and GTSRB; grid rescale 1). CleanCLIP (backdoor/utils.py,
patch_type "warped") uses k = 224, s = 1 on 224x224 images, a per-pixel field with no smoothing:
``WaNet(k=32, s=1)`` here. Like CleanCLIP we leave out WaNet's "noise mode" (extra pairs warped by
random fields, their labels kept), which a classifier needs to learn this one field only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Backdoor, rng_for


@dataclass(frozen=True)
class WaNet(Backdoor):
    k: int = 4  # control grid side
    s: float = 0.5  # strength
    kind: ClassVar[str] = "wanet"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k < 2 or self.s < 0:
            raise ValueError(f"WaNet needs k >= 2 and s >= 0, got k={self.k}, s={self.s}")

    def warp_grid(self, height: int, width: int) -> Tensor:
        """(1, H, W, 2) the sampling grid M of this seed, (x, y) in [-1,1] as ``grid_sample`` takes it."""
        q = torch.from_numpy(rng_for(self.seed, "trigger").uniform(-1, 1, (1, 2, self.k, self.k))).float()
        field = F.interpolate(q / q.abs().mean(), size=(height, width), mode="bicubic", align_corners=True)
        rows, cols = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        identity = torch.stack((cols, rows), -1)[None]
        return (identity + self.s * field.permute(0, 2, 3, 1) / torch.tensor([width, height])).clamp(-1, 1)

    def _trigger(self, images: Tensor, rng: np.random.Generator) -> Tensor:
        grid = self.warp_grid(*images.shape[-2:]).to(images).expand(len(images), -1, -1, -1)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)
