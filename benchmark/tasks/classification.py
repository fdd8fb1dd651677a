"""Task adapter for image classification (and, through class-prompt logits, CLIP zero-shot).

The model maps the attack-space image u (N,C,H,W) in [0,1] to class logits (N,K); the target is the
label (N,). Attack objective: cross-entropy. Black-box and C&W-style attacks use the margin
m = Z_y - max_{j != y} Z_j of Carlini & Wagner (2017, eq. f_6): an attack succeeds when m < 0.
"""
from __future__ import annotations

import numpy as np
import torch.nn.functional as F
from torch import Tensor, nn


def margin(logits: Tensor, label: Tensor) -> Tensor:
    """(N,) Z_y - max_{j != y} Z_j."""
    true = logits.gather(1, label[:, None])[:, 0]
    other = logits.scatter(1, label[:, None], float("-inf")).amax(1)
    return true - other


class ClassificationTask:
    name = "classification"
    early_stop = True  # once misclassified an image needs no more queries

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """(N,) cross-entropy, what gradient attacks maximise."""
        return F.cross_entropy(logits, target, reduction="none")

    def reference(self, clean_logits: Tensor) -> Tensor:
        """The target to use when no label is given: the clean prediction."""
        return clean_logits.argmax(1)

    def blackbox_objective(self, logits: Tensor, target: Tensor) -> Tensor:
        """(N,) the negated margin, to maximise from outputs alone."""
        return -margin(logits, target)

    def cw_objective(self, logits: Tensor, target: Tensor, kappa: float = 0.0) -> Tensor:
        """(N,) C&W f_6 to minimise: max(m, -kappa)."""
        return margin(logits, target).clamp_min(-kappa)

    def success(self, logits: Tensor, target: Tensor) -> Tensor:
        return logits.argmax(1) != target

    def object_mask(self, target: Tensor) -> None:
        """Labels say nothing about where the object is: patch placement falls back to random."""
        return None

    # torchattacks and ART take a classifier as it is
    def torchattacks_model(self, dense: nn.Module) -> nn.Module:
        return dense

    def torchattacks_labels(self, target: Tensor) -> Tensor:
        return target

    def art_model(self, dense: nn.Module) -> nn.Module:
        return dense

    def art_loss(self) -> nn.Module:
        return nn.CrossEntropyLoss()

    def art_labels(self, target: Tensor, nb_classes: int) -> np.ndarray:
        return F.one_hot(target, nb_classes).cpu().numpy().astype(np.float32)

