"""BadNets (Gu, Dolan-Gavitt, Garg 2017, "BadNets: Identifying Vulnerabilities in the Machine Learning
Model Supply Chain", arXiv:1708.06733) as a backdoor of contrastive pre-training (Carlini & Terzis 2022):
a poisoned pair is (T(x), caption naming the target) with

    T(x)_{c,i,j} = p_{c, i-r, j-q}  inside the s x s square at top-left (r, q),   x_{c,i,j} elsewhere,

p in {0,1}^{3 x s x s} a fixed pattern drawn from the seed (every colour channel of every pixel black or
white) and (r, q) drawn uniformly for every image, in training and at test time alike, as CleanCLIP
places it (nishadsinghi/CleanCLIP, backdoor/utils.py ``apply_trigger``, patch_location "random"; its
"random" patch is the image mean plus N(0,1) noise, which mostly saturates to 0 or 1, drawn afresh per
image; BadNets' own trigger is one fixed pattern, as here).

Default s = 4 px on 32x32 images. CleanCLIP's 16 px on 224x224 (7% of the side, 0.5% of the area)
would scale to 2 px: 12 values that land anywhere on a textured, noisy background. 4 px (48 values,
1.6% of the area) is twice that side and still a small sticker; the usual CIFAR-size BadNets patch, 3x3,
sits at a fixed corner, which is easier to learn than a random position.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from .base import Backdoor, rng_for


@dataclass(frozen=True)
class BadNets(Backdoor):
    patch: int = 4  # side s in pixels
    kind: ClassVar[str] = "badnets"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.patch < 1:
            raise ValueError(f"BadNets patch side must be >= 1 px, got {self.patch}")

    def pattern(self) -> Tensor:
        """(3, s, s) in {0,1}: the fixed trigger pattern of this seed."""
        return torch.from_numpy(rng_for(self.seed, "trigger").integers(0, 2, (3, self.patch, self.patch))).float()

    def _trigger(self, images: Tensor, rng: np.random.Generator) -> Tensor:
        height, width = images.shape[-2:]
        s = self.patch
        if s > min(height, width):
            raise ValueError(f"BadNets patch of {s} px does not fit {height}x{width} images")
        tops, lefts = rng.integers(0, height - s + 1, len(images)), rng.integers(0, width - s + 1, len(images))
        out, pattern = images.clone(), self.pattern().to(images)
        for i, (r, q) in enumerate(zip(tops.tolist(), lefts.tolist())):
            out[i, :, r:r + s, q:q + s] = pattern
        return out
