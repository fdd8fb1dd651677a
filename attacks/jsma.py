"""A JSMA-style sparse attack for dense and class outputs (after Papernot et al. 2016, "The
Limitations of Deep Learning in Adversarial Settings", arXiv:1511.07528).

JSMA ranks input features by a saliency map built from the Jacobian and saturates the best ones, a few
at a time, until an L0 budget is spent. With a dense output there is no target class to contrast, so
the map is the first-order gain of the task loss L when pixel position p is saturated, each channel
c towards the end of [0,1] its gradient points to:

    S(p) = sum_c |g_c(p)| * (1 - u_c(p) if g_c(p) > 0 else u_c(p)),   g = dL/du,

and each of ``steps`` iterations saturates the k = ceil(B / steps) unchosen positions of highest
S(p), B = floor(eps * H * W) (the L0 budget, a fraction of pixel positions). Saturation is a large
step, so the first-order gain can mislead: per image the iterate with the highest loss is returned
(the clean input being iterate 0, the attack never helps the model). torchattacks' JSMA and
ART's SaliencyMapMethod need a classifier with a target class, so this one is our own.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from .base import check_norm
from .threat import ThreatModel


class JSMA:
    backend = "ours"
    norms = ("l0",)

    def __call__(self, dense: nn.Module, u0: Tensor, target: Tensor, threat: ThreatModel, task: Any,
                 **params: Any) -> Tensor:
        check_norm("jsma", self.norms, threat)
        n, _, h, w = u0.shape
        budget = math.floor(threat.eps * h * w)
        per_step = math.ceil(budget / max(threat.steps, 1)) if budget else 0
        u = u0.clone()
        best, best_loss = u0.clone(), torch.full((n,), -torch.inf, device=u0.device)
        chosen = torch.zeros(n, h * w, dtype=torch.bool, device=u0.device)
        for step in range(threat.steps + 1):
            u.requires_grad_(True)
            loss = task.loss(dense(u), target)
            better = loss.detach() > best_loss
            best = torch.where(better.view(n, 1, 1, 1), u.detach(), best)
            best_loss = torch.where(better, loss.detach(), best_loss)
            k = min(per_step, budget - int(chosen[0].sum()))
            if step == threat.steps or k <= 0:
                break
            (g,) = torch.autograd.grad(loss.sum(), u)
            u = u.detach()
            gain = (g.clamp_min(0) * (1 - u) + (-g).clamp_min(0) * u).sum(1).flatten(1)
            gain[chosen] = -torch.inf
            pick = torch.zeros_like(chosen).scatter_(1, gain.topk(k, dim=1).indices, True)
            chosen |= pick
            saturated = torch.where(g > 0, torch.ones_like(u), torch.where(g < 0, torch.zeros_like(u), u))
            u = torch.where(pick.view(n, 1, h, w), saturated, u)
        return best
