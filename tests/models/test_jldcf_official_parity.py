"""Parity of models.jldcf.JLDCF with the official JL-DCF code (jiangyao-scu/JL-DCF-pytorch).

Skipped unless ``JLDCF_OFFICIAL_SRC`` names a checkout of the official repository (the directory holding
``networks/`` and ``dataset.py``); nothing from it is part of this repository. Both models get the same
random weights (ours loaded strictly into theirs), run in float64 in eval mode, and must agree on the
final logits, the coarse logits and the gradients w.r.t. the [0,1] RGB and depth inputs.
``JLDCF_PARITY_SIZE`` (default 320, the official size) sets the input side.
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from benchmark.data import FolderRGBD
from models.base import IMAGENET_MEAN, IMAGENET_STD
from models.jldcf import JLDCF

OFFICIAL_SRC = os.environ.get("JLDCF_OFFICIAL_SRC", "")
SIZE = int(os.environ.get("JLDCF_PARITY_SIZE", "320"))
OFFICIAL_ARCH = {"resnet101": "resnet", "resnet50": "resnet", "vgg16": "vgg", "densenet161": "densenet"}

pytestmark = pytest.mark.skipif(
    not (OFFICIAL_SRC and (Path(OFFICIAL_SRC) / "networks" / "JL_DCF.py").is_file()),
    reason="set JLDCF_OFFICIAL_SRC to an official JL-DCF-pytorch checkout to run the parity check")


@pytest.fixture(scope="module")
def official() -> dict[str, ModuleType]:
    sys.path.insert(0, str(Path(OFFICIAL_SRC).resolve()))
    try:
        return {"net": importlib.import_module("networks.JL_DCF"), "data": importlib.import_module("dataset")}
    finally:
        sys.path.pop(0)


def _randomise_batchnorm(model: nn.Module, gen: torch.Generator) -> None:
    """Non-trivial BN statistics and affine parameters, so eval-mode BN is really exercised."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(c, generator=gen))
            m.weight.data.copy_(0.5 + torch.rand(c, generator=gen))
            m.bias.data.copy_(0.1 * torch.randn(c, generator=gen))


def _official_input(rgb: Tensor, depth: Tensor) -> Tensor:
    """What the official test loader feeds the network, written out by hand on [0,1] tensors."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=rgb.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=rgb.dtype).view(1, 3, 1, 1)
    return torch.cat(((rgb - mean) / std, (depth.repeat(1, 3, 1, 1) - mean) / std), 0)


def _max_rel_diff(a: Tensor, b: Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def test_hand_preprocessing_matches_official_loader(official: dict[str, ModuleType]) -> None:
    """The official loader reads BGR uint8 (depth as a 3-channel grey image) and calls Normalization."""
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (SIZE, SIZE, 3)).astype(np.float64)
    grey = rng.integers(0, 256, (SIZE, SIZE)).astype(np.float64)
    ref_rgb = official["data"].Normalization(bgr.copy()).transpose(2, 0, 1)
    ref_depth = official["data"].Normalization(np.repeat(grey[..., None], 3, axis=2)).transpose(2, 0, 1)
    rgb = torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1].transpose(2, 0, 1)) / 255.0)[None]
    depth = torch.from_numpy(grey / 255.0)[None, None]
    ours = JLDCF("vgg16", input_size=SIZE)._joint_input(rgb, depth)
    torch.testing.assert_close(ours, torch.from_numpy(np.stack([ref_rgb, ref_depth])), rtol=0, atol=1e-12)


@pytest.mark.parametrize("backbone", list(OFFICIAL_ARCH))
def test_forward_and_input_gradients_match_official(official: dict[str, ModuleType], backbone: str) -> None:
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    ours = JLDCF(backbone, input_size=SIZE)
    with torch.no_grad():
        _randomise_batchnorm(ours, gen)
    theirs = official["net"].build_model(backbone, OFFICIAL_ARCH[backbone])
    theirs.load_state_dict(ours.state_dict(), strict=True)
    ours.double().eval()
    theirs.double().eval()

    rgb = torch.rand(2, 3, SIZE, SIZE, dtype=torch.float64, generator=gen)
    depth = torch.rand(2, 1, SIZE, SIZE, dtype=torch.float64, generator=gen)
    weight = torch.randn(2, 1, SIZE, SIZE, dtype=torch.float64, generator=gen)

    rgb_ours, depth_ours = rgb.clone().requires_grad_(), depth.clone().requires_grad_()
    final, coarse = ours._final_and_coarse(rgb_ours, depth_ours)
    (final * weight).sum().backward()

    for i in range(2):  # the official network takes one RGB-D pair per call
        rgb_ref, depth_ref = rgb[i:i + 1].clone().requires_grad_(), depth[i:i + 1].clone().requires_grad_()
        final_ref, coarse_ref = theirs(_official_input(rgb_ref, depth_ref))
        (final_ref * weight[i:i + 1]).sum().backward()
        assert _max_rel_diff(final[i:i + 1].detach(), final_ref.detach()) < 1e-10
        assert _max_rel_diff(coarse[[i, i + 2]].detach(), coarse_ref.detach()) < 1e-10
        assert _max_rel_diff(rgb_ours.grad[i:i + 1], rgb_ref.grad) < 1e-10
        assert _max_rel_diff(depth_ours.grad[i:i + 1], depth_ref.grad) < 1e-10


@pytest.mark.parametrize("depth_bits", [8, 16])
def test_official_test_loader_matches_input_loader(official: dict[str, ModuleType], tmp_path: Path,
                                                    depth_bits: int) -> None:
    """dataset.py load_image_test on a non-square JPEG and an 8/16-bit depth PNG equals JLDCF.input_loader
    followed by our normalisation."""
    rng = np.random.default_rng(0)
    for sub in ("RGB", "GT", "depth"):
        (tmp_path / "NJU2K" / sub).mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "NJU2K" / "RGB" / "a.jpg"), rng.integers(0, 256, (90, 150, 3), dtype=np.uint8))
    cv2.imwrite(str(tmp_path / "NJU2K" / "GT" / "a.png"), np.zeros((90, 150), np.uint8))
    dtype = np.uint8 if depth_bits == 8 else np.uint16
    depth = rng.integers(0, 256 if depth_bits == 8 else 65536, (90, 150)).astype(dtype)
    cv2.imwrite(str(tmp_path / "NJU2K" / "depth" / "a.png"), depth)
    ref_rgb, _ = official["data"].load_image_test(str(tmp_path / "NJU2K" / "RGB" / "a.jpg"), SIZE)
    ref_depth, _ = official["data"].load_image_test(str(tmp_path / "NJU2K" / "depth" / "a.png"), SIZE)
    sample = FolderRGBD(tmp_path, "NJU2K")[0]
    rgb, depth01 = JLDCF.input_loader(sample.rgb, sample.depth, SIZE)
    ours = JLDCF("vgg16", input_size=SIZE)._joint_input(rgb[None].double(), depth01[None].double())
    torch.testing.assert_close(ours, torch.from_numpy(np.stack([ref_rgb, ref_depth])).double(), rtol=0, atol=1e-5)
