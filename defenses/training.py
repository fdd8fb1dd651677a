"""Training-time defenses of contrastive pre-training against data poisoning: name -> objective factory for
``benchmark.training.contrastive.train_contrastive``. Not in ``defenses/__init__.py``, whose registry holds
test-time input defenses (a defended model is a model); these change how a model is trained. An objective
with ``finetunes`` (CleanCLIP) fine-tunes the model pre-trained without defense on clean pairs, with its
module's ``FINETUNING`` recipe and ``clean_subset``."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from benchmark.training.contrastive import CLIPObjective, Objective

from .cleanclip import CleanCLIP
from .roclip import RoCLIP
from .safeclip import SafeCLIP

TRAINING_DEFENSES: dict[str, Callable[..., Objective]] = {
    "none": CLIPObjective,  # plain CLIP
    "safeclip": SafeCLIP,  # unimodal warm-up, GMM safe/risky split: CLIP loss on the safe set only
    "roclip": RoCLIP,  # every 2nd epoch: each image with its nearest caption in a pool
    "cleanclip": CleanCLIP,  # fine-tuning on clean pairs: CLIP + unimodal loss
}


def build_training_defense(name: str, **params: Any) -> Objective:
    """A fresh objective ``name`` with ``params``; an unknown name or param is a ValueError naming both."""
    if name not in TRAINING_DEFENSES:
        raise ValueError(f"unknown training-time defense {name!r}; registered: {sorted(TRAINING_DEFENSES)}")
    factory = TRAINING_DEFENSES[name]
    accepted = [f.name for f in dataclasses.fields(factory) if f.init]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"training-time defense {name!r} takes {accepted}, not {unknown}")
    return factory(**params)
