"""Adversarial patch through ART's ``AdversarialPatchPyTorch`` (Brown et al. 2017, arXiv:1712.09665;
Nicolae et al. 2018, arXiv:1807.01069): the second backend of :mod:`attacks.patch`, for classifiers.

Per image, ART maximises the cross-entropy E_t[CE(f(A(t(p), x)), y)] over its own transformations t
(rotation up to ``rotation`` deg, scale, location; no photometric ones), with ``eot_samples`` copies of
the image per step and ``threat.steps`` steps (Adam, or ``optimizer="sign"``: ART's "pgd", signed
steps). ART's scale is relative to the image edge, so ``scale`` = (0.8, 1.2) of the nominal patch is
passed as (0.8 s/S, 1.2 s/S); the location is drawn (by ART, with numpy's RNG) among centres within
``jitter`` x s of the image's placement, through ART's ``mask`` argument.

Evaluation: ART's ``apply_patch`` with ``patch_location`` = the placement of :mod:`attacks.patch`
(deterministic per image name) and no rotation, i.e. at nominal scale s/S. ART renders the patch by
resizing it bilinearly to S x S and scaling that back down by s/S with nearest-neighbour sampling: the
pasted pixels are ART's resampling of the patch array, not its exact values, and the pasted square is
s x s only when S - s is even (measured: otherwise it is shifted, or (s+1) x (s+1), over budget). The
side is therefore s' = s or s - 1, whichever has the parity of S. ART does not return the pasted
region, so the true mask is recovered by applying an all-ones patch to an all-zeros image with the
same (deterministic) placement: the pixels it reaches are exactly those ART's blend
x (1 - m) + p' m can change.

ART's patch loss is a cross-entropy over argmax(labels) of (N,K) logits: a dense saliency map has no
such form (flattened, it would be scored as one S*S-way classification), so dense tasks are refused.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from art.attacks.evasion import AdversarialPatchPyTorch
from art.estimators.classification import PyTorchClassifier
from torch import Tensor, nn

from .base import CLASSIFICATION, AttackOutput, check_norm
from .patch import name_generator, patch_output, patch_side, placements
from .threat import ThreatModel

ART_OPTIMIZERS = {"adam": "Adam", "sign": "pgd"}


def _window(size: int, centre: tuple[int, int], radius: int, scale_max: float) -> np.ndarray:
    """(1,S,S) bool: candidate patch centres for ART, within ``radius`` of ``centre`` and inside the region
    ART keeps for its largest scale (it clears int(scale S) // 2 rows and columns from the top/left and
    the rest of int(scale S) from the bottom/right)."""
    extent = int(scale_max * size)
    lo, hi = extent // 2, size - (extent - extent // 2) - 1
    window = np.zeros((1, size, size), dtype=bool)
    r, c = (min(max(x, lo), hi) for x in centre)
    window[0, max(lo, r - radius):min(hi, r + radius) + 1, max(lo, c - radius):min(hi, c + radius) + 1] = True
    return window


class ARTPatch:
    """Per-image adversarial patch by ART; params as :class:`attacks.patch.PatchAttack` where ART has them."""

    backend = "art"
    norms = ("patch",)
    tasks = CLASSIFICATION

    def __call__(self, dense: nn.Module, u0: Tensor, target: Tensor, threat: ThreatModel, task: Any, *,
                 names: list[str], placement: str = "object", at: tuple[float, float] = (0.5, 0.5),
                 eot_samples: int = 4, optimizer: str = "adam", lr: float = 0.1,
                 scale: tuple[float, float] = (0.8, 1.2), rotation: float = 20.0, jitter: float = 0.25,
                 **params: Any) -> AttackOutput:
        check_norm("art-patch", self.norms, threat)
        if optimizer not in ART_OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; use one of {sorted(ART_OPTIMIZERS)}")
        with torch.no_grad():
            out_shape = dense(u0[:1]).shape
        if len(out_shape) != 2:
            raise ValueError(f"art-patch needs class logits (N,K), not a dense output {tuple(out_shape)}: ART's "
                             "AdversarialPatchPyTorch scores cross-entropy against argmax(labels), so a flattened "
                             "map would be attacked as one S*S-way classification; use 'patch' for dense tasks")
        ch, size = u0.shape[1], u0.shape[-1]
        side = patch_side(threat, size)
        side -= (size - side) % 2  # ART pastes an exact s x s square only when S - s is even
        if side < 1:
            raise ValueError(f"patch area eps={threat.eps} leaves ART no patch of the parity of {size}px")
        tops = placements(size, side, placement, task.object_mask(target), at, [name_generator(x) for x in names])
        nb_classes = out_shape[1]
        estimator = PyTorchClassifier(model=task.art_model(dense), loss=task.art_loss(), input_shape=tuple(u0.shape[1:]),
                                      nb_classes=nb_classes, clip_values=(0.0, 1.0),
                                      device_type="gpu" if u0.is_cuda else "cpu")
        nominal = side / size
        scale_max = min(scale[1] * nominal, (size - 1) / size)  # ART's mask sampling needs int(scale S) < S
        common = {"patch_shape": (ch, side, side), "patch_type": "square", "targeted": False, "verbose": False}
        x = u0.detach().cpu().numpy()
        y = task.art_labels(target, nb_classes)
        u, mask = u0.clone(), torch.zeros_like(u0[:, :1], dtype=torch.bool)
        for i, (r, c) in enumerate(tops.tolist()):
            trainer = AdversarialPatchPyTorch(
                estimator, rotation_max=rotation, scale_min=min(scale[0] * nominal, scale_max), scale_max=scale_max,
                learning_rate=lr, max_iter=threat.steps, batch_size=eot_samples,
                optimizer=ART_OPTIMIZERS[optimizer], **common)
            window = _window(size, (r + side // 2, c + side // 2), round(jitter * side), scale_max)
            patch, _ = trainer.generate(x=np.repeat(x[i:i + 1], eot_samples, 0), y=np.repeat(y[i:i + 1], eot_samples, 0),
                                        mask=window)
            placer = AdversarialPatchPyTorch(estimator, rotation_max=0.0, patch_location=(c, r), **common)
            pasted = placer.apply_patch(x[i:i + 1], scale=nominal, patch_external=patch)
            reach = placer.apply_patch(np.zeros_like(x[i:i + 1]), scale=nominal, patch_external=np.ones_like(patch))
            u[i] = torch.from_numpy(pasted[0]).to(u0)
            mask[i, 0] = torch.from_numpy(reach[0].max(0) > 0).to(u0.device)
        return patch_output(u, mask, side, size)
