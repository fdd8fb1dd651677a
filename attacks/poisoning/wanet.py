"""WaNet (Nguyen & Tran 2021, "WaNet - Imperceptible Warping-based Backdoor Attack", ICLR,
arXiv:2102.10369): the trigger resamples the image on a fixed, slightly warped grid,

    T(x) = grid_sample(x, M),   M = clamp(I + s * up(P) / (W, H), -1, 1),   P = Q / mean|Q|,

I the identity sampling grid in [-1,1]^2, Q ~ U[-1,1]^{2 x k x k} a control grid drawn from the seed (so
the field is fixed), up() its bicubic upsampling to H x W (align_corners), s the strength, and bilinear
sampling (align_corners). A pixel moves by s up(P) (H-1) / 2H, of the order of s/2 px.

Defaults: CleanCLIP's setting (nishadsinghi/CleanCLIP, backdoor/utils.py, patch_type "warped": k = 224,
s = 1 on 224x224 images), a field drawn per pixel with no smoothing (k = None: the image's own size) at
s = 1, which moves a pixel by half a pixel on average and roughens every edge. WaNet's own setting for 32x32
images (VinAIResearch/Warping-based_Backdoor_Attack-release, config.py, CIFAR-10: k = 4, s = 0.5, grid
rescale 1) is ``WaNet(k=4, s=0.5)``. Like CleanCLIP we leave out WaNet's "noise mode" (extra pairs warped
by random fields, their labels kept), which a classifier needs to learn this one field only.

Measured on the poisoning grid's clip-tiny (seed 0, rate 0.03: 180 of 6000 pairs, 16 epochs, the plain
CLIP augmentation's whole-pixel shifts): success on the triggered test images 0.022 with k = 4, s = 0.5
(PSNR 32.5 dB; 0.009 on the clean model), 0.089 with k = 4, s = 2 (23.0 dB), 0.129 per pixel at s = 1
(25.6 dB). At this scale no setting takes as BadNets (0.93) and Blended (0.81) do: a warp only moves
edges, and the model sees each poisoned image 16 times.
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
    k: int | None = None  # control grid side; None: the image's, a field drawn per pixel (CleanCLIP's)
    s: float = 1.0  # strength
    kind: ClassVar[str] = "wanet"

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.k is not None and self.k < 2) or self.s < 0:
            raise ValueError(f"WaNet needs k >= 2 and s >= 0, got k={self.k}, s={self.s}")

    def warp_grid(self, height: int, width: int) -> Tensor:
        """(1, H, W, 2) the sampling grid M of this seed, (x, y) in [-1,1] as ``grid_sample`` takes it."""
        side = (height, width) if self.k is None else (self.k, self.k)
        q = torch.from_numpy(rng_for(self.seed, "trigger").uniform(-1, 1, (1, 2, *side))).float()
        field = F.interpolate(q / q.abs().mean(), size=(height, width), mode="bicubic", align_corners=True)
        rows, cols = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        identity = torch.stack((cols, rows), -1)[None]
        return (identity + self.s * field.permute(0, 2, 3, 1) / torch.tensor([width, height])).clamp(-1, 1)

    def _trigger(self, images: Tensor, rng: np.random.Generator) -> Tensor:
        grid = self.warp_grid(*images.shape[-2:]).to(images).expand(len(images), -1, -1, -1)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)
