"""The interface every attack in the registry implements.

An attack gets ``dense``: a module mapping the attack-space tensor ``u`` (N,C,S,S) in [0,1] to the
task's logits, the clean ``u0``, the task's ``target`` and the cell's :class:`ThreatModel`; it returns
``u_adv``. The runner then checks the budget and that the model is unchanged.
"""
from __future__ import annotations

from typing import Any, Protocol

from torch import Tensor, nn

from .threat import ThreatModel


class Attack(Protocol):
    backend: str
    norms: tuple[str, ...]

    def __call__(self, dense: nn.Module, u0: Tensor, target: Tensor, threat: ThreatModel, task: Any,
                 **params: Any) -> Tensor: ...


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
