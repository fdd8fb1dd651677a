"""What the trainers share: a recipe is a frozen dataclass whose ``id`` hashes every field, so a cached
checkpoint is found again only for the same recipe; one optimisation step."""
from __future__ import annotations

from dataclasses import asdict

import torch
from tqdm import tqdm

from benchmark.provenance import sha256_json


class HashedRecipe:
    """Base of the frozen training-recipe dataclasses."""

    @property
    def id(self) -> str:
        return sha256_json(asdict(self))[:8]


def descend(opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler, loss: torch.Tensor,
            bar: tqdm) -> None:
    """One step on ``loss``: gradients, optimizer, schedule, progress bar."""
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    bar.update()
    bar.set_postfix(loss=f"{loss.item():.3f}")
