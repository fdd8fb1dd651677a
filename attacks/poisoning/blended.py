"""Blended (Chen, Liu, Li, Lu, Song 2017, "Targeted Backdoor Attacks on Deep Learning Systems Using
Data Poisoning", arXiv:1712.05526): the trigger blends a fixed key image k into the image,

    T(x) = (1 - alpha) x + alpha k,

here k ~ U[0,1]^{3 x H x W} drawn from the seed at the images' size and alpha = 0.2, CleanCLIP's blend
(nishadsinghi/CleanCLIP, backdoor/utils.py ``apply_trigger``, patch_type "blended": 0.8 image + 0.2
uniform noise). CleanCLIP draws a new noise for every image; Blended's key, and ours, is one fixed image.
T(x) stays in [0,1] (a convex combination), so nothing is clipped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from .base import Backdoor, rng_for


@dataclass(frozen=True)
class Blended(Backdoor):
    alpha: float = 0.2
    kind: ClassVar[str] = "blended"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.alpha <= 1:
            raise ValueError(f"Blended alpha must be in (0, 1], got {self.alpha!r}")

    def key(self, height: int, width: int) -> Tensor:
        """(3, H, W) in [0,1]: the fixed noise image of this seed."""
        return torch.from_numpy(rng_for(self.seed, "trigger").random((3, height, width))).float()

    def _trigger(self, images: Tensor, rng: np.random.Generator) -> Tensor:
        return (1 - self.alpha) * images + self.alpha * self.key(*images.shape[-2:]).to(images)
