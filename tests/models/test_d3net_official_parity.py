"""Parity of models.d3net with the official D3Net code (DengPingFan/D3NetBenchmark).

Skipped unless ``D3NET_OFFICIAL_SRC`` points at an official checkout; its ``model`` package is imported
from there (nothing of it is stored in this repository). Both implementations get the same random
weights (through our official-checkpoint loader) and the same inputs; the official pre-processing is
applied by hand (ImageNet normalisation of RGB, raw [0,1] depth) and the official eval's depth
depurator is re-enacted with cv2/numpy on its uint8 maps at the GT size.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torchvision import transforms

from benchmark.data import FolderRGBD
from models.base import IMAGENET_MEAN, IMAGENET_STD
from models.d3net import D3Net

OFFICIAL_SRC = os.environ.get("D3NET_OFFICIAL_SRC")
pytestmark = pytest.mark.skipif(
    not OFFICIAL_SRC, reason="set D3NET_OFFICIAL_SRC to an official D3NetBenchmark checkout to run"
)
NAMES = ("RgbNet", "RgbdNet", "DepthNet")


def import_official(module: str):
    """Import ``module`` from the official checkout, leaving no trace of its top-level package in
    ``sys.modules`` (other official code bases use names such as ``model`` too)."""
    src = str(Path(OFFICIAL_SRC).resolve())
    root = module.split(".")[0]

    def owned() -> list[str]:
        return [name for name in sys.modules if name == root or name.startswith(root + ".")]

    saved = {name: sys.modules.pop(name) for name in owned()}
    sys.path.insert(0, src)
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(src)
        for name in owned():
            del sys.modules[name]
        sys.modules.update(saved)


class OfficialD3Net:
    """The three official sub-networks, with their pre-sigmoid maps captured by hooks."""

    def __init__(self) -> None:
        self.nets: dict[str, nn.Module] = {name: import_official(f"model.{name}").MyNet() for name in NAMES}
        self.logits: dict[str, Tensor] = {}
        for name, net in self.nets.items():
            net.pred_layer.outlayer[0].register_forward_hook(self._capture(name))

    def _capture(self, name: str):
        def hook(module: nn.Module, args: tuple, out: Tensor) -> None:
            self.logits[name] = out

        return hook

    def run(self, rgb: Tensor, depth: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Probabilities and logits of each sub-net for ``rgb``/``depth`` in [0,1] (ToTensor output)."""
        mean = torch.tensor(IMAGENET_MEAN, dtype=rgb.dtype).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=rgb.dtype).view(1, 3, 1, 1)
        batch = ((rgb - mean) / std, depth)
        probs = {name: net(batch) for name, net in self.nets.items()}
        return probs, dict(self.logits)


def eval_script_maps(probs: dict[str, Tensor], index: int, gt_hw: tuple[int, int]) -> tuple[bool, np.ndarray]:
    """The official eval for one image: each map resized (cv2 bilinear) to the GT size, scaled by 255
    and cast to uint8; RgbdNet's map is kept if mean |rgbd/255 - depth/255| < 0.15, else RgbNet's."""
    u8 = {
        name: (
            cv2.resize(p[index, 0].detach().numpy(), gt_hw[::-1], interpolation=cv2.INTER_LINEAR) * 255
        ).astype(np.uint8)
        for name, p in probs.items()
    }
    use_rgbd = bool(np.mean(np.abs(u8["RgbdNet"] / 255.0 - u8["DepthNet"] / 255.0)) < 0.15)
    return use_rgbd, u8["RgbdNet" if use_rgbd else "RgbNet"]


def splitting_shift(rgbd_logits: Tensor, depth_logits: Tensor) -> float:
    """The middle of the first range of DepthNet output-bias shifts for which the DDU keeps RgbdNet
    for some images and RgbNet for others (so both branches are compared)."""
    rgbd = torch.floor(rgbd_logits.sigmoid() * 255) / 255
    splitting = []
    for shift in np.linspace(0.0, 10.0, 1001):
        depth = torch.floor((depth_logits + shift).sigmoid() * 255) / 255
        kept = int(((rgbd - depth).abs().mean(dim=(1, 2, 3)) < 0.15).sum())
        if 0 < kept < len(rgbd):
            splitting.append(float(shift))
        elif splitting:
            break
    if not splitting:
        pytest.fail("no DepthNet bias shift splits the batch between RgbdNet and RgbNet")
    return splitting[len(splitting) // 2]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[OfficialD3Net, D3Net]:
    torch.manual_seed(0)
    official = OfficialD3Net()
    folder = tmp_path_factory.mktemp("d3net_official")
    for name, net in official.nets.items():
        torch.save(
            {"model": net.state_dict(), "current_epoch": 0, "best_metric": np.array([0.1, 0.8])},
            folder / f"{name}.pth",
        )
    ours = D3Net()
    ours.load_official_checkpoint(folder)
    for net in official.nets.values():
        net.double().eval()
    return official, ours.double().eval()


def float64_inputs() -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    rgb = torch.rand(2, 3, 224, 224, generator=g, dtype=torch.float64)
    depth = torch.rand(2, 1, 224, 224, generator=g, dtype=torch.float64)
    depth[1] = torch.linspace(0, 1, 224, dtype=torch.float64).view(1, 1, -1)
    return rgb, depth


def test_official_test_transform_matches_our_preprocessing(pair: tuple[OfficialD3Net, D3Net]) -> None:
    """The official loader (uint8 -> ToTensor -> ImageNet Normalize on RGB only) against ours on [0,1]."""
    _, ours = pair
    mtr = import_official("my_custom_transforms")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    dep = rng.integers(0, 256, (224, 224), dtype=np.uint8)
    sample = {"img": img.copy(), "depth": dep.copy(), "meta": {}}
    for step in (
        mtr.Resize((224, 224)),
        mtr.ToTensor(),
        mtr.Normalize(IMAGENET_MEAN, IMAGENET_STD, elems_do=["img"]),
    ):
        sample = step(sample)
    rgb01 = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    dep01 = torch.from_numpy(dep)[None, None].float() / 255
    rgb_in, rgbd_in, depth_in = ours._subnet_inputs(rgb01, dep01)
    official_rgb, official_depth = sample["img"][None], sample["depth"][None]
    torch.testing.assert_close(rgb_in, official_rgb, rtol=0, atol=0)
    torch.testing.assert_close(rgbd_in, torch.cat((official_rgb, official_depth), 1), rtol=0, atol=0)
    torch.testing.assert_close(depth_in, official_depth.repeat(1, 3, 1, 1), rtol=0, atol=0)


@pytest.mark.parametrize("gt_hw", [(224, 224), (300, 410)])
def test_outputs_and_input_gradients_match_official(
    pair: tuple[OfficialD3Net, D3Net], gt_hw: tuple[int, int]
) -> None:
    official, ours = pair
    rgb, depth = float64_inputs()
    depth_bias = [
        official.nets["DepthNet"].pred_layer.outlayer[0].bias,
        ours.depth_net.pred_layer.outlayer[0].bias,
    ]
    with torch.no_grad():
        _, rgbd_logits, depth_logits = ours.training_outputs(rgb, depth)
        shift = splitting_shift(rgbd_logits, depth_logits)
        for bias in depth_bias:
            bias += shift
    try:
        rgb_o, depth_o = rgb.clone().requires_grad_(), depth.clone().requires_grad_()
        probs, logits = official.run(rgb_o, depth_o)
        decisions = [eval_script_maps(probs, i, gt_hw) for i in range(len(rgb))]
        official_final = torch.cat(
            [logits["RgbdNet" if keep else "RgbNet"][i : i + 1] for i, (keep, _) in enumerate(decisions)]
        )
        weight = torch.randn(
            official_final.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64
        )
        official_grads = torch.autograd.grad((official_final * weight).sum(), (rgb_o, depth_o))

        rgb_u, depth_u = rgb.clone().requires_grad_(), depth.clone().requires_grad_()
        sub_logits = ours.training_outputs(rgb_u, depth_u)
        final = ours(rgb_u, depth_u, gt_sizes=[gt_hw] * len(rgb_u))
        grads = torch.autograd.grad((final * weight).sum(), (rgb_u, depth_u))
    finally:
        with torch.no_grad():
            for bias in depth_bias:
                bias -= shift

    assert {keep for keep, _ in decisions} == {True, False}
    for name, ours_logits in zip(NAMES, sub_logits):
        torch.testing.assert_close(ours_logits, logits[name], rtol=0, atol=1e-10)
    torch.testing.assert_close(final, official_final, rtol=0, atol=1e-10)
    for ours_grad, official_grad in zip(grads, official_grads):
        assert official_grad.abs().max() > 0
        torch.testing.assert_close(ours_grad, official_grad, rtol=0, atol=1e-10)
    saved = (ours.postprocess(final.detach(), gt_hw) * 255).round().to(torch.uint8).numpy()[:, 0]
    np.testing.assert_array_equal(saved, np.stack([u8 for _, u8 in decisions]))


@pytest.mark.parametrize("depth_bits", [8, 16])
def test_official_eval_loader_matches_input_loader(tmp_path: Path, depth_bits: int, write_folder_pair) -> None:
    """eval.py's loader (RgbdSodDataset + Resize/ToTensor of my_custom_transforms) on a non-square JPEG
    and an 8/16-bit depth PNG equals D3Net.input_loader."""
    write_folder_pair(tmp_path, depth_bits)
    mtr = import_official("my_custom_transforms")
    loader = import_official("dataloader_rgbdsod")
    transform = transforms.Compose([mtr.Resize((224, 224)), mtr.ToTensor()])  # eval.py's, without Normalize
    official = loader.RgbdSodDataset(str(tmp_path / "NJU2K"), transform=transform)[0]
    sample = FolderRGBD(tmp_path, "NJU2K")[0]
    rgb, depth01 = D3Net.input_loader(sample.rgb, sample.depth, 224)
    torch.testing.assert_close(rgb, official["img"], rtol=0, atol=0)
    torch.testing.assert_close(depth01, official["depth"], rtol=0, atol=0)
