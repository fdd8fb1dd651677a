"""torchattacks backend (Kim 2020, arXiv:2010.01950): any of its white-box attacks by class name.

The task supplies the model view torchattacks expects (logits over a class axis) and the labels; the
threat model supplies eps, alpha = rel_step * eps and steps, passed only where the class takes them.
"""
from __future__ import annotations

import inspect
from typing import Any

import torchattacks
from torch import Tensor, nn

from .base import check_norm
from .threat import ThreatModel


class TorchattacksAttack:
    backend = "torchattacks"

    def __init__(self, cls_name: str, norm: str, **defaults: Any):
        self.cls = getattr(torchattacks, cls_name)
        self.norms = (norm,)
        self.defaults = defaults

    def __call__(self, dense: nn.Module, u0: Tensor, target: Tensor, threat: ThreatModel, task: Any,
                 **params: Any) -> Tensor:
        check_norm(self.cls.__name__, self.norms, threat)
        accepted = inspect.signature(self.cls.__init__).parameters
        budget = {"eps": threat.space_eps, "alpha": threat.step_size, "steps": threat.steps}
        kwargs = {k: v for k, v in {**budget, **self.defaults, **params}.items() if k in accepted}
        attack = self.cls(task.torchattacks_model(dense), **kwargs)
        return attack(u0, task.torchattacks_labels(target)).detach()
