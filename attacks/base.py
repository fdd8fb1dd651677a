"""The interface every attack in the registry implements.

An attack gets ``dense``: a module mapping the attack-space tensor ``u`` (N,C,S,S) in [0,1] to the
task's logits, the clean ``u0``, the task's ``target`` and the cell's :class:`ThreatModel`; it returns
``u_adv``, or an :class:`AttackOutput` when it has more to report (queries spent, a patch mask). The
runner then checks the budget and that the model is unchanged. ``dense`` takes batches of the clean
batch's own size N (it fills in the unattacked modality per image); where it has ``copies_of(index)``,
that gives the view for a batch whose row j is a copy of image ``index[j]``, for querying many copies
at once.

A *universal* attack (one perturbation or patch for a whole dataset) also has
``fit(views, threat, task, **params) -> Tensor`` and ``universal_kind`` ("perturbation" or "patch",
for how it is saved): it is fitted once on the train split, where ``views()`` (called once per epoch)
yields ``(dense, u0, target, names)`` per batch, and the result is passed to every call as
``universal=``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from torch import Tensor, nn

from .threat import ThreatModel


@dataclass
class AttackOutput:
    u: Tensor  # the adversarial batch in attack space
    info: dict[str, Tensor] = field(default_factory=dict)  # per-image (N,) numbers: queries, success, ...
    mask: Tensor | None = None  # (N,1,S,S) bool: the pixels a patch attack may change (its true mask)


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
