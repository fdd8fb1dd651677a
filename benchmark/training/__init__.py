"""Training-time code in one home: the trainers of the embedded variants (one loop per model family)
and the recipes of the pinned weights (`benchmark/pinned.py`; a variant not pinned yet is trained
on first use and cached). Adding a variant is a recipe here.

    variant -> (recipe, trainer)
"""
from __future__ import annotations

from typing import Any, Callable

from .adversarial import RECIPES as ADVERSARIAL_RECIPES
from .adversarial import TECOA_RECIPES, train_adversarial, train_tecoa
from .clip import RECIPES as CLIP_RECIPES
from .clip import train_clip
from .cutout import RECIPES as CUTOUT_RECIPES
from .cutout import train_cutout
from .natural import RECIPES as NATURAL_RECIPES
from .natural import train_natural_generator
from .rgbd_clip import RECIPES as RGBD_CLIP_RECIPES
from .rgbd_clip import train_rgbd_clip
from .saliency import RECIPES as SALIENCY_RECIPES
from .saliency import train
from .segmenter import RECIPES as SEGMENTER_RECIPES
from .segmenter import train_segmenter

TRAINERS: dict[str, tuple[Any, Callable[..., dict[str, float]]]] = {
    **{name: (recipe, train) for name, recipe in SALIENCY_RECIPES.items()},
    **{name: (recipe, train_adversarial) for name, recipe in ADVERSARIAL_RECIPES.items()},  # PGD-AT
    **{name: (recipe, train_clip) for name, recipe in CLIP_RECIPES.items()},
    **{name: (recipe, train_tecoa) for name, recipe in TECOA_RECIPES.items()},  # TeCoA
    **{name: (recipe, train_cutout) for name, recipe in CUTOUT_RECIPES.items()},  # masked, for PatchCleanser
    **{name: (recipe, train_rgbd_clip) for name, recipe in RGBD_CLIP_RECIPES.items()},
    **{name: (recipe, train_segmenter) for name, recipe in SEGMENTER_RECIPES.items()},  # a defense's network
    **{name: (recipe, train_natural_generator) for name, recipe in NATURAL_RECIPES.items()},  # an attack's network
}
