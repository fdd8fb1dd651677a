"""A Carlini-Wagner-style L2 attack for dense and class outputs (Carlini & Wagner 2017, "Towards
Evaluating the Robustness of Neural Networks", arXiv:1608.04644).

In tanh space x = (tanh(w) + 1) / 2 (so x stays in [0,1]) it minimises, per image,

    ||x - u0||_2^2 + c * f(x),

with Adam, where f is the task's hinge (``task.cw_objective``): for a classifier C&W's
f_6 = max(Z_y - max_{j != y} Z_j, -kappa); for a saliency map the mean over pixels of
max((2 y_p - 1) z_p + kappa, 0), which is 0 once every pixel sits on the wrong side of the GT.
A binary search over c (``search_steps`` rounds of ``threat.steps`` iterations) finds the smallest
c that succeeds (``task.success``). As a benchmark cell it has a budget eps: every iterate is also
projected onto the L2 ball of radius eps, and per image we return the smallest successful projected
iterate, or if none succeeds the one with the lowest f. torchattacks' and ART's C&W need class
logits, so this one is our own.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .base import AttackOutput, check_norm
from .threat import ThreatModel


def _project_l2(u0: Tensor, x: Tensor, eps: float) -> Tensor:
    delta = x - u0
    norm = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    return u0 + delta * (eps / norm).clamp(max=1.0).view(-1, *[1] * (x.dim() - 1))


class CarliniWagnerL2:
    backend = "ours"
    norms = ("l2",)

    def __call__(self, dense: nn.Module, u0: Tensor, target: Tensor, threat: ThreatModel, task: Any, *,
                 c: float = 1.0, search_steps: int = 4, lr: float = 0.01, kappa: float = 0.0,
                 **params: Any) -> AttackOutput:
        check_norm("cw", self.norms, threat)
        n, eps = len(u0), threat.space_eps
        const = torch.full((n,), c, device=u0.device)
        lower, upper = torch.zeros_like(const), torch.full_like(const, 1e10)
        best = u0.clone()
        best_norm = torch.full_like(const, torch.inf)  # of the best successful candidate
        with torch.no_grad():
            best_f = task.cw_objective(dense(u0), target, kappa)  # of the best candidate while none succeeds
        best_success = torch.zeros(n, dtype=torch.bool, device=u0.device)
        w0 = torch.atanh((2 * u0 - 1).clamp(-1 + 1e-6, 1 - 1e-6))
        for _ in range(search_steps):
            w = w0.clone().requires_grad_(True)
            opt = torch.optim.Adam([w], lr=lr)
            succeeded = torch.zeros_like(best_success)
            for _ in range(threat.steps):
                x = (torch.tanh(w) + 1) / 2
                dist = (x - u0).flatten(1).pow(2).sum(1)
                loss = (dist + const * task.cw_objective(dense(x), target, kappa)).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    cand = _project_l2(u0, (torch.tanh(w) + 1) / 2, eps)
                    logits = dense(cand)
                    ok, f = task.success(logits, target), task.cw_objective(logits, target, kappa)
                    norm = (cand - u0).flatten(1).norm(dim=1)
                    better = torch.where(ok, ~best_success | (norm < best_norm), ~best_success & (f < best_f))
                    best = torch.where(better.view(-1, *[1] * (u0.dim() - 1)), cand, best)
                    best_norm = torch.where(better & ok, norm, best_norm)
                    best_f = torch.where(better, f, best_f)
                    best_success |= ok
                    succeeded |= ok
            # binary search on c: shrink where it succeeded, grow (x10 until bounded) where it did not
            upper = torch.where(succeeded, torch.minimum(upper, const), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, const))
            const = torch.where(upper < 1e10, (lower + upper) / 2, const * 10)
        return AttackOutput(best, {"success": best_success.float()})
