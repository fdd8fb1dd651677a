"""Tests for models.d3net (D3Net, Fan et al., IEEE TNNLS 2021): official state_dict layout, checkpoint
loading, the depth depurator unit, batching, gradients and post-processing."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from models.d3net import D3Net, d3net_tiny

OFFICIAL_KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "official_keys" / "d3net.txt"
SUBNETS = {"RgbNet": "rgb_net", "RgbdNet": "rgbd_net", "DepthNet": "depth_net"}


def read_official_keys(path: Path) -> dict[str, list[tuple[str, tuple[int, ...]]]]:
    """Sections ``######## <Name>`` of ``index key (shape) dtype`` lines."""
    sections: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    current: list[tuple[str, tuple[int, ...]]] = []
    for line in path.read_text().splitlines():
        if line.startswith("######## "):
            current = sections.setdefault(line.split()[1], [])
        elif line.strip() and not line.startswith("#"):
            match = re.match(r"\s*\d+\s+(\S+)\s+\(([\d, ]*)\)", line)
            assert match, f"unparsed line in {path}: {line!r}"
            shape = tuple(int(n) for n in match.group(2).replace(" ", "").split(",") if n)
            current.append((match.group(1), shape))
    return sections


def tiny_pair(seed: int = 0) -> tuple[D3Net, D3Net]:
    torch.manual_seed(seed)
    source = d3net_tiny()
    torch.manual_seed(seed + 1)
    return source, d3net_tiny()


def wrapped_checkpoints(model: D3Net) -> dict[str, dict]:
    """The official file layout: one ``{'model': state_dict, ...}`` per sub-net, with the numpy metric
    the official trainer stores beside the weights."""
    return {
        name: {
            "model": getattr(model, attr).state_dict(),
            "current_epoch": 29,
            "best_metric": np.array([0.05, 0.9]),
        }
        for name, attr in SUBNETS.items()
    }


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    for (key, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), key


def inputs(
    n: int, size: int = 128, dtype: torch.dtype = torch.float32, seed: int = 0
) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    rgb = torch.rand(n, 3, size, size, generator=g, dtype=dtype)
    return rgb, torch.rand(n, 1, size, size, generator=g, dtype=dtype)


def set_output_bias(subnet: nn.Module, value: float, zero_weight: bool = False) -> None:
    out_conv = subnet.pred_layer.outlayer[0]
    with torch.no_grad():
        out_conv.bias.fill_(value)
        if zero_weight:
            out_conv.weight.zero_()


def test_state_dicts_match_official_layout() -> None:
    official = read_official_keys(OFFICIAL_KEYS)
    model = D3Net()
    assert model.input_size == 224
    for name, attr in SUBNETS.items():
        ours = [(key, tuple(v.shape)) for key, v in getattr(model, attr).state_dict().items()]
        assert ours == official[name], name


def test_tiny_variant_size() -> None:
    model = d3net_tiny()
    assert model.input_size == 128
    assert 300_000 <= sum(p.numel() for p in model.parameters()) <= 2_000_000


def test_load_from_folder_of_wrapped_files(tmp_path: Path) -> None:
    source, target = tiny_pair()
    for name, ckpt in wrapped_checkpoints(source).items():
        torch.save(ckpt, tmp_path / f"{name}.pth")
    target.load_official_checkpoint(tmp_path)
    assert_same_weights(source, target)


def test_load_from_dict_of_plain_or_wrapped_state_dicts() -> None:
    source, target = tiny_pair()
    wrapped = wrapped_checkpoints(source)
    mixed = {
        "RgbNet": wrapped["RgbNet"],
        "RgbdNet": wrapped["RgbdNet"]["model"],
        "DepthNet": wrapped["DepthNet"],
    }
    target.load_official_checkpoint(mixed)
    assert_same_weights(source, target)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    source, target = tiny_pair()
    for name, ckpt in wrapped_checkpoints(source).items():
        if name != "DepthNet":
            torch.save(ckpt, tmp_path / f"{name}.pth")
    with pytest.raises(FileNotFoundError, match="DepthNet.pth"):
        target.load_official_checkpoint(tmp_path)


@pytest.mark.parametrize("defect", ["missing", "extra"])
def test_key_mismatch_names_the_file(tmp_path: Path, defect: str) -> None:
    source, target = tiny_pair()
    ckpts = wrapped_checkpoints(source)
    sd = ckpts["RgbdNet"]["model"]
    if defect == "missing":
        del sd["pred_layer.outlayer.0.bias"]
    else:
        sd["pred_layer.outlayer.1.weight"] = torch.zeros(1)
    for name, ckpt in ckpts.items():
        torch.save(ckpt, tmp_path / f"{name}.pth")
    with pytest.raises(RuntimeError, match=r"(?s)RgbdNet\.pth.*outlayer"):
        target.load_official_checkpoint(tmp_path)


def test_dict_missing_subnet_is_named() -> None:
    source, target = tiny_pair()
    ckpts = wrapped_checkpoints(source)
    del ckpts["RgbNet"]
    with pytest.raises(KeyError, match="RgbNet"):
        target.load_official_checkpoint(ckpts)


def test_forward_shape_and_batch_independence_float64() -> None:
    torch.manual_seed(0)
    model = d3net_tiny().double().eval()
    rgb, depth = inputs(2, dtype=torch.float64)
    with torch.no_grad():
        batched = model(rgb, depth)
        single = torch.cat([model(rgb[i : i + 1], depth[i : i + 1]) for i in range(2)])
        outs = model.training_outputs(rgb, depth)
    assert batched.shape == (2, 1, 128, 128) and batched.dtype == torch.float64
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-12)
    assert [tuple(o.shape) for o in outs] == [(2, 1, 128, 128)] * 3


class DepthAsLogits(nn.Module):
    """Stand-in DepthNet whose map is ~1 where the depth is 1 and ~0 where it is 0."""

    def forward(self, depth3: Tensor) -> Tensor:
        return (depth3[:, :1] - 0.5) * 40


def test_depurator_selects_per_image() -> None:
    torch.manual_seed(0)
    model = d3net_tiny(64).double().eval()
    model.depth_net = DepthAsLogits()
    set_output_bias(model.rgbd_net, 10.0, zero_weight=True)  # S_rgbd ~ 1 everywhere
    rgb, depth = inputs(2, size=64, dtype=torch.float64)
    depth[0], depth[1] = 1.0, 0.0  # image 0: S_depth ~ S_rgbd -> RgbdNet; image 1: far apart -> RgbNet
    with torch.no_grad():
        s_rgb, s_rgbd, _ = model.training_outputs(rgb, depth)
        out = model(rgb, depth)
    assert torch.equal(out[0], s_rgbd[0]) and torch.equal(out[1], s_rgb[1])
    assert not torch.equal(s_rgb[1], s_rgbd[1])


def logits_at_level(level: float, shape: tuple[int, ...] = (1, 1, 8, 8)) -> Tensor:
    """Logits whose sigmoid is (level + 0.5) / 255, i.e. uint8 level ``floor(level)`` officially."""
    p = torch.full(shape, (level + 0.5) / 255, dtype=torch.float64)
    return torch.log(p / (1 - p))


@pytest.mark.parametrize(("gap", "use_rgbd"), [(38, True), (39, False)])
def test_depurator_threshold_on_uint8_maps(gap: int, use_rgbd: bool) -> None:
    # 38/255 = 0.149 < 0.15 <= 39/255 = 0.153; levels are truncated (the +0.5 above must not round up)
    model = d3net_tiny()
    picked = model.depth_depurator(logits_at_level(100), logits_at_level(100 - gap))
    assert picked.tolist() == [use_rgbd]


def test_gradients_reach_rgb_and_depth() -> None:
    torch.manual_seed(0)
    model = d3net_tiny(64).eval()
    set_output_bias(model.rgbd_net, 30.0)  # both maps saturate at 1, so the DDU keeps RgbdNet
    set_output_bias(model.depth_net, 30.0)
    rgb, depth = inputs(2, size=64)
    rgb.requires_grad_(True)
    depth.requires_grad_(True)
    for grad in torch.autograd.grad(model(rgb, depth).sum(), (rgb, depth)):
        assert grad.is_contiguous()  # NCHW layout although the tiny variant runs NHWC inside
        assert torch.isfinite(grad).all() and grad.view(2, -1).abs().sum(dim=1).min() > 0
    for grad in torch.autograd.grad(sum(o.sum() for o in model.training_outputs(rgb, depth)), (rgb, depth)):
        assert grad.abs().sum() > 0


def test_channels_last_equals_default_layout() -> None:
    torch.manual_seed(0)
    nhwc = d3net_tiny(64).double().eval()
    nchw = D3Net(64, backbone_widths=(8, 16, 32, 64, 64), decoder_width=8).double().eval()
    nchw.load_state_dict(nhwc.state_dict())
    rgb, depth = inputs(2, size=64, dtype=torch.float64)
    rgb.requires_grad_(True)
    results = []
    for model in (nhwc, nchw):
        logits = model.training_outputs(rgb, depth)
        results.append((*logits, *torch.autograd.grad(sum(o.sum() for o in logits), rgb)))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_postprocess_matches_official_resize_and_uint8() -> None:
    logits = torch.randn(2, 1, 128, 128, dtype=torch.float64) * 3
    prob = d3net_tiny().postprocess(logits, (90, 150))
    assert prob.shape == (2, 1, 90, 150) and prob.dtype == torch.float64
    assert prob.min() >= 0 and prob.max() <= 1
    expected = [
        (cv2.resize(x[0].sigmoid().numpy(), (150, 90), interpolation=cv2.INTER_LINEAR) * 255).astype(np.uint8)
        for x in logits
    ]
    np.testing.assert_array_equal((prob[:, 0] * 255).round().to(torch.uint8).numpy(), np.stack(expected))
    smooth = d3net_tiny().postprocess(logits, (90, 150), quantize=False)
    assert (smooth - prob).abs().max() < 1 / 255 + 1e-12


def test_forward_gt_sizes_decide_per_image() -> None:
    torch.manual_seed(0)
    model = d3net_tiny(64).double().eval()
    assert model.takes_gt_sizes
    rgb, depth = inputs(3, size=64, dtype=torch.float64)
    sizes = [(200, 300), (48, 40), (200, 300)]
    with torch.no_grad():
        s_rgb, s_rgbd, s_depth = model.training_outputs(rgb, depth)
        out = model(rgb, depth, gt_sizes=sizes)
    picks = model.depth_depurator(s_rgbd, s_depth, sizes)
    torch.testing.assert_close(out, torch.where(picks.view(-1, 1, 1, 1), s_rgbd, s_rgb), rtol=0, atol=0)
    for i, size in enumerate(sizes):
        assert picks[i] == model.depth_depurator(s_rgbd[i : i + 1], s_depth[i : i + 1], [size])[0]
    with pytest.raises(ValueError, match="2 sizes for a batch of 3"):
        model(rgb, depth, gt_sizes=sizes[:2])
