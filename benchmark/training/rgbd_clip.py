"""Train RGB-D CLIP (models/rgbd_clip.py) on the synthetic train split (our own recipe, CPU minutes).

Loss L = ITC + itm_weight * ITM.

- ITC, CLIP's symmetric contrastive loss (Radford et al. 2021): with S = exp(s) * E_rgb E_depth^T over a
  batch, L_itc = (CE(S, I) + CE(S^T, I)) / 2.
- ITM with ALBEF's hard negatives (Li et al. 2021, arXiv:2107.07651): each RGB gets a negative depth drawn
  from softmax(S_i,:) with the diagonal masked out, each depth a negative RGB from softmax(S_:,j); then
  cross-entropy of the ITM head on the N positive pairs (label 1) and the 2N negative pairs (label 0).

Augmentation: the same random shift (replicate padding, then a crop) and horizontal flip for the RGB
image and depth map of a pair. AdamW with a one-cycle cosine schedule.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from benchmark.data import SyntheticRGBD, make_batch
from benchmark.data.synthetic import GENERATOR_VERSION
from benchmark.results import save_trained
from benchmark.training.recipe import HashedRecipe
from models.rgbd_clip import RGBDCLIP

SHIFT = 6  # largest augmentation shift in pixels at the model's input size


@dataclass(frozen=True)
class RGBDCLIPRecipe(HashedRecipe):
    epochs: int = 10
    batch_size: int = 64
    lr: float = 5e-4  # at 2e-3 the embeddings collapse (ITC stays at log N)
    weight_decay: float = 0.05
    seed: int = 0
    train_images: int = 2560
    itm_weight: float = 1.0
    data_version: int = GENERATOR_VERSION  # a new synthetic generator invalidates cached checkpoints


RECIPES = {"rgbd-clip": RGBDCLIPRecipe()}


def load_split(split: str, size: int, n: int | None = None, chunk: int = 256) -> tuple[Tensor, Tensor]:
    """All RGB (T,3,S,S) and depth (T,1,S,S) images of a synthetic split in [0,1], at size S."""
    ds = SyntheticRGBD(split, n=n)
    batches = [make_batch([ds[i] for i in range(k, min(k + chunk, len(ds)))], size) for k in range(0, len(ds), chunk)]
    return torch.cat([b.rgb for b in batches]), torch.cat([b.depth for b in batches])


def augment(rgb: Tensor, depth: Tensor, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """The same random shift by up to SHIFT pixels and horizontal flip (p = 1/2) for both images of a pair."""
    size = rgb.shape[-1]
    padded = F.pad(torch.cat([rgb, depth], 1), [SHIFT] * 4, mode="replicate")
    dy, dx = rng.integers(0, 2 * SHIFT + 1, (2, len(rgb)))
    flip = rng.random(len(rgb)) < 0.5
    pairs = [padded[i, :, y:y + size, x:x + size] for i, (y, x) in enumerate(zip(dy, dx))]
    both = torch.stack([p.flip(-1) if f else p for p, f in zip(pairs, flip)])
    return both[:, :3], both[:, 3:]


def hard_negatives(similarity: Tensor) -> Tensor:
    """For each row i, a column j != i drawn with probability softmax(similarity_i,:) (diagonal masked)."""
    masked = similarity.detach().clone().fill_diagonal_(float("-inf"))
    return torch.multinomial(masked.softmax(1), 1)[:, 0]


def rgbd_clip_loss(model: RGBDCLIP, rgb: Tensor, depth: Tensor, itm_weight: float) -> tuple[Tensor, Tensor, Tensor]:
    """(total, ITC, ITM) losses of one batch of matched pairs."""
    rgb_map, depth_map = model.rgb_features(rgb), model.depth_features(depth)
    s = model.scale() * model.embed_rgb(rgb_map) @ model.embed_depth(depth_map).T
    labels = torch.arange(len(s), device=s.device)
    itc = (F.cross_entropy(s, labels) + F.cross_entropy(s.T, labels)) / 2
    neg_depth, neg_rgb = hard_negatives(s), hard_negatives(s.T)
    logits = model.matching(torch.cat([rgb_map, rgb_map, rgb_map[neg_rgb]]),
                            torch.cat([depth_map, depth_map[neg_depth], depth_map]))
    matched = torch.cat([torch.ones_like(labels), torch.zeros_like(labels), torch.zeros_like(labels)])
    itm = F.cross_entropy(logits, matched)
    return itc + itm_weight * itm, itc, itm


def recall_at(similarity: Tensor, ks: tuple[int, ...]) -> dict[int, float]:
    """R@k of retrieving column i for query row i: the fraction of rows whose match ranks in the top k."""
    rank = (similarity > similarity.diagonal()[:, None]).sum(1)
    return {k: (rank < k).double().mean().item() for k in ks}


@torch.no_grad()
def evaluate_rgbd_clip(model: RGBDCLIP, split: str = "test", batch_size: int = 64) -> dict[str, float]:
    """R@1/5/10 of rgb->depth and depth->rgb retrieval over the whole split, and ITM accuracy.

    itm_acc = (accuracy on the matched pairs + accuracy on each RGB's and each depth's hardest ITC
    negative) / 2, so a head that answers one class everywhere scores 0.5.
    """
    model.eval()
    rgb, depth = load_split(split, model.input_size)
    device = model.logit_scale.device
    rgb_maps = torch.cat([model.rgb_features(x.to(device)) for x in rgb.split(batch_size)])
    depth_maps = torch.cat([model.depth_features(x.to(device)) for x in depth.split(batch_size)])
    s = model.embed_rgb(rgb_maps) @ model.embed_depth(depth_maps).T
    scores = {}
    for name, sim in (("rgb2depth", s), ("depth2rgb", s.T)):
        scores |= {f"{name}_R@{k}": r for k, r in recall_at(sim, (1, 5, 10)).items()}
    hardest = s.clone().fill_diagonal_(float("-inf"))
    neg_depth, neg_rgb = hardest.argmax(1), hardest.argmax(0)
    positive = model.matching(rgb_maps, depth_maps).argmax(1) == 1
    negative = torch.cat([model.matching(rgb_maps, depth_maps[neg_depth]).argmax(1) == 0,
                          model.matching(rgb_maps[neg_rgb], depth_maps).argmax(1) == 0])
    scores["itm_acc"] = (positive.double().mean().item() + negative.double().mean().item()) / 2
    return scores


def train_rgbd_clip(name: str, out: Path, recipe: RGBDCLIPRecipe | None = None,
                    device: str = "cpu") -> dict[str, float]:
    """Train RGB-D CLIP from scratch, save its state_dict to ``out`` and return its clean test scores."""
    recipe = recipe or RECIPES[name]
    start = time.time()
    torch.manual_seed(recipe.seed)
    model = RGBDCLIP().to(device)
    rgb, depth = load_split("train", model.input_size, recipe.train_images)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]  # norms, biases, the temperature
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr)
    per_epoch = len(rgb) // recipe.batch_size
    steps = recipe.epochs * per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=steps, pct_start=0.1)
    rng = np.random.default_rng(recipe.seed)
    model.train()
    with tqdm(total=steps, desc=f"train {name}", unit="step") as bar:
        for _ in range(recipe.epochs):
            order = torch.from_numpy(rng.permutation(len(rgb)))
            for idx in order[:per_epoch * recipe.batch_size].split(recipe.batch_size):
                r, d = augment(rgb[idx], depth[idx], rng)
                loss, itc, itm = rgbd_clip_loss(model, r.to(device), d.to(device), recipe.itm_weight)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}", itc=f"{itc.item():.3f}", itm=f"{itm.item():.3f}")
    model.cpu()
    scores = evaluate_rgbd_clip(model)
    save_trained(out, model.state_dict(),
                 {"model": name, "recipe": asdict(recipe), "seconds": round(time.time() - start, 1), "test": scores})
    return scores
