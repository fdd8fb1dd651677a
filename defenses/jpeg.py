"""JPEG compression (Dziugaite et al. 2016, "A study of the effect of JPG compression on adversarial
images"; Guo et al., ICLR 2018): x' = decode(encode_JPEG(round(255 x), quality)) / 255.

ART's ``JpegCompression`` does the coding (PIL; RGB as one colour image, depth as 8-bit greyscale).
Not differentiable: adaptive attacks use BPDA with the identity. Default quality 75 (ART's is 50).
"""
from __future__ import annotations

import numpy as np
import torch
from art.defences.preprocessor import JpegCompression
from torch import Tensor

from .base import Defense


class JPEG(Defense):
    differentiable = False

    def __init__(self, quality: int = 75, modality: str = "rgb"):
        super().__init__(modality)
        self.quality = quality
        # ART scales [0,1] inputs by 255 and truncates to uint8 (0.999 -> 254); on the [0,255] range
        # with integer-valued floats its cast is exact, so we round first and give it that range.
        self._art = JpegCompression(clip_values=(0, 255), quality=quality, channels_first=True)

    def purify(self, x: Tensor) -> Tensor:
        pixels = np.round(x.cpu().double().numpy() * 255)
        coded, _ = self._art(pixels)
        return torch.from_numpy(coded / 255).to(x)
