"""A defended model is ``model o defense`` and is itself a model: same forward signature, same
attributes (input size, loader, post-processing), so every attack and task adapter runs on it
unchanged. ``ExpectationOverTransformation`` is what an adaptive attacker queries for a randomized
defense (Athalye, Engstrom, Ilyas, Kwok, ICML 2018, EOT): the mean output over ``n`` draws,
f_EOT(x) = (1/n) sum_i f(t_i(x)), whose gradient is the mean of the draws' gradients.
"""
from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor, nn

from models.base import ModelWrapper

from .base import Defense


class DefendedModel(ModelWrapper):
    """``model(defense(rgb, depth))`` for an RGB-D model; for a classifier that takes one ``query``
    image (``"rgb"`` or ``"depth"``), ``model(defense(query))``. A spatial defense's ``restore`` maps a
    dense output back to the input's geometry. ``defense_seconds``: the defense's wall time in the last
    forward pass (what the runner reports as its cost); ``defense_mask``: where a patch defense located the
    patch in it (None for the others)."""

    def __init__(self, model: nn.Module, defense: Defense, query: str | None = None):
        super().__init__(model)
        self.defense, self.query = defense, query
        self.train(model.training)  # the defense too
        self.defense_seconds = 0.0
        self.defense_mask: Tensor | None = None

    def forward(self, *inputs: Tensor, **kwargs: Any) -> Tensor:
        if self.query is None:
            rgb, depth = inputs
        else:
            (x,) = inputs
            rgb, depth = (x, None) if self.query == "rgb" else (None, x)
        start = time.perf_counter()
        out = self.defense(rgb, depth)
        self.defense_seconds = time.perf_counter() - start
        self.defense_mask = out.mask
        purified = (out.rgb, out.depth) if self.query is None else (out.rgb if self.query == "rgb" else out.depth,)
        logits = self.model(*purified, **kwargs)
        return logits if out.restore is None else out.restore(logits)


class ExpectationOverTransformation(ModelWrapper):
    """The mean of ``n`` forward passes of a randomized ``model`` (each draws its own randomness)."""

    def __init__(self, model: nn.Module, n: int):
        super().__init__(model)
        if n < 1:
            raise ValueError(f"EOT needs n >= 1 samples, got {n}")
        self.n = n

    def forward(self, *inputs: Tensor, **kwargs: Any) -> Tensor:
        return torch.stack([self.model(*inputs, **kwargs) for _ in range(self.n)]).mean(0)
