"""RoCLIP (Yang, Gao, Mirzasoleiman, "Robust Contrastive Language-Image Pretraining against Data Poisoning
and Backdoor Attacks", NeurIPS 2023, arXiv:2303.06854): break the link between a poisoned image and its
caption by matching each image, every K epochs, with the nearest caption in a pool of recent captions
instead of its own.

Every pass trains on one augmented view per pair (an image view and one EDA caption view), and each
batch's caption embeddings enter a FIFO pool P. In matching epochs (1-based epoch e with e mod K = 0) the
caption of image u_i is NN_P(u_i) = argmax_{p in P} cos(u_i, p), taken from the pool before this batch
enters it and detached, in CLIP's symmetric loss
    L = (CE(s U NN(U)^T, I) + CE(s NN(U) U^T, I)) / 2,
so only the image tower and the temperature learn in those epochs; other epochs use the own (augmented)
caption: L = (CE(s U V^T, I) + CE(s V U^T, I)) / 2.

Reference defaults (BigML-CS-UCLA/RoCLIP ``src/parser.py``): 24 epochs, batch 512, lr 5e-5, K = 2
(``break_epoch``), a pool of 21845 captions (2.2% of its 1M pairs, 43 batches), augmentation on
(``cross_aug``).

Scaled to our data (6000 pairs, batch 128):
- matching starts after a warm-up of own-caption epochs (``warmup`` 0.5 of the epochs: at 16 epochs the
  1-based epochs 10, 12, 14, 16 match). The reference's first matching epoch follows one epoch of about
  2000 steps on 1M pairs; ours would follow 47 steps, and a model that weakly aligned retrieves wrong
  captions and trains its image tower towards them: each matching epoch then undoes what the epoch before
  aligned (own-caption loss in epoch 3: 3.73-3.80 with matching in epoch 2, pools of 512 to 6000; 2.88 without);
- K = 2 as the reference;
- a pool of 512 captions (4 batches, 8.5% of the pairs, about 64 per class): the reference's share of the
  data would be 131 captions (16 per class), its count in batches 5500 (the whole set); 512 lies between;
- the pool is filled in every epoch, not only in matching ones as in the reference (inferred from its
  code), so that the first matching epoch never matches to random vectors and the pool never holds
  captions embedded by a model older than the previous epoch;
- the text features of a matching epoch are computed without gradient (the reference keeps a zero-weight
  text term only to keep its distributed graph alive);
- the lr is the recipe's, as for plain CLIP and SafeCLIP, so the objective is what differs.
Measured at the grid's budget (6000 pairs x 16 epochs, seed 0, BadNets at rate 0.03: success 0.93 undefended,
top-1 0.94 on clean pairs): with the warm-up, **top-1 0.887, BadNets success 0.49** (pool 4096: 0.887, 0.49);
matching from epoch 2 as the reference (no warm-up), on clean pairs: top-1 0.31 (pool 512), 0.38 (4096), 0.42
(6000), 0.23 with the temperature frozen in matching epochs, and 0.25 on the BadNets pairs at success 0.20;
without any matching epoch 0.90. Early in training only 30-45% of a batch's images have distinct nearest
captions, after the warm-up 75-90%.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from benchmark.training.contrastive import Batch, ContrastiveRun, EpochPlan, MemoryBank, Objective, Pass, clip_loss


@dataclass
class RoCLIP(Objective):
    """RoCLIP's objective (module docstring): own captions, and every ``every``-th epoch nearest captions
    from a pool of ``pool_size``."""

    name = "roclip"
    every: int = 2
    pool_size: int = 512
    warmup: float = 0.5  # the share of the epochs before the first matching one (own captions); the reference: 0
    pool: MemoryBank = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.every < 1 or not 0 <= self.warmup < 1:
            raise ValueError(f"RoCLIP matches every K >= 1 epochs after a warm-up share in [0, 1), got K = "
                             f"{self.every}, warm-up {self.warmup}")
        self.start(None)

    def start(self, run: ContrastiveRun | None) -> None:
        self.pool = MemoryBank(self.pool_size)

    def matching(self, epoch: int, epochs: int) -> bool:
        """Whether 0-based ``epoch`` of ``epochs`` matches images to pooled captions: past the warm-up, the
        reference's 1-based e mod K == 0."""
        return epoch >= self.warmup * epochs and (epoch + 1) % self.every == 0

    def plan(self, run: ContrastiveRun, epoch: int) -> EpochPlan:
        matching = self.matching(epoch, run.recipe.epochs)
        loss = self.matching_loss if matching else self.own_caption_loss
        return EpochPlan([Pass("matching" if matching else "clip", np.arange(len(run.data)), loss, run.recipe.lr)],
                         {"matching": matching})

    def own_caption_loss(self, run: ContrastiveRun, batch: Batch) -> Tensor:
        image, = run.encode_images(run.augmented(batch.images))
        text, = run.encode_texts(batch.caption_views[0])
        self.pool.push(text)
        return clip_loss(image, text, run.logit_scale)

    def matching_loss(self, run: ContrastiveRun, batch: Batch) -> Tensor:
        image, = run.encode_images(run.augmented(batch.images))
        with torch.no_grad():
            text, = run.encode_texts(batch.caption_views[0])
        nearest = self.pool.nearest(image, fallback=text)
        self.pool.push(text)
        return clip_loss(image, nearest, run.logit_scale)
