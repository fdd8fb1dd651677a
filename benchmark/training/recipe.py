"""What the trainers share: a recipe is a frozen dataclass whose ``id`` hashes every field, so a cached
checkpoint is found again only for the same recipe; one optimisation step; half-precision release."""
from __future__ import annotations

from dataclasses import asdict

import torch
from torch import Tensor, nn
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


@torch.no_grad()
def round_to_half(model: nn.Module) -> dict[str, Tensor]:
    """Round ``model``'s floating-point weights and buffers to float16 values in place (they stay float32)
    and return its state_dict in float16: the weights a recipe releases in half precision (as OpenAI's CLIP
    checkpoints are), scored after the rounding, so they load back exactly as they were scored."""
    state = model.state_dict()
    for t in state.values():
        if t.is_floating_point():
            t.copy_(t.half())
    return {k: t.half() if t.is_floating_point() else t for k, t in state.items()}
