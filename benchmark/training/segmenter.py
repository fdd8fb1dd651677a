"""Train the learned patch segmenter (``defenses/patch_segmenter.py``) on the synthetic train split.

Each step pastes a square patch into most images of a batch of clean training scenes (a fraction stay
clean, so the net learns to flag nothing), at a uniformly drawn position with a side drawn from
``areas`` (fractions of the image), on RGB, depth or both; the target is the pasted square. The patch's
content is, half of the time, from a bank of adversarial patches crafted on the ``surrogate`` model by our
own patch attacks (per-image patches with EOT and a universal patch, both on RGB-D), resized to the side;
otherwise random: uniform noise, a flat colour or smooth noise. Loss: pixel BCE plus soft Dice,

    L = BCE(z, m) + 1 - 2 sum(s m) / (sum(s) + sum(m)),   s = sigmoid(z),

with AdamW and a one-cycle schedule. Held out: per-image patches crafted on the surrogate on the test
split (the benchmark's own cells), scored by SmIoU/NmIoU (``benchmark/metrics/patch.py``), and the
fraction of clean pixels flagged.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from attacks import ATTACKS, ThreatModel
from benchmark.data import SyntheticRGBD, make_batch
from benchmark.data.synthetic import GENERATOR_VERSION
from benchmark.metrics.patch import mask_counts, mask_scores
from benchmark.results import save_trained
from benchmark.tasks import SaliencyTask
from benchmark.training.recipe import HashedRecipe, descend
from benchmark.training.saliency import RECIPES as SALIENCY_RECIPES
from defenses.patch_segmenter import PatchSegmenter, SegmenterNet

if TYPE_CHECKING:
    from benchmark.zoo import ResolvedModel

MODALITY_ODDS = {"rgb": 0.5, "depth": 0.2, "rgbd": 0.3}  # which channels a training patch covers


@dataclass(frozen=True)
class SegmenterRecipe(HashedRecipe):
    surrogate: str = "jldcf-tiny"  # the model the bank's adversarial patches are crafted on
    surrogate_recipe: str = ""
    size: int = 128  # training resolution (the tiny models'); the net is fully convolutional
    steps: int = 1000
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    clean_fraction: float = 0.2  # images left without a patch
    areas: tuple[float, float] = (0.01, 0.08)  # patch area range, fraction of the image
    adversarial_fraction: float = 0.5  # patches drawn from the adversarial bank, the rest random
    bank_images: int = 64  # train images the per-image adversarial patches are crafted on
    bank_area: float = 0.04
    attack_steps: int = 10
    train_images: int = 480
    test_images: int = 32
    seed: int = 0
    data_version: int = GENERATOR_VERSION


RECIPES = {"patch-segmenter": SegmenterRecipe(surrogate_recipe=SALIENCY_RECIPES["jldcf-tiny"].id)}


def _crops(images: Tensor, mask: Tensor) -> list[Tensor]:
    """The (C,s,s) content under each image's square ``mask`` (N,1,H,W)."""
    crops = []
    for x, m in zip(images, mask[:, 0]):
        rows, cols = m.nonzero(as_tuple=True)
        crops.append(x[:, rows.min():rows.max() + 1, cols.min():cols.max() + 1])
    return crops


def adversarial_bank(model: torch.nn.Module, recipe: SegmenterRecipe, split: str = "train", n: int | None = None,
                     placement: str = "random", universal: bool = True) -> tuple[list[Tensor], Tensor, Tensor, Tensor]:
    """Patches crafted on ``model`` on ``n`` images of a split (RGB-D, area ``bank_area``): per-image patches
    (our ``patch`` attack, 2 EOT draws) and, if ``universal``, one universal patch (``upatch``, fitted on
    the same images). Returns the (4,s,s) RGB-D patch contents, and the per-image patched (rgb, depth)
    with their true masks."""
    task, patch, upatch = SaliencyTask(), ATTACKS["patch"], ATTACKS["upatch"]
    threat = ThreatModel(norm="patch", eps=recipe.bank_area, modality="rgbd", steps=recipe.attack_steps)
    ds = SyntheticRGBD(split, n=n or recipe.bank_images)
    batches = [make_batch([ds[i] for i in range(s, min(s + 16, len(ds)))], model.input_size)
               for s in range(0, len(ds), 16)]
    contents, rgbs, depths, masks = [], [], [], []
    for b in batches:
        space = task.attack_space(b, threat)
        out = patch(task.attacked_model(model, space, b), space.initial(), b.target, threat, task, names=b.names,
                    placement=placement, eot_samples=2)
        rgb, depth = space.compose(out.u)
        contents += _crops(torch.cat([rgb, depth], 1), out.mask)
        rgbs.append(rgb), depths.append(depth), masks.append(out.mask)

    def views():
        for b in batches:
            space = task.attack_space(b, threat)
            yield task.attacked_model(model, space, b), space.initial(), b.target, b.names

    if universal:
        contents.append(upatch.fit(views, threat, task, epochs=3, placement=placement, eot_samples=2))
    return contents, torch.cat(rgbs), torch.cat(depths), torch.cat(masks)


def _random_content(rng: np.random.Generator, side: int) -> Tensor:
    """A (4,s,s) random patch: uniform noise, a flat colour, or smooth noise (bilinearly upsampled)."""
    kind = rng.integers(3)
    if kind == 0:
        return torch.from_numpy(rng.random((4, side, side), dtype=np.float32))
    if kind == 1:
        return torch.from_numpy(rng.random((4, 1, 1), dtype=np.float32)).expand(4, side, side)
    coarse = torch.from_numpy(rng.random((1, 4, 4, 4), dtype=np.float32))
    return F.interpolate(coarse, size=(side, side), mode="bilinear", align_corners=False)[0]


def paste_random(rgb: Tensor, depth: Tensor, bank: list[Tensor], recipe: SegmenterRecipe,
                 rng: np.random.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """The batch with a patch pasted into each image but ``clean_fraction`` of them, and the true masks."""
    rgb, depth, size = rgb.clone(), depth.clone(), rgb.shape[-1]
    mask = torch.zeros_like(depth)
    modalities, odds = list(MODALITY_ODDS), list(MODALITY_ODDS.values())
    for i in range(len(rgb)):
        if rng.random() < recipe.clean_fraction:
            continue
        side = int(round(np.sqrt(rng.uniform(*recipe.areas)) * size))
        if rng.random() < recipe.adversarial_fraction:
            content = bank[rng.integers(len(bank))]
            content = F.interpolate(content[None], size=(side, side), mode="bilinear", align_corners=False)[0]
        else:
            content = _random_content(rng, side)
        r, c = rng.integers(size - side + 1, size=2)
        modality = modalities[rng.choice(len(modalities), p=odds)]
        if modality != "depth":
            rgb[i, :, r:r + side, c:c + side] = content[:3]
        if modality != "rgb":
            depth[i, :, r:r + side, c:c + side] = content[3:]
        mask[i, :, r:r + side, c:c + side] = 1
    return rgb, depth, mask


def _loss(logits: Tensor, mask: Tensor) -> Tensor:
    s = logits.sigmoid()
    dice = 1 - 2 * (s * mask).sum() / (s.sum() + mask.sum()).clamp_min(1e-6)
    return F.binary_cross_entropy_with_logits(logits, mask) + dice


@torch.no_grad()
def evaluate(defense: PatchSegmenter, surrogate: torch.nn.Module, recipe: SegmenterRecipe) -> dict[str, float]:
    """Held-out scores: SmIoU/NmIoU/precision/recall on per-image RGB-D patches crafted on the surrogate on
    the test split (placed on the object, as the benchmark's cells place them), and the fraction of clean
    test pixels flagged."""
    with torch.enable_grad():
        _, rgb, depth, true = adversarial_bank(surrogate, recipe, "test", recipe.test_images, "object", universal=False)
    ds = SyntheticRGBD("test", n=recipe.test_images)
    clean = make_batch([ds[i] for i in range(len(ds))], recipe.size)
    flagged = defense(clean.rgb, clean.depth).mask
    scores = mask_scores(**{k.removeprefix("mask_"): v for k, v in
                            mask_counts(defense(rgb, depth).mask.numpy(), true.float().numpy()).items()})
    return {**scores, "clean_flagged": float(flagged.mean())}


def train_segmenter(name: str, out: Path, recipe: SegmenterRecipe | None = None, device: str = "cpu",
                    surrogate: ResolvedModel | None = None) -> dict[str, float]:
    """Craft the adversarial bank on ``surrogate`` (default: the recipe's, cached next to ``out``, trained
    first if missing), train the segmenter, save its state_dict to ``out``, return its held-out scores."""
    from benchmark.zoo import resolve_model  # the surrogate is resolved like any model

    recipe = recipe or RECIPES[name]
    start = time.time()
    surrogate = surrogate or resolve_model(recipe.surrogate, cache=out.parent)
    torch.manual_seed(recipe.seed)
    np.random.seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    bank, *_ = adversarial_bank(surrogate.model, recipe)
    bank = [c.detach().float() for c in bank]
    ds = SyntheticRGBD("train", n=recipe.train_images)
    data = make_batch([ds[i] for i in range(len(ds))], recipe.size)
    net = SegmenterNet().to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=recipe.steps, pct_start=0.15)
    net.train()
    with tqdm(total=recipe.steps, desc=f"train {name}", unit="step") as bar:
        for _ in range(recipe.steps):
            idx = torch.from_numpy(rng.choice(len(ds), recipe.batch_size, replace=False))
            rgb, depth, mask = paste_random(data.rgb[idx], data.depth[idx], bank, recipe, rng)
            if rng.random() < 0.5:
                rgb, depth, mask = rgb.flip(-1), depth.flip(-1), mask.flip(-1)
            logits = net(torch.cat([rgb, depth], 1).to(device))
            descend(opt, sched, _loss(logits, mask.to(device)), bar)
    defense = PatchSegmenter()
    defense.net.load_state_dict(net.cpu().state_dict())
    scores = evaluate(defense, surrogate.model, recipe)
    save_trained(out, defense.net.state_dict(), {"model": name, "recipe": asdict(recipe), "surrogate_checkpoint":
                                                 surrogate.checkpoint_sha256, "seconds": round(time.time() - start, 1),
                                                 "test": scores})
    return scores
