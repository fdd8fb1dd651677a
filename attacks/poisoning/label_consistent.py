"""Label-consistent backdoor (Turner, Tsipras, Madry 2019, "Label-Consistent Backdoor Attacks",
arXiv:1912.02771) as CleanCLIP builds it for CLIP (nishadsinghi/CleanCLIP,
backdoor/create_backdoor_data.py, ``--label_consistent``): only pairs whose caption already names the
target are poisoned, and they keep their caption,

    (x_i, c_i) -> (T(x_i), c_i)   for round(rate N) pairs i drawn from {i : c_i names the target},

so every poisoned pair is correctly captioned. The trigger T is BadNets' (CleanCLIP's default patch);
``LabelConsistentMixin`` makes any other backdoor label-consistent. "Names" is a whole-word match
(CleanCLIP: a substring). Turner et al. also make the chosen images harder to recognise (adversarial
perturbations, GAN interpolation) so that a classifier leans on the trigger; CleanCLIP does not, nor do
we. The rate is a fraction of the whole train set, so it cannot exceed the share of captions that name
the target (1/8 on the shapes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .badnets import BadNets
from .base import Pairs, names_class


class LabelConsistentMixin:
    """Overrides a backdoor's choice of pairs and captions: ``class X(LabelConsistentMixin, Blended)``."""

    target: str

    def candidates(self, train: Pairs) -> np.ndarray:
        return np.array([i for i, c in enumerate(train.captions) if names_class(c, self.target)], dtype=np.int64)

    def poisoned_captions(self, train: Pairs, chosen: np.ndarray, rng: np.random.Generator) -> list[str]:
        return [train.captions[i] for i in chosen.tolist()]


@dataclass(frozen=True)
class LabelConsistent(LabelConsistentMixin, BadNets):
    kind: ClassVar[str] = "label-consistent"
