"""Resolve what `make bench MODEL=... [CKPT=...]` benchmarks: a model with a given checkpoint (official
saliency releases, open_clip checkpoints), or an embedded variant (the tiny saliency models, clip-tiny,
rgbd-clip, the defended variants) with its pinned reference weights (``benchmark/pinned.py``); a variant
without pinned weights is trained here once by its recipe and cached under ``results/checkpoints/``."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from benchmark.pinned import compose, pinned_weights, weights_label
from benchmark.provenance import sha256_file, sha256_json
from benchmark.training import TRAINERS
from models import MODELS, TINY_VARIANT, build_model
from models.base import load_state_dict_file

CACHE = Path("results/checkpoints")


@dataclass
class ResolvedModel:
    model: nn.Module
    name: str  # registry name actually built
    checkpoint: str  # label for leaderboards: names the weights by their sha256 prefix
    checkpoint_path: str
    checkpoint_sha256: str


def load_weights(model: nn.Module, name: str, path: Path) -> None:
    """Official saliency releases their own way; models with ``load_checkpoint`` (open_clip's way for
    clip, rgbd-clip) theirs; our trained saliency variants as strict state_dicts."""
    if name in TINY_VARIANT:
        model.load_official_checkpoint(path)
    elif hasattr(model, "load_checkpoint"):
        model.load_checkpoint(path)
    else:
        model.load_strict(load_state_dict_file(path), str(path))


def checkpoint_sha256(path: Path) -> str:
    """sha256 of a checkpoint file; of a checkpoint folder (D3Net's three files), the sha256 over each
    ``*.pth`` file's name and sha256, in name order."""
    if path.is_file():
        return sha256_file(path)
    return sha256_json([(p.name, sha256_file(p)) for p in sorted(path.glob("*.pth"))])


def resolve_model(name: str, ckpt: str | None = None, model_args: dict[str, Any] | None = None,
                  cache: Path = CACHE) -> ResolvedModel:
    model_args = model_args or {}
    if ckpt:
        model = build_model(name, **model_args)
        path = Path(ckpt)
        load_weights(model, name, path)
        return ResolvedModel(model, name, f"{path.name}@{checkpoint_sha256(path)[:8]}", str(path), checkpoint_sha256(path))

    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {sorted(MODELS)}")
    variant = TINY_VARIANT.get(name, name)
    if variant not in TRAINERS:
        raise ValueError(f"model {name!r} needs a checkpoint: CKPT=/path/to/weights")
    weights = variant_checkpoint(variant, cache)
    model = build_model(variant, **model_args)
    load_weights(model, variant, weights.path)
    return ResolvedModel(model, variant, weights_label(weights.recipe, weights.sha256), str(weights.path), weights.sha256)


@dataclass
class VariantWeights:
    recipe: str  # id of the recipe that trained them
    path: Path  # a full checkpoint
    sha256: str  # of the pinned file (with a base: its own tensors, the base's pinned sha256 checked), else of ``path``


def variant_checkpoint(variant: str, cache: Path = CACHE) -> VariantWeights:
    """The weights of an embedded variant (a tiny model, a defense's network): pinned, or else trained here
    once by its recipe and cached."""
    recipe, trainer = TRAINERS[variant]
    pinned = pinned_weights(variant)
    if pinned is not None:
        entry, path = pinned
        if entry.recipe != recipe.id:
            print(f"[bench] warning: the pinned {variant} was trained by recipe {entry.recipe}, its recipe is now "
                  f"{recipe.id}; benchmarking the pinned weights (`make train MODEL={variant} PIN=1` re-pins)",
                  file=sys.stderr)
        return VariantWeights(entry.recipe, compose(entry, path, cache) if entry.base else path, entry.sha256)
    path = cache / f"{variant}-{recipe.id}.pt"
    if not path.is_file():
        print(f"[bench] no pinned weights for {variant}: training it on its embedded train split "
              f"(once; cached at {path})", file=sys.stderr)
        scores = trainer(variant, path, recipe)
        print(f"[bench] trained {variant}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()), file=sys.stderr)
    return VariantWeights(recipe.id, path, sha256_file(path))
