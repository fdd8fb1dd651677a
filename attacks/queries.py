"""Query accounting for black-box attacks: one wrapper counts every model query, per image.

A black-box attack (``black_box = True`` on the attack) may only read the model's outputs, and a cell
gives it ``queries`` per image. Libraries count (and cap) their queries in their own ways, some not at
all (ART's HopSkipJump caps only the gradient-estimation samples of one iteration), so the benchmark
counts what reaches the model instead: :class:`QueryCounter` wraps the attacked ``dense`` view and
counts the rows it forwards, each charged to one image of the batch:

* rows of a ``copies_of(index)`` view (our ZOO's batched copies): row j to image ``index[j]``;
* rows sent inside ``charging(i)`` (an attack run one image at a time): all to image i;
* a batch of the clean batch's own size N: row j to image j (the ``dense`` interface, see ``base.py``);
* any other batch (an attack querying the subset of images still robust): each row to the clean image
  nearest to it, which is its own image whenever the rows stay within their images' eps-balls and no two
  clean images lie within 2 eps of each other.

An attack that asks the same row of the same image again pays once while the counter is
``remembering()``: it answers from the image's last two answers, unforwarded and uncounted, as an attacker
that keeps its answers would. ART's SquareAttack asks each iterate three times per iteration (whether
it is still robust, then its loss, then the loss of the new candidate; ART does not keep the current
loss), where Square's paper (Andriushchenko et al. 2020, arXiv:1912.00049) counts one query per
iteration: remembered, it spends one, and a cell's time is that of its real queries.

A query that would take an image past the budget is not forwarded: :class:`QueryBudgetExceeded` is
raised instead, which an attack that can stop early catches (HopSkipJump); anywhere else the cell fails,
as it does on a perturbation outside eps. The runner wraps ``dense`` for every black-box attack and
stores the counts as the cell's per-image ``queries``; an attack called directly wraps it itself
(:func:`counted`), so the count it records is the same either way.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


class QueryBudgetExceeded(RuntimeError):
    """A query would take an image past its budget; it was not forwarded."""


class QueryCounter(nn.Module):
    """``inner`` (the attacked view) with per-image query counts and an optional per-image ``budget``."""

    def __init__(self, inner: nn.Module, u0: Tensor, budget: int | None = None,
                 counts: Tensor | None = None, index: Tensor | None = None):
        super().__init__()
        self.inner, self.budget = inner, budget
        self.u0 = u0.detach()
        self.counts = torch.zeros(len(u0), dtype=torch.long) if counts is None else counts  # shared with copies
        self.index = index  # copies_of view: the image of each row
        self.fixed: int | None = None  # inside charging(i)
        self.memory: dict[int, OrderedDict[bytes, Tensor]] | None = None  # inside remembering()
        # a new Module starts in train mode, and libraries restore their model's mode after attacking:
        # report the view's mode, without setting it on the view (train() would recurse into the model)
        self.training = inner.training

    def copies_of(self, index: Tensor) -> QueryCounter:
        """The view for a batch whose row j is a copy of image ``index[j]``, charging row j to it."""
        inner = self.inner.copies_of(index) if hasattr(self.inner, "copies_of") else self.inner
        return QueryCounter(inner, self.u0, self.budget, self.counts, index.cpu())

    @contextmanager
    def charging(self, image: int) -> Iterator[None]:
        """Charge every row sent meanwhile to ``image`` (an attack run on one image at a time)."""
        self.fixed = image
        try:
            yield
        finally:
            self.fixed = None

    @contextmanager
    def remembering(self, answers: int = 2) -> Iterator[None]:
        """Answer a row already asked for the same image from memory, without counting it (see the
        module), keeping each image's last ``answers`` answers."""
        self.memory, self.answers = {}, answers
        try:
            yield
        finally:
            self.memory = None

    def images_of(self, u: Tensor) -> Tensor:
        """(len(u),) the image each row is charged to (see the module)."""
        if self.index is not None:
            return self.index
        if self.fixed is not None:
            return torch.full((len(u),), self.fixed, dtype=torch.long)
        if len(u) == len(self.u0):
            return torch.arange(len(u))
        rows = u.detach().flatten(1).to(self.u0)
        return torch.cdist(rows, self.u0.flatten(1)).argmin(1).cpu()

    def forward(self, u: Tensor) -> Tensor:
        images = self.images_of(u)
        if self.memory is None:
            return self._ask(self.inner, u, images)
        keys = [hashlib.blake2b(row.numpy().tobytes(), digest_size=16).digest() for row in u.detach().cpu()]
        known = [self.memory.setdefault(int(i), OrderedDict()) for i in images]
        for answers, key in zip(known, keys):
            if key in answers:
                answers.move_to_end(key)
        new = [j for j, (answers, key) in enumerate(zip(known, keys)) if key not in answers]
        if len(new) == len(u):
            fresh = self._ask(self.inner, u, images)
        elif new:
            index = torch.tensor(new)
            view = self.inner.copies_of(images[index]) if hasattr(self.inner, "copies_of") else self.inner
            fresh = self._ask(view, u[index], images[index])
        for k, j in enumerate(new):
            known[j][keys[j]] = fresh[k].detach().clone()
            if len(known[j]) > self.answers:
                known[j].popitem(last=False)
        if len(new) == len(u):
            return fresh
        return torch.stack([answers[key] for answers, key in zip(known, keys)])

    def _ask(self, inner: nn.Module, u: Tensor, images: Tensor) -> Tensor:
        """``inner(u)``, its rows charged to ``images``, unless that takes an image past the budget."""
        new = torch.bincount(images, minlength=len(self.counts))
        if self.budget is not None and bool((self.counts + new > self.budget).any()):
            image = int((self.counts + new - self.budget).argmax())
            raise QueryBudgetExceeded(f"image {image}: {int(self.counts[image])} queries spent, "
                                      f"{int(new[image])} more asked, budget {self.budget}")
        self.counts += new
        return inner(u)

    def per_image(self, like: Tensor) -> Tensor:
        """The counts as an (N,) float tensor on ``like``'s device, for an attack's ``info``."""
        return self.counts.to(like.device, torch.float32)


def counted(dense: nn.Module, u0: Tensor, budget: int | None) -> QueryCounter:
    """``dense`` if it already counts queries for this batch (the runner's wrapper), else ``dense`` wrapped."""
    if isinstance(dense, QueryCounter) and dense.index is None and len(dense.counts) == len(u0):
        return dense
    return QueryCounter(dense, u0, budget)
