"""Targeted data poisoning of contrastive pre-training (Carlini & Terzis 2022, "Poisoning and
Backdooring Contrastive Learning", ICLR, arXiv:2106.09667): to make a model put a chosen image x'_j in a
chosen class y', add pairs of x'_j with captions that name y',

    D' = D + {(x'_j, c) : c in C_j, j = 1..m},   C_j: n_j captions naming y',   sum_j n_j = round(rate N),

and the attack succeeds on x'_j when the model classifies it (zero-shot, top-1) as y'. RoCLIP builds it
this way (BigML-CS-UCLA/RoCLIP, model/create_poison.ipynb): 8 target images taken from held-out data
(ImageNet validation, never in the training set), each with its own target class and 100 captions
picked from the data's captions that contain the class word, the pairs appended to the training set.

Here: ``targets`` (default 8, as RoCLIP) held-out images that are not of the target class, drawn from the
seed, all aimed at the one ``target``; the round(rate N) poison pairs split between them as evenly as
possible (the first ones get one more), captions from ``captions`` (the shapes' own templates filled with
the target by default), appended after the unchanged train pairs. ``target_images`` on the result maps
each target image's held-out index to its target, also at rate 0 (the clean model's baseline).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import Pairs, PoisonedPairs, PoisonRecord, Poisoning, rng_for


@dataclass(frozen=True)
class TargetedPoisoning(Poisoning):
    targets: int = 8  # target images
    kind: ClassVar[str] = "targeted"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.targets < 1:
            raise ValueError(f"targeted poisoning needs >= 1 target image, got {self.targets}")

    def poison(self, train: Pairs, held_out: Pairs | None = None) -> PoisonedPairs:
        if held_out is None or held_out.labels is None:
            raise ValueError("targeted poisoning takes its target images from a labelled held-out set (held_out=)")
        if held_out.images.shape[1:] != train.images.shape[1:]:
            raise ValueError(f"held-out images {tuple(held_out.images.shape[1:])} and train images "
                             f"{tuple(train.images.shape[1:])} differ in shape")
        self.target_label(train.classnames)
        pool = (held_out.labels != self.target_label(held_out.classnames)).nonzero().flatten().numpy()
        n_poison = self.count(len(train))
        if len(pool) < self.targets or 0 < n_poison < self.targets:
            raise ValueError(f"targeted poisoning of {self.targets} target images needs as many held-out images "
                             f"not of class {self.target!r} (there are {len(pool)}) and as many poison pairs "
                             f"(rate {self.rate} gives {n_poison})")
        rng = rng_for(self.seed, "poison")
        chosen = rng.choice(pool, self.targets, replace=False).tolist()
        per_target = [n_poison // self.targets + (k < n_poison % self.targets) for k in range(self.targets)]
        sources = [j for j, n in zip(chosen, per_target) for _ in range(n)]
        rows = torch.tensor(sources, dtype=torch.long)
        images = torch.cat([train.images, held_out.images[rows].to(train.images)])
        captions = list(train.captions) + self.captions(self.target, len(sources), rng)
        labels = None if train.labels is None else torch.cat([train.labels, held_out.labels[rows].to(train.labels)])
        records = tuple(PoisonRecord(len(train) + k, self.kind, j, self.target) for k, j in enumerate(sources))
        return PoisonedPairs(images, captions, labels, train.classnames, records, {j: self.target for j in chosen})
