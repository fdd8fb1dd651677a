"""Train clip-tiny on the captioned shapes train split (our own recipe, CPU minutes).

Loss: CLIP's symmetric contrastive loss (Radford et al. 2021, arXiv:2103.00020), from open_clip's
``ClipLoss``: with L2-normalised image and text features u_i, v_j of a batch and the learned
temperature s, L = (CE(exp(s) U V^T, I) + CE(exp(s) V U^T, I)) / 2, i.e. each image must pick its own
caption and each caption its own image. AdamW (no decay on gains, biases and the temperature), linear
warmup then cosine decay, exp(s) clamped to 100 as in CLIP; random shifts of up to 2 pixels as
augmentation (no flips: captions say left and right).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from torch import Tensor
from tqdm import tqdm

from benchmark.data.labelled import CaptionRetrieval
from benchmark.data.shapes import CLASSES, GENERATOR_VERSION, CaptionedShapes
from benchmark.results import save_trained
from benchmark.tasks.classification import rank_of_label
from benchmark.training.recipe import HashedRecipe, descend, round_to_half
from models.base import normalize
from models.clip import CLIPZeroShot, clip_tiny

if TYPE_CHECKING:
    from benchmark.zoo import ResolvedModel

MAX_SHIFT = 2


@dataclass(frozen=True)
class CLIPRecipe(HashedRecipe):
    epochs: int = 16
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup: float = 0.1  # fraction of the steps with a linear learning-rate warmup
    seed: int = 0
    train_images: int = 6000
    data_version: int = GENERATOR_VERSION  # a new shapes generator invalidates cached checkpoints
    # released in float16 (``round_to_half``): 13 MB instead of 26 for git, 6.3M of its 6.5M parameters being
    # the 49408-token embedding table of open_clip's tokenizer
    weights_dtype: str = "float16"


# ~390 s on 2 CPU threads (2026-12): zero-shot top-1 0.863, image -> caption R@1 0.328 on the test split. A ViT
# image tower of similar size (width 64, patch 4) needed 20 epochs (~230 s) to reach top-1 0.496.
RECIPES = {"clip-tiny": CLIPRecipe()}


def shape_images(ds: CaptionedShapes) -> tuple[Tensor, list[str], Tensor]:
    """All of ``ds`` as images (N,3,S,S) in [0,1], captions and labels."""
    items = [ds[i] for i in range(len(ds))]
    x = torch.from_numpy(np.stack([it.rgb for it in items])).permute(0, 3, 1, 2).float() / 255
    return x, [it.caption for it in items], torch.tensor([it.label for it in items])


def _shift(x: Tensor, rng: np.random.Generator) -> Tensor:
    """Translate each image by up to MAX_SHIFT pixels, repeating the border."""
    padded = torch.nn.functional.pad(x, [MAX_SHIFT] * 4, mode="replicate")
    s = x.shape[-1]
    offsets = rng.integers(0, 2 * MAX_SHIFT + 1, (len(x), 2))
    return torch.stack([p[:, dy:dy + s, dx:dx + s] for p, (dy, dx) in zip(padded, offsets)])


def top_k_accuracy(logits: Tensor, target: Tensor, k: int) -> float:
    """Fraction of rows whose target ranks among the first k, by the benchmark's rule (``rank_of_label``)."""
    return (rank_of_label(logits, target) < k).float().mean().item()


@torch.no_grad()
def evaluate(model: CLIPZeroShot, split: str = "test") -> dict[str, float]:
    """Zero-shot top-1/top-5 over CLASSES (default prompt templates) and image->caption R@1/R@5 over the
    split's distinct captions (as the ``shapes-captions`` benchmark dataset scores it)."""
    model.eval()
    x, _, labels = shape_images(CaptionedShapes(split))
    captions = CaptionRetrieval(CaptionedShapes(split))
    model.set_classes(captions.classnames, ["{}"])
    own = torch.tensor(captions.labels)
    retrieval = model(x)
    model.set_classes(CLASSES)
    zero_shot = model(x)
    return {"top1": top_k_accuracy(zero_shot, labels, 1), "top5": top_k_accuracy(zero_shot, labels, 5),
            "R@1": top_k_accuracy(retrieval, own, 1), "R@5": top_k_accuracy(retrieval, own, 5)}


def _warmup_cosine(steps: int, warmup: float) -> Callable[[int], float]:
    """Learning-rate factor: linear warmup over ``warmup * steps`` steps, then cosine decay to 0."""
    n_warm = max(1, round(warmup * steps))
    return lambda t: (t + 1) / n_warm if t < n_warm else 0.5 * (1 + math.cos(math.pi * (t - n_warm) / max(1, steps - n_warm)))


def train_clip(name: str, out: Path, recipe: CLIPRecipe, device: str = "cpu") -> dict[str, float]:
    """Train clip-tiny from scratch, save its open_clip state_dict to ``out``, return its test scores."""
    start = time.time()
    torch.manual_seed(recipe.seed)
    np.random.seed(recipe.seed)
    wrapper = clip_tiny().to(device)
    model = wrapper.model
    x, captions, _ = shape_images(CaptionedShapes("train", n=recipe.train_images))
    tokens = wrapper.tokenizer(captions)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]  # gains, biases, class token, logit_scale
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr)
    per_epoch = len(x) // recipe.batch_size
    steps = recipe.epochs * per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _warmup_cosine(steps, recipe.warmup))
    loss_fn = ClipLoss()
    rng = np.random.default_rng(recipe.seed)
    model.train()
    with tqdm(total=steps, desc=f"train {name}", unit="step") as bar:
        for _ in range(recipe.epochs):
            order = torch.from_numpy(rng.permutation(len(x)))
            for k in range(per_epoch):
                idx = order[k * recipe.batch_size:(k + 1) * recipe.batch_size]
                images = normalize(_shift(x[idx], rng).to(device), wrapper.mean, wrapper.std)
                image_features = model.encode_image(images, normalize=True)
                text_features = model.encode_text(tokens[idx].to(device), normalize=True)
                loss = loss_fn(image_features, text_features, model.logit_scale.exp())
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                with torch.no_grad():
                    model.logit_scale.clamp_(0, math.log(100))
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}", scale=f"{model.logit_scale.exp().item():.1f}")
    wrapper.cpu()
    state = round_to_half(model) if recipe.weights_dtype == "float16" else model.state_dict()
    scores = evaluate(wrapper)
    save_trained(out, state,
                 {"model": name, "recipe": asdict(recipe), "seconds": round(time.time() - start, 1), "test": scores})
    return scores


@dataclass(frozen=True)
class ImageTowerRecipe(HashedRecipe):
    """What :func:`fine_tune_image_tower` reads of a recipe (TeCoA's, the masked fine-tuning's): the base
    variant and its recipe, the schedule, the train split, the release precision."""

    base: str = "clip-tiny"
    base_recipe: str = ""
    epochs: int = 4
    batch_size: int = 128
    lr: float = 5e-4
    seed: int = 0
    train_images: int = 6000
    data_version: int = GENERATOR_VERSION
    weights_dtype: str = "float16"  # released in half precision, as its base (``training/clip.py``)


def fine_tune_image_tower(name: str, out: Path, recipe: ImageTowerRecipe, base: ResolvedModel | None,
                          inputs: Callable[[CLIPZeroShot, Tensor, Tensor, np.random.Generator], Tensor],
                          device: str = "cpu") -> dict[str, float]:
    """Fine-tune the image tower of ``base`` (default: the recipe's ``base`` variant as `make bench` resolves
    it) with zero-shot cross-entropy against the frozen text tower's class prompt embeddings t_c,

        min_theta E_(x, y) CE(s <f_theta(inputs(x)), t_c>_c, y),

    where ``inputs(model, images, labels, rng)`` makes each train batch's training inputs (adversarial,
    masked, ...; the model is put in train mode after it). AdamW without decay, cosine decay over
    ``recipe.epochs`` of ``recipe.train_images`` captioned shapes; saves the open_clip state_dict to ``out``
    (in float16 where ``recipe.weights_dtype`` says so) and returns the clean test scores."""
    from benchmark.zoo import resolve_model  # the base is resolved like any model

    start = time.time()
    base = base or resolve_model(recipe.base, cache=out.parent)
    torch.manual_seed(recipe.seed)
    np.random.seed(recipe.seed)
    wrapper = clip_tiny()
    wrapper.model.load_state_dict(base.model.model.state_dict())
    wrapper.set_classes(CLASSES)  # the frozen text side: one prompt embedding per class
    wrapper.to(device).requires_grad_(False)
    wrapper.model.visual.requires_grad_(True)
    x, _, labels = shape_images(CaptionedShapes("train", n=recipe.train_images))
    opt = torch.optim.AdamW(wrapper.model.visual.parameters(), lr=recipe.lr, weight_decay=0.0)
    per_epoch = len(x) // recipe.batch_size
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, recipe.epochs * per_epoch)
    rng = np.random.default_rng(recipe.seed)
    with tqdm(total=recipe.epochs * per_epoch, desc=f"train {name}", unit="step") as bar:
        for _ in range(recipe.epochs):
            order = torch.from_numpy(rng.permutation(len(x)))
            for k in range(per_epoch):
                idx = order[k * recipe.batch_size:(k + 1) * recipe.batch_size]
                images, y = x[idx].to(device), labels[idx].to(device)
                trained_on = inputs(wrapper, images, y, rng)
                wrapper.train()
                descend(opt, sched, F.cross_entropy(wrapper(trained_on), y), bar)
    wrapper.cpu().eval()
    state = round_to_half(wrapper.model) if recipe.weights_dtype == "float16" else wrapper.model.state_dict()
    scores = evaluate(wrapper)
    save_trained(out, state, {"model": name, "recipe": asdict(recipe), "base_checkpoint": base.checkpoint_sha256,
                              "seconds": round(time.time() - start, 1), "test": scores})
    return scores
