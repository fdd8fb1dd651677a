"""Bit-depth reduction, the colour-depth squeezer of feature squeezing (Xu, Evans, Qi, NDSS 2018):
x' = round(x (2^b - 1)) / (2^b - 1). On depth it is depth quantisation to 2^b levels.

ART's ``FeatureSqueezing`` computes it. Not differentiable (zero gradient almost everywhere): adaptive
attacks use BPDA with the identity. Default b = 4 (the paper uses 1 to 5 bits by dataset).
"""
from __future__ import annotations

import torch
from art.defences.preprocessor import FeatureSqueezing
from torch import Tensor

from .base import Defense


class BitDepthReduction(Defense):
    differentiable = False

    def __init__(self, bits: int = 4, modality: str = "rgb"):
        super().__init__(modality)
        self.bits = bits
        self._art = FeatureSqueezing(clip_values=(0.0, 1.0), bit_depth=bits)

    def purify(self, x: Tensor) -> Tensor:
        squeezed, _ = self._art(x.cpu().double().numpy())
        return torch.from_numpy(squeezed).to(x)
