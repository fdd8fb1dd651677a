"""Parity of models.bbsnet.BBSNet with the official BBS-Net code (zyjwuyan/BBS-Net).

Skipped unless ``BBSNET_OFFICIAL_SRC`` names a checkout of the official repository (the directory holding
``models/BBSNet_model.py`` and ``models/ResNet.py``); nothing from it is part of this repository. The
official constructor's ImageNet download is switched off; both models get the same random weights (ours
loaded strictly into theirs), run in float64 in eval mode, and must agree on the final map, the initial
map and the gradients w.r.t. the [0,1] RGB and depth inputs. The official input is built by hand as the
official test loader does: ImageNet-normalised RGB, raw 1-channel depth in [0,1].
``BBSNET_PARITY_SIZE`` (default 352, the official size) sets the input side.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import Tensor, nn

from benchmark.data import FolderRGBD
from models.base import IMAGENET_MEAN, IMAGENET_STD
from models.bbsnet import BBSNet

OFFICIAL_SRC = os.environ.get("BBSNET_OFFICIAL_SRC", "")
SIZE = int(os.environ.get("BBSNET_PARITY_SIZE", "352"))

pytestmark = pytest.mark.skipif(
    not (OFFICIAL_SRC and (Path(OFFICIAL_SRC) / "models" / "BBSNet_model.py").is_file()),
    reason="set BBSNET_OFFICIAL_SRC to an official BBS-Net checkout to run the parity check")


def _load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def official() -> ModuleType:
    """The official model module; its ``from ResNet import ResNet50`` is served without touching sys.path."""
    models_dir = Path(OFFICIAL_SRC).resolve() / "models"
    saved = sys.modules.get("ResNet")
    sys.modules["ResNet"] = _load_module("bbsnet_official_resnet", models_dir / "ResNet.py")
    try:
        return _load_module("bbsnet_official_model", models_dir / "BBSNet_model.py")
    finally:
        if saved is None:
            sys.modules.pop("ResNet")
        else:
            sys.modules["ResNet"] = saved


def _randomise_batchnorm(model: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial BN statistics and affine parameters, so that eval-mode BN is exercised."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=generator))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=generator))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=generator))


def _max_abs(a: Tensor, b: Tensor) -> float:
    return (a - b).abs().max().item()


def test_matches_official_outputs_and_input_gradients(official: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(official.BBSNet, "initialize_weights", lambda self: None)
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    ours = BBSNet(input_size=SIZE)
    _randomise_batchnorm(ours, g)
    theirs = official.BBSNet()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    ours, theirs = ours.double().eval(), theirs.double().eval()

    rgb = torch.rand(2, 3, SIZE, SIZE, generator=g, dtype=torch.float64)
    depth = torch.rand(2, 1, SIZE, SIZE, generator=g, dtype=torch.float64)
    weight = torch.randn(2, 1, SIZE, SIZE, generator=g, dtype=torch.float64)

    rgb_ours, depth_ours = rgb.clone().requires_grad_(True), depth.clone().requires_grad_(True)
    initial_ours, final_ours = ours.training_outputs(rgb_ours, depth_ours)
    (final_ours * weight).sum().backward()

    rgb_theirs, depth_theirs = rgb.clone().requires_grad_(True), depth.clone().requires_grad_(True)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    initial_theirs, final_theirs = theirs((rgb_theirs - mean) / std, depth_theirs)
    (final_theirs * weight).sum().backward()

    assert rgb_theirs.grad is not None and depth_theirs.grad is not None
    assert rgb_theirs.grad.abs().max() > 0 and depth_theirs.grad.abs().max() > 0
    with torch.no_grad():
        assert _max_abs(ours(rgb, depth), final_theirs) < 1e-10
    assert _max_abs(final_ours, final_theirs) < 1e-10
    assert _max_abs(initial_ours, initial_theirs) < 1e-10
    assert _max_abs(rgb_ours.grad, rgb_theirs.grad) < 1e-10
    assert _max_abs(depth_ours.grad, depth_theirs.grad) < 1e-10


@pytest.mark.parametrize("depth_bits", [8, 16])
def test_official_test_loader_matches_input_loader(tmp_path: Path, depth_bits: int, write_folder_pair) -> None:
    """data.py test_dataset on a non-square JPEG and an 8/16-bit depth PNG equals BBSNet.input_loader
    (ImageNet-normalised RGB, raw depth)."""
    write_folder_pair(tmp_path, depth_bits)
    data = _load_module("bbsnet_official_data", Path(OFFICIAL_SRC).resolve() / "data.py")
    roots = (f"{tmp_path / 'NJU2K' / sub}/" for sub in ("RGB", "GT", "depth"))
    image, _, official_depth, _, _ = data.test_dataset(*roots, SIZE).load_data()
    sample = FolderRGBD(tmp_path, "NJU2K")[0]
    rgb, ours_depth = BBSNet.input_loader(sample.rgb, sample.depth, SIZE)
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    torch.testing.assert_close((rgb - mean) / std, image[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(ours_depth, official_depth[0], rtol=0, atol=0)
