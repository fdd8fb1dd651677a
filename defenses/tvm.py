"""Total-variation minimisation (Guo, Rana, Cisse, van der Maaten, ICLR 2018, "Countering Adversarial
Images using Input Transformations"): keep a random Bernoulli(p) subset X of the pixels and solve, per
channel, z = argmin_z ||(z - x) * X||_2 + lambda TV_2(z).

ART's ``TotalVarMin`` solves it (L-BFGS-B, ``max_iter`` iterations, its numpy RNG for the pixel mask,
which the runner seeds). Not differentiable and randomized: adaptive attacks use BPDA with the
identity and EOT over the mask. Defaults are ART's: p = 0.3, lambda = 0.5, 10 iterations.

ART solves one image after the other (~180 ms per channel of a 128 px image, the slowest defense of the
suite); we draw the masks exactly as its ``__call__`` does (one ``np.random.rand`` per image, in order)
and hand its per-image solver to a pool of worker processes, one per CPU core, so the output is ART's,
bit for bit, in a fraction of the time.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
from art.config import ART_NUMPY_DTYPE
from art.defences.preprocessor import TotalVarMin
from torch import Tensor

from .base import Defense

_POOL: ProcessPoolExecutor | None = None


def _pool() -> ProcessPoolExecutor:
    """The worker processes (forked once: they run numpy and scipy only)."""
    global _POOL
    if _POOL is None:
        _POOL = ProcessPoolExecutor(os.cpu_count() or 1, mp_context=multiprocessing.get_context("fork"))
    return _POOL


class TotalVariationMinimization(Defense):
    differentiable = False
    randomized = True

    def __init__(self, prob: float = 0.3, lamb: float = 0.5, max_iter: int = 10, modality: str = "rgb"):
        super().__init__(modality)
        self.prob, self.lamb, self.max_iter = prob, lamb, max_iter
        self._art = TotalVarMin(prob=prob, lamb=lamb, max_iter=max_iter, clip_values=(0.0, 1.0))

    def purify(self, x: Tensor) -> Tensor:
        nhwc = x.cpu().double().permute(0, 2, 3, 1).contiguous().numpy()  # ART solves channel-last images
        masks = [(np.random.rand(*image.shape) < self.prob).astype("int") for image in nhwc]  # as ART draws them
        solved = np.stack(list(_pool().map(self._art._minimize, nhwc, masks)))
        out = np.clip(solved, 0.0, 1.0).astype(ART_NUMPY_DTYPE)
        return torch.from_numpy(out).permute(0, 3, 1, 2).to(x)
