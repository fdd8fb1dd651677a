"""One contrastive training loop for open_clip models with pluggable objectives: plain CLIP and the
training-time defenses against data poisoning (``defenses/safeclip.py``, ``roclip.py``, ``cleanclip.py``;
registry ``defenses/training.py``).

An :class:`Objective` plans each epoch (:meth:`Objective.plan`): which passes run, each over which
indices of the training pairs, with which loss and peak learning rate; between epochs it may look at the
model (SafeCLIP's similarity split). The loop does the rest the same way for all: a seeded shuffle of
each pass's indices into ceil(n / batch) batches of near-equal size (no pair dropped, no tiny last batch),
AdamW as ``training/clip.py`` (decay 0.1 on weights, none on gains, biases and the temperature), linear
warmup then cosine decay, and exp(s) of the learned temperature s clamped to [1, 100] (s in [0, ln 100])
after every step, as CLIP and the three references do. The schedule's clock is the fraction of the
training done (epochs plus the share of this epoch's pairs seen), so SafeCLIP's two data-dependent
passes per epoch follow the one curve a single pass would.

What an objective's losses draw on (:class:`ContrastiveRun`, :class:`Batch`):

- image views for 32x32 images, seeded by the recipe (scaled from the references' 224 px SimCLR views:
  RandomHorizontalFlip, RandomResizedCrop(224, scale (0.08, 1)), ColorJitter(0.5, 0.5, 0.5, 0.1) with
  p 0.8, RandomGrayscale(0.2), GaussianBlur(21)): a random resized crop of scale (0.8, 1) and aspect
  ratio (0.9, 1/0.9), the widest range that keeps every caption's size and position word true (a small
  shape of radius 0.22 grows to at most 0.246 < 0.27, the smallest large one; a centre at 0.38, the left
  edge of "centre" being 0.44, moves to at most 0.425), then with p 0.8 brightness, contrast and
  saturation factors in [0.8, 1.2] (milder than 0.5 since the captions name the background's grey
  level: x1.5 turns a grey background light), in that order. No hue jitter (captions name six colours,
  orange 30 degrees from red; the reference's 0.1 is 36 degrees), no grayscale (it erases the named
  colour), no flips (captions say left and right), no blur (the reference's sigma up to 2 px at 224 px
  is under 0.3 px at 32 px). ``shifted`` is ``training/clip.py``'s augmentation, for plain CLIP;
- two EDA caption views per pair (Wei & Zou 2019, "EDA: Easy Data Augmentation Techniques"), drawn once
  when the data are built, as the references do: the caption cleaned as EDA cleans it (lower case,
  letters and spaces only), then either n = max(1, floor(0.1 len)) random swaps or the random deletion
  of each word with p 0.1 (at least one word kept), each with p 1/2. The references draw one of four
  operations; synonym replacement and random insertion need WordNet, which we do not download;
- :class:`MemoryBank`: NNCLR's FIFO support set (nearest neighbour by cosine, detached);
- ``info_nce`` and open_clip's ``ClipLoss``.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from torch import Tensor, nn
from tqdm import tqdm

from attacks.poisoning import Pairs, PoisonedPairs
from benchmark.training.clip import MAX_SHIFT
from benchmark.training.recipe import HashedRecipe
from models.base import normalize
from models.clip import CLIPZeroShot

CROP_SCALE = (0.8, 1.0)
CROP_RATIO = (0.9, 1 / 0.9)
JITTER = 0.2  # brightness, contrast and saturation factors in [1 - JITTER, 1 + JITTER]
JITTER_P = 0.8
EDA_ALPHA = 0.1  # EDA's alpha_rs and p_rd: the share of words swapped, the chance a word is deleted
SIMILARITY_BATCH = 512


@dataclass(frozen=True)
class ContrastiveRecipe(HashedRecipe):
    """What the loop needs besides the objective; the defaults are clip-tiny's (``training/clip.py``)."""

    epochs: int = 16
    batch_size: int = 128
    lr: float = 3e-3  # peak learning rate; an objective's passes scale it (SafeCLIP's low-lr epoch)
    weight_decay: float = 0.1
    warmup: float = 0.1  # fraction of the training with a linear learning-rate warmup
    seed: int = 0


def _resample(x: Tensor, extent: Tensor, centre: Tensor) -> Tensor:
    """The window of half-sizes ``extent`` (N,2) at ``centre`` (N,2), both in [-1, 1] image coordinates
    (x then y), resampled bilinearly to x's size; outside the image the border repeats."""
    theta = torch.zeros(len(x), 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0], theta[:, 1, 1] = extent[:, 0], extent[:, 1]
    theta[:, :, 2] = centre
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def shifted(x: Tensor, generator: torch.Generator) -> Tensor:
    """``training/clip.py``'s augmentation: each image translated by a whole number of pixels, up to
    MAX_SHIFT, repeating the border (pixel centres land on pixel centres: no interpolation)."""
    offset = torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (len(x), 2), generator=generator)
    return _resample(x, torch.ones(len(x), 2).to(x), (2 * offset / x.shape[-1]).to(x))


def _grey(x: Tensor) -> Tensor:
    """ITU-R 601 luma, as torchvision's rgb_to_grayscale: (N,1,H,W)."""
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def augmented(x: Tensor, generator: torch.Generator) -> Tensor:
    """One SimCLR-style view per image (the module docstring says how it is scaled to 32 px): a random
    resized crop, then with p JITTER_P brightness, contrast and saturation jitter; in [0,1]."""
    n = len(x)
    area = torch.empty(n).uniform_(*CROP_SCALE, generator=generator)
    ratio = torch.empty(n).uniform_(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]), generator=generator).exp()
    extent = torch.stack([(area * ratio).sqrt(), (area / ratio).sqrt()], 1).clamp(max=1)
    centre = (2 * torch.rand(n, 2, generator=generator) - 1) * (1 - extent)
    x = _resample(x, extent.to(x), centre.to(x))
    factors = 1 + JITTER * (2 * torch.rand(n, 3, generator=generator) - 1)
    factors[torch.rand(n, generator=generator) >= JITTER_P] = 1
    brightness, contrast, saturation = factors.to(x).T.reshape(3, n, 1, 1, 1)
    x = (x * brightness).clamp(0, 1)
    mean = _grey(x).mean((1, 2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean).clamp(0, 1)
    grey = _grey(x)
    return ((x - grey) * saturation + grey).clamp(0, 1)


def eda(caption: str, rng: np.random.Generator) -> str:
    """One EDA view of ``caption`` without WordNet: cleaned, then random swap or random deletion."""
    words = re.sub(r"[^a-z ]", " ", caption.lower()).split()
    if len(words) < 2:
        return " ".join(words)
    if rng.random() < 0.5:
        for _ in range(max(1, int(EDA_ALPHA * len(words)))):
            i, j = rng.choice(len(words), 2, replace=False)
            words[i], words[j] = words[j], words[i]
        return " ".join(words)
    kept = [w for w in words if rng.random() >= EDA_ALPHA]
    return " ".join(kept or [words[rng.integers(len(words))]])


class MemoryBank:
    """NNCLR's support set (Dwibedi et al., ICCV 2021, "With a Little Help from My Friends"), as the
    references use it through lightly's ``NNMemoryBankModule``: a FIFO ring of the last ``size``
    embeddings; NN(q) = the entry of highest cosine similarity to q, detached (no gradient through it).
    Lightly starts from random unit vectors, so its first size/batch steps match random targets; ours
    searches only the entries pushed so far and answers ``fallback`` while there are none."""

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"memory bank size must be at least 1, got {size}")
        self.size = size
        self.entries: Tensor | None = None
        self.filled = 0
        self.pointer = 0

    def __len__(self) -> int:
        return self.filled

    @torch.no_grad()
    def nearest(self, queries: Tensor, fallback: Tensor) -> Tensor:
        """(B,D): each query's nearest entry; ``fallback`` (detached) while the bank is empty."""
        if self.entries is None:
            return fallback.detach().clone()
        bank = self.entries[:self.filled]
        similarity = F.normalize(queries, dim=-1) @ F.normalize(bank, dim=-1).T
        return bank[similarity.argmax(1)].clone()

    @torch.no_grad()
    def push(self, embeddings: Tensor) -> None:
        """Enqueue ``embeddings`` (detached), overwriting the oldest entries once full."""
        new = embeddings.detach()[-self.size:]
        if self.entries is None:
            self.entries = new.new_zeros(self.size, new.shape[1])
        rows = (self.pointer + torch.arange(len(new), device=new.device)) % self.size
        self.entries[rows] = new
        self.pointer = (self.pointer + len(new)) % self.size
        self.filled = min(self.size, self.filled + len(new))

    def __call__(self, queries: Tensor, fallback: Tensor) -> Tensor:
        """Lightly's ``bank(queries, update=True)``: the nearest neighbours in the bank as it was before
        this call, then the queries enqueued."""
        nearest = self.nearest(queries, fallback)
        self.push(queries)
        return nearest


def info_nce(queries: Tensor, keys: Tensor, scale: Tensor) -> Tensor:
    """One-directional InfoNCE (van den Oord et al. 2018), the references' unimodal terms:
    CE(s Q K^T, I), query i's positive key being key i and the other keys in the batch its negatives."""
    return F.cross_entropy(scale * queries @ keys.T, torch.arange(len(queries), device=queries.device))


def clip_loss(image: Tensor, text: Tensor, scale: Tensor) -> Tensor:
    """CLIP's symmetric loss (Radford et al. 2021) by open_clip's ``ClipLoss``:
    (CE(s U V^T, I) + CE(s V U^T, I)) / 2 for L2-normalised image and text features U, V."""
    return ClipLoss()(image, text, scale)


@dataclass(frozen=True)
class ContrastiveData:
    """The training pairs as the loop uses them: images (N,3,H,W) in [0,1] on the CPU, the tokens of each
    own caption and of its two EDA views (drawn once, seeded), and which pairs are poisoned (all False for
    clean :class:`Pairs`; only for the history, never for training)."""

    images: Tensor
    tokens: Tensor
    caption_views: tuple[Tensor, Tensor]
    is_poisoned: Tensor

    @classmethod
    def build(cls, pairs: Pairs, tokenizer: Callable[[Sequence[str]], Tensor], seed: int) -> ContrastiveData:
        rng = np.random.default_rng([seed, 1])
        views = [[eda(c, rng) for c in pairs.captions] for _ in range(2)]
        poisoned = pairs.is_poisoned if isinstance(pairs, PoisonedPairs) else torch.zeros(len(pairs), dtype=torch.bool)
        return cls(pairs.images, tokenizer(list(pairs.captions)), (tokenizer(views[0]), tokenizer(views[1])), poisoned)

    def __len__(self) -> int:
        return len(self.images)


@dataclass(frozen=True)
class Batch:
    """One batch on the training device: ``indices`` into the training pairs, ``images`` in [0,1]
    (un-augmented), the ``tokens`` of their own captions and of their two EDA ``caption_views``."""

    indices: Tensor
    images: Tensor
    tokens: Tensor
    caption_views: tuple[Tensor, Tensor]


@dataclass
class ContrastiveRun:
    """One training in progress: the model, its data, recipe and device, and the seeded streams that
    shuffle (``rng``) and augment (``generator``)."""

    wrapper: CLIPZeroShot
    data: ContrastiveData
    recipe: ContrastiveRecipe
    device: str | torch.device
    generator: torch.Generator
    rng: np.random.Generator

    @classmethod
    def build(cls, wrapper: CLIPZeroShot, pairs: Pairs, recipe: ContrastiveRecipe,
              device: str | torch.device = "cpu") -> ContrastiveRun:
        """A run of ``wrapper`` (moved to ``device``) on ``pairs``, its streams seeded by the recipe."""
        data = ContrastiveData.build(pairs, wrapper.tokenizer, recipe.seed)
        return cls(wrapper.to(device), data, recipe, device, torch.Generator().manual_seed(recipe.seed),
                   np.random.default_rng([recipe.seed, 0]))

    @property
    def model(self) -> nn.Module:
        """The open_clip model trained."""
        return self.wrapper.model

    @property
    def logit_scale(self) -> Tensor:
        """exp(s), the learned temperature's multiplier."""
        return self.model.logit_scale.exp()

    def batch(self, indices: np.ndarray) -> Batch:
        """The pairs at ``indices``, on the run's device."""
        rows = torch.from_numpy(np.asarray(indices, dtype=np.int64))
        return Batch(rows, self.data.images[rows].to(self.device), self.data.tokens[rows].to(self.device),
                     tuple(view[rows].to(self.device) for view in self.data.caption_views))

    def augmented(self, images: Tensor) -> Tensor:
        """A SimCLR-style view of each image, from the run's augmentation stream."""
        return augmented(images, self.generator)

    def shifted(self, images: Tensor) -> Tensor:
        """Each image shifted as ``training/clip.py`` does, from the run's augmentation stream."""
        return shifted(images, self.generator)

    def encode_images(self, *views: Tensor) -> list[Tensor]:
        """L2-normalised image features of each view (in [0,1]), from one forward pass over all of them (as
        the references concatenate their views: batch-norm statistics over both)."""
        x = normalize(torch.cat(views), self.wrapper.mean, self.wrapper.std)
        return list(self.model.encode_image(x, normalize=True).split([len(v) for v in views]))

    def encode_texts(self, *tokens: Tensor) -> list[Tensor]:
        """L2-normalised text features of each token batch, from one forward pass."""
        return list(self.model.encode_text(torch.cat(tokens), normalize=True).split([len(t) for t in tokens]))

    @torch.no_grad()
    def pair_similarity(self) -> Tensor:
        """(N,) cosine similarity of every training pair's image and own caption under the current model,
        in eval mode, un-augmented (SafeCLIP's reference scores an augmented image with the first EDA
        caption; the pair as it is measures the pair, not the augmentation); the model is then back in
        train mode."""
        self.model.eval()
        similarity = []
        for rows in torch.arange(len(self.data)).split(SIMILARITY_BATCH):
            batch = self.batch(rows.numpy())
            image, = self.encode_images(batch.images)
            text, = self.encode_texts(batch.tokens)
            similarity.append((image * text).sum(1).cpu())
        self.model.train()
        return torch.cat(similarity)


Loss = Callable[[ContrastiveRun, Batch], Tensor]


@dataclass(frozen=True)
class Pass:
    """One pass of an epoch: every pair of ``indices`` once, in seeded random batches, with ``loss``, at
    ``lr`` times the schedule (``scheduled``) or at ``lr`` throughout (SafeCLIP's low-lr CLIP epoch)."""

    name: str
    indices: np.ndarray
    loss: Loss
    lr: float
    scheduled: bool = True


@dataclass(frozen=True)
class EpochPlan:
    """An epoch's passes, run in order, and what the objective records of it in the history."""

    passes: list[Pass]
    record: dict[str, Any] = field(default_factory=dict)


class Objective:
    """A contrastive training objective: ``plan(run, epoch)`` for each epoch (0-based), after ``start(run)``
    once per training. ``finetunes``: it fine-tunes a pre-trained (e.g. poisoned) model on clean pairs
    instead of training on the pairs it defends against (CleanCLIP)."""

    name: ClassVar[str]
    finetunes: ClassVar[bool] = False
    epoch_factor: float = 1.0  # the grid trains it for round(factor x its recipe's epochs) (SafeCLIP: 1.5)

    def start(self, run: ContrastiveRun) -> None:
        """Reset what the objective keeps across epochs (memory banks, the safe-set ratio)."""

    def plan(self, run: ContrastiveRun, epoch: int) -> EpochPlan:
        raise NotImplementedError


@dataclass
class CLIPObjective(Objective):
    """Plain CLIP (Radford et al. 2021) as ``training/clip.py`` trains clip-tiny: every epoch one pass over
    all pairs with CLIP's symmetric loss on (shifted image, own caption)."""

    name = "none"

    def plan(self, run: ContrastiveRun, epoch: int) -> EpochPlan:
        return EpochPlan([Pass("clip", np.arange(len(run.data)), self.loss, run.recipe.lr)])

    @staticmethod
    def loss(run: ContrastiveRun, batch: Batch) -> Tensor:
        image, = run.encode_images(run.shifted(batch.images))
        text, = run.encode_texts(batch.tokens)
        return clip_loss(image, text, run.logit_scale)


def warmup_cosine(progress: float, warmup: float) -> float:
    """Learning-rate factor at ``progress`` in [0, 1] of the training: linear warmup over the first
    ``warmup``, then cosine decay to 0."""
    if progress < warmup:
        return progress / warmup
    return 0.5 * (1 + math.cos(math.pi * (progress - warmup) / (1 - warmup)))


def adamw(model: nn.Module, recipe: ContrastiveRecipe) -> torch.optim.AdamW:
    """AdamW as ``training/clip.py`` and the references: weight decay on weights (ndim >= 2), none on gains,
    biases, batch-norm parameters, the class token and the temperature."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    fused = next(model.parameters()).device.type in ("cpu", "cuda")  # one kernel per step: the unfused
    # update of clip-tiny's 6.3M-entry token embedding took ~10x the fused one on our 2-core CPU
    return torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr, fused=fused)


def _batches(indices: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``indices`` shuffled into ceil(n / batch_size) batches of near-equal size."""
    if not len(indices):
        return []
    return np.array_split(rng.permutation(indices), math.ceil(len(indices) / batch_size))


def train_contrastive(wrapper: CLIPZeroShot, pairs: Pairs, objective: Objective, recipe: ContrastiveRecipe,
                      device: str | torch.device = "cpu", desc: str | None = None) -> list[dict[str, Any]]:
    """Train ``wrapper.model`` in place with ``objective`` on ``pairs`` (``PoisonedPairs`` for the
    history's poison counts) and return the history: per epoch, its number (1-based), steps, seconds
    (``plan_seconds`` of them spent planning, e.g. SafeCLIP's similarity pass and GMM), the mean loss of
    each pass (``loss_<name>``) and the objective's record. Seeds torch and numpy from the recipe; seed
    them before building the model for a reproducible initialisation. The model is left in eval mode; its
    class prompts (``wrapper.set_classes``) are stale until encoded again."""
    torch.manual_seed(recipe.seed)
    np.random.seed(recipe.seed)
    run = ContrastiveRun.build(wrapper, pairs, recipe, device)
    model = wrapper.model
    opt = adamw(model, recipe)
    objective.start(run)
    model.train()
    history = []
    per_epoch = math.ceil(len(pairs) / recipe.batch_size)
    with tqdm(total=recipe.epochs * per_epoch, desc=desc or f"train {objective.name}", unit="step") as bar:
        for epoch in range(recipe.epochs):
            start = time.time()
            plan = objective.plan(run, epoch)
            plan_seconds = time.time() - start
            steps = [(p, rows) for p in plan.passes for rows in _batches(p.indices, recipe.batch_size, run.rng)]
            bar.total += len(steps) - per_epoch
            bar.refresh()
            total, seen = sum(len(rows) for _, rows in steps), 0
            losses: dict[str, list[float]] = {}
            for p, rows in steps:
                factor = warmup_cosine((epoch + (seen + len(rows) / 2) / total) / recipe.epochs, recipe.warmup)
                for group in opt.param_groups:
                    group["lr"] = p.lr * factor if p.scheduled else p.lr
                loss = p.loss(run, run.batch(rows))
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    model.logit_scale.clamp_(0, math.log(100))
                seen += len(rows)
                losses.setdefault(p.name, []).append(loss.item())
                bar.update()
                bar.set_postfix(epoch=epoch + 1, **{p.name: f"{loss.item():.3f}"})
            history.append({"epoch": epoch + 1, "steps": len(steps), "seconds": round(time.time() - start, 2),
                            "plan_seconds": round(plan_seconds, 2),
                            **{f"loss_{name}": float(np.mean(v)) for name, v in losses.items()}, **plan.record})
    model.eval()
    return history
