"""The attacked view and the scored function are the same as the official test: D3Net's depth depurator
decides at each image's GT size (scoring, attacked view, its per-row copies, the runner), and a transfer
surrogate of lower resolution passes gradient to every target pixel."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from attacks import ThreatModel
from attacks.threat import AttackSpace
from benchmark.data import Batch
from benchmark.runner import RunConfig, run
from benchmark.tasks import SaliencyTask
from benchmark.tasks.saliency import AttackSpaceModel
from models import build_model
from models.base import SaliencyModel
from models.d3net import D3Net, d3net_tiny

S = 64
TASK = SaliencyTask()


class FixedLogits(nn.Module):
    """A D3Net sub-network stand-in: the same logit map for every image (a zero multiple of the input
    keeps the graph connected)."""

    def __init__(self, logits: Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: Tensor) -> Tensor:
        return self.logits.expand(x.shape[0], -1, -1, -1) + 0 * x[:, :1]


def checkerboard_d3net() -> D3Net:
    """RgbdNet predicts a pixel checkerboard (p ~ 1 / 0), DepthNet p = 0.5 everywhere, RgbNet logit -3.
    At the network resolution mean |S_rgbd - S_depth| ~ 0.5 (RgbNet wins); halved to a GT of S/2 the
    checkerboard averages to 0.5 and the difference vanishes (RgbdNet wins)."""
    model = d3net_tiny(S).double().eval()
    board = (torch.arange(S)[:, None] + torch.arange(S)[None, :]) % 2 * 20.0 - 10.0
    model.rgbd_net = FixedLogits(board.double()[None, None])
    model.depth_net = FixedLogits(torch.zeros(1, 1, S, S, dtype=torch.float64))
    model.rgb_net = FixedLogits(torch.full((1, 1, S, S), -3.0, dtype=torch.float64))
    return model


def official_ddu_keeps_rgbd(model: D3Net, gt_hw: tuple[int, int]) -> bool:
    """D3Net eval.py on one image: sigmoid maps resized to the GT with cv2 INTER_LINEAR, uint8, MAE < 0.15."""
    x = torch.zeros(1, 3, S, S, dtype=torch.float64)
    maps = [net(x).sigmoid()[0, 0].numpy().astype(np.float32) for net in (model.rgbd_net, model.depth_net)]
    rgbd, depth = ((cv2.resize(m, gt_hw[::-1], interpolation=cv2.INTER_LINEAR) * 255).astype(np.uint8) for m in maps)
    return bool(np.mean(np.abs(rgbd / 255.0 - depth / 255.0)) < 0.15)


GT_SIZES = [(S // 2, S // 2), (S, 2 * S), (S // 2, S // 2)]  # decided: RgbdNet, RgbNet, RgbdNet


@pytest.fixture
def batch() -> Batch:
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(3, 3, S, S, generator=g, dtype=torch.float64)
    depth = torch.rand(3, 1, S, S, generator=g, dtype=torch.float64)
    return Batch(["small_gt", "wide_gt", "small_gt_again"], rgb, depth, torch.zeros(3, 1, S, S, dtype=torch.float64),
                 [np.zeros(hw, np.uint8) for hw in GT_SIZES])


def picked_rgbd(logits: Tensor) -> list[bool]:
    return [bool((row != -3).any()) for row in logits]


def test_the_case_decides_differently_at_network_and_gt_size() -> None:
    model = checkerboard_d3net()
    assert [official_ddu_keeps_rgbd(model, hw) for hw in GT_SIZES] == [True, False, True]
    assert not official_ddu_keeps_rgbd(model, (S, S))


def test_scoring_decides_at_each_images_gt_size(batch: Batch) -> None:
    model = checkerboard_d3net()
    with torch.no_grad():
        logits = TASK.forward(model, batch.rgb, batch.depth, batch)
        at_network_size = model(batch.rgb, batch.depth)
    assert picked_rgbd(logits) == [official_ddu_keeps_rgbd(model, hw) for hw in GT_SIZES] == [True, False, True]
    assert picked_rgbd(at_network_size) == [False, False, False]


def test_attacked_view_and_its_copies_are_the_scored_function(batch: Batch) -> None:
    model = checkerboard_d3net()
    space = TASK.attack_space(batch, ThreatModel(modality="rgbd"))
    view = TASK.attacked_model(model, space, batch)
    u = space.initial()
    with torch.no_grad():
        scored = TASK.forward(model, batch.rgb, batch.depth, batch)
        torch.testing.assert_close(view(u), scored, rtol=0, atol=0)
        index = torch.tensor([1, 0, 0, 2, 1])
        torch.testing.assert_close(view.copies_of(index)(u[index]), scored[index], rtol=0, atol=0)


def test_runner_passes_gt_sizes_to_the_attack_and_the_scoring(tmp_path: Path, monkeypatch) -> None:
    """A clean and an FGSM cell of d3net-tiny on a folder set with a 90x150 GT: every depurator call
    (crafting and scoring) sees that size."""
    for sub, image in (("RGB", np.full((90, 150, 3), 90, np.uint8)), ("depth", np.full((90, 150), 120, np.uint8)),
                       ("GT", np.zeros((90, 150), np.uint8))):
        (tmp_path / "data" / "NJU2K" / sub).mkdir(parents=True)
        Image.fromarray(image).save(tmp_path / "data" / "NJU2K" / sub / "a.png")
    ckpt = tmp_path / "d3net-tiny.pt"
    torch.save(build_model("d3net-tiny").state_dict(), ckpt)
    (tmp_path / "suite.yaml").write_text("dataset: NJU2K\nbatch_size: 1\nseed: 0\n"
                                         "cells:\n  - {attack: none}\n  - {attack: fgsm, eps: [4/255]}\n")
    seen, depurator = [], D3Net.depth_depurator
    monkeypatch.setattr(D3Net, "depth_depurator",
                        lambda self, a, b, sizes=None: seen.append(sizes) or depurator(self, a, b, sizes))
    run(RunConfig(model="d3net-tiny", ckpt=str(ckpt), suite=str(tmp_path / "suite.yaml"),
                  data_root=str(tmp_path / "data"), results_dir=tmp_path / "results",
                  leaderboard_dir=tmp_path / "leaderboards"))
    assert len(seen) >= 3 and all(sizes == [(90, 150)] for sizes in seen), seen


class PixelwiseSurrogate(SaliencyModel):
    """A 128-px surrogate whose logits depend on every input pixel it sees (1x1 conv)."""

    input_size = 128

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 1, 1)

    def forward(self, rgb: Tensor, depth: Tensor) -> Tensor:
        return self.conv(torch.cat([rgb, depth], 1))


@pytest.mark.parametrize("target_size", [320, 352])
def test_low_resolution_surrogate_passes_gradient_to_every_target_pixel(target_size: int) -> None:
    """Without antialiasing, a bilinear 320 -> 128 shrink reads only some source pixels: 36-47% of them
    would get zero gradient."""
    torch.manual_seed(0)
    rgb, depth = torch.rand(1, 3, target_size, target_size), torch.rand(1, 1, target_size, target_size)
    space = AttackSpace(rgb, depth, ThreatModel(modality="rgbd"))
    view = AttackSpaceModel(PixelwiseSurrogate().eval(), space)
    u = space.initial().requires_grad_(True)
    logits = view(u)
    assert logits.shape == (1, 1, target_size, target_size)
    (grad,) = torch.autograd.grad((logits * torch.randn_like(logits)).sum(), u)
    reached = (grad.abs().amax(1) > 0).float().mean().item()
    assert reached > 0.999, reached
