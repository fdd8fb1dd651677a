"""Train a tiny model variant on the synthetic train split (our own recipe, CPU minutes).

Loss: the sum over the model's supervised outputs of pixel BCE plus a soft-IoU term,
L = sum_k [BCE(z_k, y) + 1 - sum(s_k y) / sum(s_k + y - s_k y)], s_k = sigmoid(z_k),
with Adam and a cosine learning-rate schedule; horizontal flips as augmentation.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from benchmark.data import SyntheticRGBD, make_batch
from benchmark.data.synthetic import GENERATOR_VERSION
from benchmark.results import save_trained
from benchmark.tasks import SaliencyTask
from benchmark.training.recipe import HashedRecipe, descend
from models import SaliencyModel, build_model


@dataclass(frozen=True)
class Recipe(HashedRecipe):
    epochs: int = 12
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    train_images: int = 480
    data_version: int = GENERATOR_VERSION  # a new synthetic generator invalidates cached checkpoints


# D3Net trains three VGG sub-nets without BatchNorm: it needs twice the epochs to reach S >= 0.85.
RECIPES = {"jldcf-tiny": Recipe(), "bbsnet-tiny": Recipe(), "d3net-tiny": Recipe(epochs=24)}


def _loss(outputs: list[Tensor], y: Tensor) -> Tensor:
    total = y.new_zeros(())
    for z in outputs:
        s = z.sigmoid()
        inter = (s * y).flatten(1).sum(1)
        union = (s + y - s * y).flatten(1).sum(1)
        total = total + F.binary_cross_entropy_with_logits(z, y) + (1 - inter / union.clamp_min(1e-6)).mean()
    return total


@torch.no_grad()
def evaluate(model: SaliencyModel, split: str = "test", batch_size: int = 16) -> dict[str, float]:
    """Clean SOD scores of ``model`` on a synthetic split, scored as the benchmark scores it."""
    model.eval()
    task, ds, scored = SaliencyTask(), SyntheticRGBD(split), []
    for start in range(0, len(ds), batch_size):
        b = make_batch([ds[i] for i in range(start, min(start + batch_size, len(ds)))], model.input_size)
        scored += task.score(model, model(b.rgb, b.depth), b)
    scalars, curves = zip(*scored)
    return task.summarise(list(scalars), {k: np.array([c[k] for c in curves]) for k in curves[0]})


Perturb = Callable[[SaliencyModel, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


def fit(model: SaliencyModel, recipe: Recipe, name: str, perturb: Perturb | None = None, device: str = "cpu") -> None:
    """The training loop of the saliency models: ``recipe.epochs`` over the synthetic train split with the
    loss above. ``perturb(model, rgb, depth, y)`` (adversarial training) replaces each batch's inputs; it is
    called with the model in eval mode (BatchNorm's running statistics), the update then runs in train mode.
    The caller seeds torch (a model's initialisation comes first)."""
    model.to(device)
    ds = SyntheticRGBD("train", n=recipe.train_images)
    samples = [ds[i] for i in range(len(ds))]
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps = recipe.epochs * (len(samples) // recipe.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=steps, pct_start=0.15)
    rng = np.random.default_rng(recipe.seed)
    with tqdm(total=steps, desc=f"train {name}", unit="step") as bar:
        for _ in range(recipe.epochs):
            order = rng.permutation(len(samples))
            for k in range(len(samples) // recipe.batch_size):
                b = make_batch([samples[i] for i in order[k * recipe.batch_size:(k + 1) * recipe.batch_size]],
                               model.input_size).to(device)
                rgb, depth, y = b.rgb, b.depth, b.target
                if rng.random() < 0.5:
                    rgb, depth, y = rgb.flip(-1), depth.flip(-1), y.flip(-1)
                if perturb is not None:
                    model.eval()
                    rgb, depth = perturb(model, rgb, depth, y)
                model.train()
                loss = _loss(model.training_outputs(rgb, depth), y)
                descend(opt, sched, loss, bar)
    model.cpu().eval()


def train(name: str, out: Path, recipe: Recipe | None = None, device: str = "cpu") -> dict[str, float]:
    """Train ``name`` from scratch, save its state_dict to ``out`` and return its clean test scores."""
    recipe = recipe or RECIPES[name]
    start = time.time()
    torch.manual_seed(recipe.seed)
    np.random.seed(recipe.seed)
    model = build_model(name)
    fit(model, recipe, name, device=device)
    scores = evaluate(model)
    save_trained(out, model.state_dict(),
                 {"model": name, "recipe": asdict(recipe), "seconds": round(time.time() - start, 1), "test": scores})
    return scores
