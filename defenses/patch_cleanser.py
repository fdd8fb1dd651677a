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

Not an input transform: it wraps the model. The logits it returns are those of a masked forward pass
that predicted the defended label (so argmax is the defense's label). Not differentiable: its labels
come from votes.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from models.base import ModelWrapper


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


class PatchCleanser(ModelWrapper):
    differentiable = False

    def __init__(self, model: nn.Module, patch: float = 0.04, per_axis: int = 6, fill: float = 0.5):
        super().__init__(model)
        self.patch, self.per_axis, self.fill = patch, per_axis, fill

    def masks(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        side = max(1, math.floor(math.sqrt(self.patch * h * w)))
        return mask_set(h, w, side, self.per_axis).to(x.device)

    def masked_logits(self, x: Tensor, keep: Tensor) -> Tensor:
        return self.model(torch.where(keep, x, torch.full_like(x, self.fill)))

    def forward(self, x: Tensor) -> Tensor:
        masks = self.masks(x)
        first = torch.stack([self.masked_logits(x, m) for m in masks], 1)  # (N, K, classes)
        labels = first.argmax(-1)
        out = []
        for n in range(len(x)):
            votes = labels[n].bincount()
            majority = int(votes.argmax())
            chosen = majority
            for i in (i for i in range(len(masks)) if labels[n, i] != majority):  # the disagreers' masks
                second = torch.stack([self.masked_logits(x[n:n + 1], masks[i] & m)[0] for m in masks]).argmax(-1)
                if (second == labels[n, i]).all():
                    chosen = int(labels[n, i])
                    break
            out.append(first[n, int((labels[n] == chosen).nonzero()[0])])
        return torch.stack(out)

    def certified(self, x: Tensor, y: Tensor) -> Tensor:
        """(N,) bool: every two-mask prediction of each image is its label y."""
        masks = self.masks(x)
        ok = torch.ones(len(x), dtype=torch.bool, device=x.device)
        for i in range(len(masks)):
            for j in range(i, len(masks)):
                ok &= self.masked_logits(x, masks[i] & masks[j]).argmax(-1) == y
        return ok
