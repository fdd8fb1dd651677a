"""Total-variation minimisation (Guo, Rana, Cisse, van der Maaten, ICLR 2018, "Countering Adversarial
Images using Input Transformations"): keep a random Bernoulli(p) subset X of the pixels and solve, per
channel, z = argmin_z ||(z - x) * X||_2 + lambda TV_2(z).

ART's ``TotalVarMin`` solves it (L-BFGS-B, ``max_iter`` iterations, its numpy RNG for the pixel mask,
which the runner seeds). Not differentiable and randomized: adaptive attacks use BPDA with the
identity and EOT over the mask. Defaults are ART's: p = 0.3, lambda = 0.5, 10 iterations.
"""
from __future__ import annotations

import torch
from art.defences.preprocessor import TotalVarMin
from torch import Tensor

from .base import Defense


class TotalVariationMinimization(Defense):
    differentiable = False
    randomized = True

    def __init__(self, prob: float = 0.3, lamb: float = 0.5, max_iter: int = 10, modality: str = "rgb"):
        super().__init__(modality)
        self.prob, self.lamb, self.max_iter = prob, lamb, max_iter
        self._art = TotalVarMin(prob=prob, lamb=lamb, max_iter=max_iter, clip_values=(0.0, 1.0))

    def purify(self, x: Tensor) -> Tensor:
        nhwc = x.cpu().double().permute(0, 2, 3, 1).contiguous().numpy()  # ART solves channel-last images
        out, _ = self._art(nhwc)
        return torch.from_numpy(out).permute(0, 3, 1, 2).to(x)
