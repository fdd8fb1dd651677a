"""CleanCLIP (Bansal, Singhi, Yang, Yin, Grover, Chang, "CleanCLIP: Mitigating Data Poisoning Attacks in
Multimodal Contrastive Learning", ICCV 2023, arXiv:2303.03323): fine-tune a (possibly poisoned) CLIP on
clean pairs with CLIP's loss plus a unimodal self-supervised loss that relearns each modality on its own,
weakening the spurious trigger-caption link a backdoor relies on:

    L = lambda1 L_CLIP + lambda2 L_uni,
    L_CLIP = (CE(s U0 V0^T, I) + CE(s V0 U0^T, I)) / 2,
    L_uni  = (CE(s U0 U1^T, I) + CE(s V0 V1^T, I)) / 2,

with U0, V0 the original image and caption, U1 an AutoAugment view of the image and V1 an EDA view of the
caption (both L2-normalised), and s the shared learned temperature.

Reference (nishadsinghi/CleanCLIP ``src/train.py``, ``parser.py``, README): lambda1 = lambda2 = 1;
AutoAugment with torchvision's ImageNet policy; fine-tuning for 10 epochs, batch 64, lr 1e-5 (1/50 of the
5e-4 its poisoned models were pre-trained at), 50 warm-up steps, on 100K clean pairs (paper, from memory;
unverified), i.e. about 15600 steps.

Scaled to our data (``FINETUNING``, ``CLEAN_PAIRS``):
- AutoAugment with torchvision's CIFAR-10 policy, the one learned for 32x32 images;
- 1000 clean pairs (1/6 of the 6000; the paper's 100K is 3% of CC3M's 3M, which here would be 200 pairs,
  3 batches of 64), drawn by seed from the clean train pairs (:func:`clean_subset`);
- 10 epochs at batch 64 as the reference: 160 steps;
- lr 3e-4, 1/10 of clip-tiny's pre-training lr (3e-3): the reference's 1/50 would be 6e-5, and over our
  160 steps (the reference: 15600) it would move the weights by lr x steps = 0.01 where the reference's
  move by 0.16; 3e-4 moves them by 0.05;
- warm-up over 5% of the steps (8; the reference's 50 of 15600 are 0.3%).
The fine-tuned model comes in as the training's model: ``finetunes`` tells the caller to pass the
pre-trained (poisoned) model and the clean pairs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms import AutoAugment, AutoAugmentPolicy

from attacks.poisoning import Pairs
from benchmark.training.contrastive import (Batch, ContrastiveRecipe, ContrastiveRun, EpochPlan, Objective, Pass,
                                            clip_loss, info_nce)

FINETUNING = ContrastiveRecipe(epochs=10, batch_size=64, lr=3e-4, warmup=0.05)
CLEAN_PAIRS = 1000
_AUTOAUGMENT = AutoAugment(AutoAugmentPolicy.CIFAR10)


def autoaugmented(images: Tensor) -> Tensor:
    """An AutoAugment view (CIFAR-10 policy) of each image in [0,1], its sub-policy drawn per image from
    torch's global generator (seeded by the training loop)."""
    u8 = (images.detach().cpu() * 255).round().to(torch.uint8)
    return (torch.stack([_AUTOAUGMENT(image) for image in u8]).to(images) / 255)


def clean_subset(clean: Pairs, n: int = CLEAN_PAIRS, seed: int = 0) -> Pairs:
    """``n`` pairs drawn without replacement, by ``seed``, from clean (un-poisoned) pairs: the fine-tuning set."""
    if not 0 < n <= len(clean):
        raise ValueError(f"CleanCLIP's clean set must hold 1 to {len(clean)} pairs, got {n}")
    rows = np.sort(np.random.default_rng([seed, 2]).choice(len(clean), n, replace=False))
    labels = None if clean.labels is None else clean.labels[rows]
    return Pairs(clean.images[rows], [clean.captions[i] for i in rows], labels, clean.classnames)


@dataclass
class CleanCLIP(Objective):
    """CleanCLIP's fine-tuning loss (module docstring) with weights ``clip_weight`` (lambda1) and
    ``unimodal_weight`` (lambda2), one pass over the clean pairs per epoch."""

    name = "cleanclip"
    finetunes = True
    clip_weight: float = 1.0
    unimodal_weight: float = 1.0

    def plan(self, run: ContrastiveRun, epoch: int) -> EpochPlan:
        return EpochPlan([Pass("cleanclip", np.arange(len(run.data)), self.loss, run.recipe.lr)])

    def terms(self, run: ContrastiveRun, batch: Batch) -> tuple[Tensor, Tensor]:
        """(L_CLIP, L_uni) on ``batch``."""
        image0, image1 = run.encode_images(batch.images, autoaugmented(batch.images))
        text0, text1 = run.encode_texts(batch.tokens, batch.caption_views[0])
        scale = run.logit_scale
        return clip_loss(image0, text0, scale), (info_nce(image0, image1, scale) + info_nce(text0, text1, scale)) / 2

    def loss(self, run: ContrastiveRun, batch: Batch) -> Tensor:
        multimodal, unimodal = self.terms(run, batch)
        return self.clip_weight * multimodal + self.unimodal_weight * unimodal
