"""Resolve what `make bench MODEL=... [CKPT=...]` benchmarks: an official model with a given
checkpoint, or a tiny variant trained here once and cached under ``results/checkpoints/``."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.provenance import sha256_file
from benchmark.train import RECIPES, train
from models import MODELS, TINY_VARIANT, SaliencyModel, build_model
from models.base import load_state_dict_file

CACHE = Path("results/checkpoints")


@dataclass
class ResolvedModel:
    model: SaliencyModel
    name: str  # registry name actually built
    checkpoint: str  # label for leaderboards: stable across machines
    checkpoint_path: str
    checkpoint_sha256: str


def resolve_model(name: str, ckpt: str | None = None, model_args: dict[str, Any] | None = None,
                  cache: Path = CACHE) -> ResolvedModel:
    model_args = model_args or {}
    if ckpt:
        if name not in MODELS:
            raise KeyError(f"unknown model {name!r}; registered: {sorted(MODELS)}")
        model = build_model(name, **model_args)
        path = Path(ckpt)
        if name in TINY_VARIANT:  # official release layout
            model.load_official_checkpoint(path)
        else:  # a checkpoint written by our own `train`
            model.load_strict(load_state_dict_file(path), str(path))
        sha = sha256_file(path) if path.is_file() else "folder:" + "".join(
            sha256_file(p)[:16] for p in sorted(path.glob("*.pth")))
        return ResolvedModel(model, name, f"{path.name}@{sha[:8]}", str(path), sha)

    variant = TINY_VARIANT.get(name, name)
    if variant not in RECIPES:
        raise ValueError(f"model {name!r} needs a checkpoint: CKPT=/path/to/weights")
    recipe = RECIPES[variant]
    path = cache / f"{variant}-{recipe.id}.pt"
    if not path.is_file():
        print(f"[bench] no cached checkpoint for {variant}: training it on the synthetic train split "
              f"(once; cached at {path})", file=sys.stderr)
        scores = train(variant, path, recipe)
        print(f"[bench] trained {variant}: clean synthetic-test S-measure {scores['S']:.3f}", file=sys.stderr)
    model = build_model(variant)
    model.load_strict(load_state_dict_file(path), str(path))
    return ResolvedModel(model, variant, f"trained:recipe-{recipe.id}", str(path), sha256_file(path))
