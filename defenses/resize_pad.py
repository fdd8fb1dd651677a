"""Random resizing and padding (Xie, Wang, Zhang, Ren, Yuille, ICLR 2018, "Mitigating Adversarial
Effects Through Randomization"), for fixed-size inputs: per image draw r ~ U{ceil((1 - shrink) S) .. S - 1},
resize the S x S input to r x r (bilinear), and place it at a random offset in an S x S zero canvas.
RGB and depth get the same draw. A dense prediction is mapped back (``restore``: crop the placed
square, resize to S) so it stays aligned with the ground truth.

Our own: ART has no resize-and-pad. Differentiable and randomized: adaptive attacks get the true
gradient of each draw and average over draws (EOT). Default shrink 0.1 (the paper's 299 -> [299, 331)).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Defense, DefenseOutput


class RandomResizePad(Defense):
    randomized = True

    def __init__(self, shrink: float = 0.1, modality: str = "rgbd"):
        super().__init__(modality)
        if not 0 < shrink < 1:
            raise ValueError(f"shrink must be in (0, 1), got {shrink}")
        self.shrink = shrink

    def _draw(self, n: int, size: int) -> list[tuple[int, int, int]]:
        high = size - 1  # as in the paper, the canvas is always larger than the resized image
        low = min(math.ceil((1 - self.shrink) * size), high)
        draws = []
        for _ in range(n):
            r = int(torch.randint(low, high + 1, ()).item())
            top, left = (int(torch.randint(0, size - r + 1, ()).item()) for _ in range(2))
            draws.append((r, top, left))
        return draws

    @staticmethod
    def _place(x: Tensor, draws: list[tuple[int, int, int]]) -> Tensor:
        size = x.shape[-1]
        out = []
        for xi, (r, top, left) in zip(x, draws):
            small = F.interpolate(xi[None], size=(r, r), mode="bilinear", align_corners=False)
            out.append(F.pad(small, (left, size - r - left, top, size - r - top)))
        return torch.cat(out)

    @staticmethod
    def _restore(logits: Tensor, draws: list[tuple[int, int, int]], size: int) -> Tensor:
        if logits.dim() != 4:  # a classifier's (N, K) logits have no geometry
            return logits
        s = logits.shape[-1] / size
        out = []
        for zi, (r, top, left) in zip(logits, draws):
            t, l, rr = round(top * s), round(left * s), max(1, round(r * s))
            crop = zi[None, :, t : t + rr, l : l + rr]
            out.append(F.interpolate(crop, size=logits.shape[-2:], mode="bilinear", align_corners=False))
        return torch.cat(out)

    def forward(self, rgb: Tensor | None, depth: Tensor | None) -> DefenseOutput:
        like = rgb if rgb is not None else depth
        size = like.shape[-1]
        draws = self._draw(like.shape[0], size)
        if self.acts_on("rgb") and rgb is not None:
            rgb = self._place(rgb, draws)
        if self.acts_on("depth") and depth is not None:
            depth = self._place(depth, draws)
        return DefenseOutput(rgb, depth, restore=lambda z: self._restore(z, draws, size))
