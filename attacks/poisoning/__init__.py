"""Poisoning attack registry: one module per attack, one line here. ``build_poisoning(name, target=...,
rate=..., seed=..., **params)`` builds one with the defaults below for the params not given; see
``base.py`` for the contract (``poison(train, held_out) -> PoisonedPairs``, ``apply_trigger``)."""
from __future__ import annotations

import dataclasses
from typing import Any

from .badnets import BadNets
from .base import (SHAPES_CAPTIONS, Backdoor, CaptionTemplates, Pairs, PoisonedPairs, Poisoning, PoisonRecord,
                   names_class)
from .blended import Blended
from .label_consistent import LabelConsistent, LabelConsistentMixin
from .targeted import TargetedPoisoning
from .wanet import WaNet

POISONINGS: dict[str, type[Poisoning]] = {
    # backdoors: round(rate N) train pairs -> (T(x), caption naming the target); apply_trigger(x) at test time
    "badnets": BadNets,  # a seeded 4x4 px pattern at a random position
    "blended": Blended,  # 0.8 x + 0.2 seeded uniform noise image
    "wanet": WaNet,  # a seeded warp field drawn per pixel, s = 1
    "label-consistent": LabelConsistent,  # BadNets' trigger on pairs whose caption names the target, caption kept
    # targeted poisoning: round(rate N) pairs of held-out target images with captions naming the target, added
    "targeted": TargetedPoisoning,  # 8 target images
}


def build_poisoning(name: str, **params: Any) -> Poisoning:
    """The attack ``name`` with ``params``; an unknown name or a param it does not take is a ValueError
    naming both."""
    if name not in POISONINGS:
        raise ValueError(f"unknown poisoning attack {name!r}; registered: {sorted(POISONINGS)}")
    cls = POISONINGS[name]
    accepted = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"poisoning attack {name!r} takes {accepted}, not {unknown}")
    return cls(**params)


__all__ = ["POISONINGS", "SHAPES_CAPTIONS", "Backdoor", "CaptionTemplates", "LabelConsistentMixin", "Pairs",
           "PoisonRecord", "PoisonedPairs", "Poisoning", "build_poisoning", "names_class"]
