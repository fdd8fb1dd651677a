"""Universal adversarial perturbation (Moosavi-Dezfooli et al. 2017, "Universal adversarial
perturbations", arXiv:1610.08401): one perturbation delta for a whole data distribution,

    max_delta E_x[ L(f(x + delta), y) ]   s.t.  ||delta||_p <= eps,

fitted here by stochastic projected gradient ascent over the train split (the SGD formulation of
Shafahi et al. 2020, "Universal Adversarial Training", arXiv:1811.11304):
delta <- Proj_eps(delta + alpha * sign(grad_delta mean_batch L)) (L-inf) or a normalised-gradient
step (L2), ``epochs`` passes. At test time x_adv = clip(x + delta, 0, 1): nothing is optimised per
image. The original algorithm's inner DeepFool step needs class decision boundaries, which a dense
map does not have; the gradient formulation works for both tasks (the original, for classifiers:
``art-uap`` with ``attacker: deepfool``, art_uap.py).
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn

from .base import check_norm
from .threat import ThreatModel


def project_to_ball(delta: Tensor, threat: ThreatModel) -> Tensor:
    e = threat.space_eps
    if threat.norm == "linf":
        return delta.clamp(-e, e)
    return delta * (e / delta.norm().clamp_min(1e-12)).clamp(max=1.0)


class UniversalPerturbation:
    backend = "ours"
    norms = ("linf", "l2")
    universal_kind = "perturbation"

    def fit(self, views: Callable[[], Iterator[tuple[nn.Module, Tensor, Tensor, list[str]]]], threat: ThreatModel,
            task: Any, *, epochs: int = 5, **params: Any) -> Tensor:
        """The universal delta (C,S,S) in attack space, from ``epochs`` passes over ``views()``."""
        check_norm("uap", self.norms, threat)
        delta: Tensor | None = None
        for _ in range(epochs):
            for dense, u0, target, _names in views():
                if delta is None:
                    delta = torch.zeros_like(u0[0])
                d = delta.clone().requires_grad_(True)
                loss = task.loss(dense((u0 + d).clamp(0, 1)), target).mean()
                (g,) = torch.autograd.grad(loss, d)
                step = g.sign() if threat.norm == "linf" else g / g.norm().clamp_min(1e-12)
                delta = project_to_ball(delta + threat.step_size * step, threat)
        if delta is None:
            raise ValueError("universal perturbation: the training split yielded no batches")
        return delta

    def __call__(self, dense: nn.Module, u0: Tensor, target: Tensor, threat: ThreatModel, task: Any, *,
                 universal: Tensor, **params: Any) -> Tensor:
        check_norm("uap", self.norms, threat)
        return (u0 + universal.to(u0)).clamp(0, 1)
