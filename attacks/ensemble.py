"""Ensemble surrogates for transfer attacks (Liu, Chen, Liu, Song, ICLR 2017, "Delving into Transferable
Adversarial Examples and Black-box Attacks"): an input crafted to fool several models at once is more
likely to fool an unseen one. A transfer cell whose ``surrogate`` names several models, ``bbsnet+d3net``,
crafts on all of them together and is scored on the benchmarked target.

The members are fused in logit space, each at its own input size (the task's attacked view resizes the
input to a member's resolution and its output back):

    z_ens(x) = (1/K) sum_k z_k(x)

Liu et al. fuse the members' softmax outputs; Dong et al. (CVPR 2018, "Boosting Adversarial Attacks with
Momentum", Sec. 3.2) compare fusing logits, probabilities and losses and find the logit ensemble the
strongest. A fused output, not a mean of per-member losses, is also what every attack of the registry
can take unchanged: torchattacks and ART compute their loss on one model output. Input-diversity and
momentum attacks (``mifgsm``, ``difgsm``) run on an ensemble like on any surrogate.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from models import same_model

SEPARATOR = "+"


def ensemble_members(surrogate: str) -> list[str]:
    """The model names of a cell's ``surrogate`` (one for a single surrogate)."""
    return surrogate.split(SEPARATOR)


def includes(surrogate: str, model: str) -> bool:
    """Whether an ensemble ``surrogate`` has ``model`` among its members (then it is not transfer to it)."""
    return len(ensemble_members(surrogate)) > 1 and any(same_model(m, model) for m in ensemble_members(surrogate))


class SurrogateEnsemble(nn.Module):
    """Several surrogate models attacked as one; a task views it through :class:`MeanLogits`."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if len(members) < 2 or len({m.task for m in members}) != 1:
            raise ValueError("an ensemble surrogate needs at least two models of one task")
        self.members = nn.ModuleList(members)
        self.task = members[0].task
        self.train(members[0].training)

    def forward(self, *args, **kwargs) -> Tensor:
        raise TypeError("an ensemble is attacked through its task's view (MeanLogits), one view per member")


class MeanLogits(nn.Module):
    """The mean of several attacked views' logits (each view maps the attack space to one member's
    logits at the target's resolution)."""

    def __init__(self, views: Sequence[nn.Module]):
        super().__init__()
        self.views = nn.ModuleList(views)
        self.train(views[0].training)

    def forward(self, u: Tensor) -> Tensor:
        return torch.stack([view(u) for view in self.views]).mean(0)

    def copies_of(self, index: Tensor) -> MeanLogits:
        """This view for a batch of copies of images ``index`` (query-based attacks), member by member."""
        return MeanLogits([view.copies_of(index) for view in self.views])
