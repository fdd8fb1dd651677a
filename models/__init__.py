"""Model registry. ``build_model(name, **kwargs)`` builds a randomly initialised model; nothing is
downloaded. The official configurations load the released checkpoints; each ``-tiny`` variant is the
same code with a small backbone and input, trained by ``python -m benchmark train`` on the embedded
synthetic data. Saliency models have ``task = "saliency"``; CLIP-like models ``task = "classification"``
(zero-shot class prompts, or retrieval over a gallery)."""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

from .base import SaliencyModel
from .bbsnet import BBSNet, bbsnet_tiny
from .clip import CLIPZeroShot, clip_tiny
from .d3net import D3Net, d3net_tiny
from .jldcf import JLDCF, jldcf_tiny
from .rgbd_clip import RGBDCLIP

MODELS: dict[str, Callable[..., nn.Module]] = {
    "jldcf": JLDCF,  # backbone = resnet101 (default) | resnet50 | vgg16 | densenet161; input 320
    "bbsnet": BBSNet,  # ResNet-50 RGB and depth streams; input 352
    "d3net": D3Net,  # RgbNet, RgbdNet, DepthNet + depth depurator; input 224
    "jldcf-tiny": jldcf_tiny,
    "bbsnet-tiny": bbsnet_tiny,
    "d3net-tiny": d3net_tiny,
    "jldcf-tiny-at": jldcf_tiny,  # the tiny variants adversarially fine-tuned (PGD-AT, benchmark/training)
    "bbsnet-tiny-at": bbsnet_tiny,
    "d3net-tiny-at": d3net_tiny,
    "clip": CLIPZeroShot,  # any open_clip architecture: arch=ViT-B-32 (or config=<open_clip JSON>)
    "clip-tiny": clip_tiny,  # models/configs/clip-tiny.json, trained on the embedded captioned shapes
    "clip-tiny-tecoa": clip_tiny,  # clip-tiny's image tower adversarially fine-tuned (TeCoA, benchmark/training)
    "clip-tiny-cutout": clip_tiny,  # ... fine-tuned on PatchCleanser-masked images (benchmark/training/cutout.py)
    "rgbd-clip": RGBDCLIP,  # RGB and depth encoders, ITC + ITM; query=rgb|depth
}

# `make bench MODEL=jldcf` without a checkpoint trains and benchmarks this variant.
TINY_VARIANT = {"jldcf": "jldcf-tiny", "bbsnet": "bbsnet-tiny", "d3net": "d3net-tiny"}


def same_model(a: str, b: str) -> bool:
    """Whether two model names (``jldcf``, ``jldcf-tiny``) name the same model: `make bench` resolves a
    name without a checkpoint to its tiny variant."""
    return TINY_VARIANT.get(a, a) == TINY_VARIANT.get(b, b)


def build_model(name: str, **kwargs: Any) -> nn.Module:
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {sorted(MODELS)}")
    return MODELS[name](**kwargs)


__all__ = ["MODELS", "TINY_VARIANT", "SaliencyModel", "build_model", "same_model"]
