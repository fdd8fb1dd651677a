"""Adversarial Robustness Toolbox backend (Nicolae et al. 2018, arXiv:1807.01069).

ART has no dense-prediction estimator, so the task wraps its model as a ``PyTorchClassifier`` over
flattened outputs with its own loss. Labels are always passed (ART would otherwise take argmax
predictions as labels, which is meaningless for a dense map). ART draws its randomness from numpy.
"""
from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from art.attacks import evasion
from art.estimators.classification import PyTorchClassifier
from torch import Tensor, nn

from .base import check_norm
from .threat import ThreatModel

ART_NORMS = {"linf": np.inf, "l2": 2}


def _square_hooks(dense: nn.Module, task: Any) -> dict[str, Any]:
    """SquareAttack minimises ``loss(x, y)`` per sample and stops a sample once ``adv_criterion`` holds.
    We minimise the negated task objective and never stop early: the query budget is spent in full."""
    device = next(dense.parameters()).device

    def loss(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = dense(torch.from_numpy(x).to(device))
            y_t = torch.from_numpy(y).to(device).view_as(logits)
            return -task.loss(logits, y_t).cpu().numpy()

    return {"loss": loss, "adv_criterion": lambda y_pred, y: np.zeros(len(y), dtype=bool)}


class ARTAttack:
    backend = "art"

    def __init__(self, cls_name: str, norms: tuple[str, ...] = ("linf", "l2"), **defaults: Any):
        self.cls = getattr(evasion, cls_name)
        self.norms = norms
        self.defaults = defaults

    def __call__(self, dense: nn.Module, u0: Tensor, target: Tensor, threat: ThreatModel, task: Any,
                 **params: Any) -> Tensor:
        check_norm(self.cls.__name__, self.norms, threat)
        model = task.art_model(dense)
        with torch.no_grad():
            nb_classes = model(u0).shape[1]  # the whole batch: a view may hold per-image state
        estimator = PyTorchClassifier(
            model=model,
            loss=task.art_loss(),
            input_shape=tuple(u0.shape[1:]),
            nb_classes=nb_classes,
            clip_values=(0.0, 1.0),
            device_type="gpu" if u0.is_cuda else "cpu",
        )
        kwargs: dict[str, Any] = {
            "norm": ART_NORMS[threat.norm], "eps": threat.space_eps, "eps_step": threat.step_size,
            "max_iter": threat.steps, "batch_size": len(u0), "verbose": False,
        }
        if self.cls is evasion.SquareAttack:
            kwargs.update(_square_hooks(dense, task))
        kwargs = {**kwargs, **self.defaults, **params}
        accepted = inspect.signature(self.cls.__init__).parameters
        attack = self.cls(estimator, **{k: v for k, v in kwargs.items() if k in accepted})
        x_adv = attack.generate(x=u0.detach().cpu().numpy(), y=task.art_labels(target, nb_classes))
        return torch.from_numpy(x_adv).to(u0.device, u0.dtype)
