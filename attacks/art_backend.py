"""Adversarial Robustness Toolbox backend (Nicolae et al. 2018, arXiv:1807.01069).

ART has no dense-prediction estimator, so the task wraps its model as a ``PyTorchClassifier`` over
flattened outputs with its own loss. Labels are always passed (ART would otherwise take argmax
predictions as labels, which is meaningless for a dense map). ART draws its randomness from numpy.
The threat model gives norm, eps, eps_step, max_iter (steps), the query budget (``max_eval``), and for
L0 attacks the feature fraction ``gamma`` = eps / channels, each where the class takes it. Minimum-norm
attacks (CarliniL2Method, DeepFool, SaliencyMapMethod, ZooAttack, HopSkipJump) are kept only where
their perturbation fits the budget (see ``within_budget``).
"""
from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from art.attacks import evasion
from art.estimators.classification import PyTorchClassifier
from torch import Tensor, nn

from .base import ALL_TASKS, AttackOutput, check_norm, within_budget
from .threat import ThreatModel

ART_NORMS = {"linf": np.inf, "l2": 2}


def _square_hooks(dense: nn.Module, task: Any) -> dict[str, Any]:
    """SquareAttack minimises ``loss(x, y)`` per sample and stops a sample once ``adv_criterion`` holds.
    For a dense task (no early stop) we minimise the negated task objective and never stop: the query
    budget is spent in full. A classifier keeps ART's own margin loss and success criterion."""
    device = next(dense.parameters()).device

    def loss(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = dense(torch.from_numpy(x).to(device))
            y_t = torch.from_numpy(y).to(device).view_as(logits)
            return -task.loss(logits, y_t).cpu().numpy()

    return {"loss": loss, "adv_criterion": lambda y_pred, y: np.zeros(len(y), dtype=bool)}


class InputDtype(nn.Module):
    """Casts ART's queries to the attacked input's dtype: some attacks (HopSkipJump) compute in float64
    and query with it."""

    def __init__(self, inner: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.inner, self.dtype = inner, dtype
        self.train(inner.training)

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x.to(self.dtype))


class ARTAttack:
    backend = "art"

    def __init__(self, cls_name: str, norms: tuple[str, ...] = ("linf", "l2"), minimum_norm: bool = False,
                 tasks: tuple[str, ...] = ALL_TASKS, targeted_only: bool = False, **defaults: Any):
        """``targeted_only``: the class reads ``y`` as the target (SaliencyMapMethod), so it is given the
        next class (y + 1) mod K, as torchattacks' JSMA does."""
        self.cls = getattr(evasion, cls_name)
        self.norms = norms
        self.minimum_norm, self.tasks, self.targeted_only, self.defaults = minimum_norm, tasks, targeted_only, defaults

    def __call__(self, dense: nn.Module, u0: Tensor, target: Tensor, threat: ThreatModel, task: Any,
                 **params: Any) -> Tensor | AttackOutput:
        check_norm(self.cls.__name__, self.norms, threat)
        model = InputDtype(task.art_model(dense), u0.dtype)
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
            "norm": ART_NORMS.get(threat.norm), "eps": threat.space_eps, "eps_step": threat.step_size,
            "max_iter": threat.steps, "batch_size": len(u0), "verbose": False, "gamma": threat.eps / u0.shape[1],
        }
        if threat.queries is not None:
            kwargs["max_eval"] = threat.queries
        if self.cls is evasion.SquareAttack and not task.early_stop:
            kwargs.update(_square_hooks(dense, task))
        kwargs = {**kwargs, **self.defaults, **params}
        accepted = inspect.signature(self.cls.__init__).parameters
        attack = self.cls(estimator, **{k: v for k, v in kwargs.items() if k in accepted})
        labels = (target + 1) % nb_classes if self.targeted_only else target
        x_adv = attack.generate(x=u0.detach().cpu().numpy(), y=task.art_labels(labels, nb_classes))
        u = torch.from_numpy(x_adv).to(u0.device, u0.dtype)
        return within_budget(dense, u0, u, target, threat, task) if self.minimum_norm else u
