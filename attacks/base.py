"""The interface every attack in the registry implements.

An attack gets ``dense``: a module mapping the attack-space tensor ``u`` (N,C,S,S) in [0,1] to the
task's logits, the clean ``u0``, the task's ``target`` and the cell's :class:`ThreatModel`; it returns
``u_adv``, or an :class:`AttackOutput` when it has more to report (queries spent, a patch mask). The
runner then checks the budget and that the model is unchanged. ``dense`` takes batches of the clean
batch's own size N (it fills in the unattacked modality per image); where it has ``copies_of(index)``,
that gives the view for a batch whose row j is a copy of image ``index[j]``, for querying many copies
at once.

A *universal* attack (one perturbation or patch for a whole dataset, or a generator of perturbations:
AdvGAN) also has ``fit(views, threat, task, **params) -> Tensor | state_dict`` and ``universal_kind``
("perturbation", "patch" or "generator", for how it is saved): it is fitted once on the train split, where ``views()`` (called once per epoch)
yields ``(dense, u0, target, names)`` per batch, and the result is passed to every call as
``universal=``.

``tasks`` names the tasks an attack works on ("saliency", "classification"); an attack without it
works on every task. A *minimum-norm* attack (C&W, DeepFool, JSMA, FAB, HopSkipJump, ART's ZOO) returns
the smallest perturbation it finds, of any size: :func:`within_budget` keeps it where it fits the
threat model's budget and the clean input elsewhere, so robust accuracy is measured at eps.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from .threat import ThreatModel


@dataclass
class AttackOutput:
    u: Tensor  # the adversarial batch in attack space
    info: dict[str, Tensor] = field(default_factory=dict)  # per-image (N,) numbers: queries, success, ...
    mask: Tensor | None = None  # (N,1,S,S) bool: the pixels a patch attack may change (its true mask)


ALL_TASKS = ("saliency", "classification")
CLASSIFICATION = ("classification",)


class Attack(Protocol):
    backend: str
    norms: tuple[str, ...]

    def __call__(self, dense: nn.Module, u0: Tensor, target: Tensor, threat: ThreatModel, task: Any,
                 **params: Any) -> Tensor | AttackOutput: ...


def as_output(result: Tensor | AttackOutput) -> AttackOutput:
    return result if isinstance(result, AttackOutput) else AttackOutput(result)


class NoAttack:
    """The clean reference cell: returns the input unchanged."""

    backend = "none"
    norms = ("linf", "l2")

    def __call__(self, dense: nn.Module, u0: Tensor, target: Tensor, threat: ThreatModel, task: Any,
                 **params: Any) -> Tensor:
        return u0.clone()


def check_norm(name: str, norms: tuple[str, ...], threat: ThreatModel) -> None:
    if threat.norm not in norms:
        raise ValueError(f"attack {name!r} supports norms {norms}, not {threat.norm!r}")


def perturbation_size(u0: Tensor, u: Tensor, norm: str) -> Tensor:
    """(N,) size of u - u0 in ``norm``: L-inf, L2, or L0 as the fraction of pixel positions changed
    (any channel by more than 1e-6)."""
    d = u - u0
    if norm == "linf":
        return d.flatten(1).abs().amax(1)
    if norm == "l2":
        return d.flatten(1).norm(dim=1)
    return (d.abs().amax(1) > 1e-6).flatten(1).float().mean(1)


def within_budget(dense: nn.Module, u0: Tensor, u: Tensor, target: Tensor, threat: ThreatModel,
                  task: Any) -> AttackOutput:
    """A minimum-norm attack's output where its perturbation fits ``threat`` (eps, relative slack 1e-6),
    the clean input elsewhere. Records ``found_norm`` per image: the size of the successful perturbation
    it found (inf where it found none)."""
    size = perturbation_size(u0, u, threat.norm)
    inside = size <= threat.space_eps * (1 + 1e-6)
    with torch.no_grad():
        success = task.success(dense(u), target)
    kept = torch.where(inside.view(-1, *[1] * (u.dim() - 1)), u, u0)
    return AttackOutput(kept, {"found_norm": torch.where(success, size, torch.full_like(size, float("inf")))})
