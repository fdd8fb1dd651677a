"""PatchCleanser (Xiang, Mahloujifar, Mittal, USENIX Security 2022, "PatchCleanser: Certifiably Robust
Defense against Adversarial Patches for Any Image Classifier"): double masking around any classifier.

Mask set: k x k rectangles of size m = p + s - 1 at stride s = ceil((n - p + 1) / k) per axis (the last
one flush with the border), so that every p x p patch lies entirely under at least one mask ("R-covering").
Masked pixels are replaced by ``fill``. With f(x, M) the label of x under the masks M:

    first round   y_i = f(x, {M_i}) for every mask i; all equal -> that label (case I)
    second round  for each minority label's mask i: if f(x, {M_i, M_j}) = y_i for every j -> y_i (case II)
    otherwise     the majority label (case III)

An image is certified for a patch of that size when every two-mask prediction f(x, {M_i, M_j}) (i = j
included) is its true label: no patch inside the covered size can change the output. Defaults: k = 6
(36 masks), the patch side from ``patch`` (its area as a fraction of the image, as the patch threat
model states it), fill 0.5: the official code fills with 0 after normalisation (the normalisation
mean); our models normalise inside ``forward``, so the fill is a pixel value, grey.

Not an input transform: a classifier-level defense (``wraps_model``): ``wrap(model)`` is the defended
classifier, whose logits are those of a masked forward pass that predicted the defended label (so argmax
is the defense's label). Its label comes from votes, so an adaptive attacker crafts on a differentiable
surrogate, the mean of the first-round masked logits (the ensemble whose majority it must flip;
``wrap(model, vote=False)``); the exact classifier passes that surrogate's gradient backward (BPDA).
"""
from __future__ import annotations

import math
import time

import torch
from torch import Tensor, nn

from models.base import ModelWrapper, straight_through

from .base import Defense, DefenseOutput


def mask_set(height: int, width: int, patch: int, per_axis: int = 6) -> Tensor:
    """(K, 1, H, W) bool, True where a mask keeps the pixel: the R-covering set for ``patch`` x ``patch``."""
    def positions(n: int) -> tuple[list[int], int]:
        stride = math.ceil((n - patch + 1) / per_axis)
        size = min(patch + stride - 1, n)
        starts = list(range(0, n - size + 1, stride))
        if (n - size) % stride:
            starts.append(n - size)
        return starts, size

    (rows, mh), (cols, mw) = positions(height), positions(width)
    keep = torch.ones(len(rows) * len(cols), 1, height, width, dtype=torch.bool)
    for k, (r, c) in enumerate((r, c) for r in rows for c in cols):
        keep[k, :, r:r + mh, c:c + mw] = False
    return keep


class PatchCleanser(Defense):
    """The defense's configuration; ``wrap(model)`` is the defended classifier."""

    differentiable = False
    wraps_model = True
    modalities = ("rgb", "depth")

    def __init__(self, patch: float = 0.04, per_axis: int = 6, fill: float = 0.5, modality: str = "rgb"):
        super().__init__(modality)
        if not 0 < patch < 1 or per_axis < 1:
            raise ValueError(f"patch-cleanser: patch is an area fraction in (0, 1) and per_axis >= 1, got {patch}, {per_axis}")
        self.patch, self.per_axis, self.fill = patch, per_axis, fill

    def masks(self, height: int, width: int) -> Tensor:
        """(K, 1, H, W) bool: the mask set for an H x W image and a patch of ``patch`` of its area."""
        return mask_set(height, width, max(1, math.floor(math.sqrt(self.patch * height * width))), self.per_axis)

    def forward(self, rgb: Tensor | None, depth: Tensor | None) -> DefenseOutput:
        raise TypeError("patch-cleanser wraps a classifier, it does not transform inputs: use wrap(model)")

    def wrap(self, model: nn.Module, vote: bool = True) -> "CleansedClassifier":
        """The defended classifier; ``vote=False``: its differentiable surrogate alone (what adaptive
        attacks craft on: the double-masking vote's second round costs up to K forward passes per image)."""
        return CleansedClassifier(model, self, vote)


class CleansedClassifier(ModelWrapper):
    """``model`` behind double masking: one query image (N,C,H,W) in, (N, classes) logits out; without
    ``vote``, the mean of the first-round masked logits."""

    def __init__(self, model: nn.Module, defense: PatchCleanser, vote: bool = True):
        super().__init__(model)
        self.defense, self.exact = defense, vote
        self.train(model.training)  # the defense too
        self.defense_seconds = 0.0
        self.defense_mask: Tensor | None = None

    def masks(self, x: Tensor) -> Tensor:
        return self.defense.masks(*x.shape[-2:]).to(x.device)

    def masked_logits(self, x: Tensor, keep: Tensor) -> Tensor:
        """(N, K, classes): the logits of every image under each of the K masks ``keep`` (K,1,H,W)."""
        n, k = len(x), len(keep)
        masked = torch.where(keep[None], x[:, None], torch.full_like(x[:, None], self.defense.fill))
        return self.model(masked.flatten(0, 1)).view(n, k, -1)

    def vote(self, x: Tensor, masks: Tensor, labels: Tensor) -> Tensor:
        """(N,) the index of a first-round mask whose label is the defended one (cases I-III above)."""
        chosen = []
        for n in range(len(x)):
            majority = int(labels[n].bincount().argmax())
            pick = int((labels[n] == majority).nonzero()[0])
            for i in (i for i in range(len(masks)) if labels[n, i] != majority):  # the disagreers' masks
                second = self.masked_logits(x[n:n + 1], masks[i] & masks)[0].argmax(-1)
                if (second == labels[n, i]).all():
                    pick = i
                    break
            chosen.append(pick)
        return torch.tensor(chosen, device=x.device)

    def forward(self, x: Tensor) -> Tensor:
        start = time.perf_counter()
        masks = self.masks(x)
        first = self.masked_logits(x, masks)
        if not self.exact:
            return first.mean(1)
        with torch.no_grad():
            chosen = self.vote(x, masks, first.argmax(-1))
        exact = first[torch.arange(len(x), device=x.device), chosen]
        self.defense_seconds = time.perf_counter() - start
        return straight_through(exact, first.mean(1))

    @torch.no_grad()
    def certified(self, x: Tensor, y: Tensor) -> Tensor:
        """(N,) bool: every two-mask prediction of each image is its label y (no patch within the
        covered size can change the output)."""
        masks = self.masks(x)
        ok = torch.ones(len(x), dtype=torch.bool, device=x.device)
        for i in range(len(masks)):
            ok &= (self.masked_logits(x, masks[i] & masks[i:]).argmax(-1) == y[:, None]).all(1)
        return ok
