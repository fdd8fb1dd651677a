"""Tests of models.bbsnet: official state_dict layout, strict loading, shapes, batching, gradients."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor

from models.bbsnet import BBSNet, bbsnet_tiny

OFFICIAL_KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "official_keys" / "bbsnet.txt"


def official_key_list() -> list[tuple[str, tuple[int, ...], str]]:
    """(key, shape, dtype) rows of the official listing (a test fixture)."""
    rows = []
    for line in OFFICIAL_KEYS.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        _, key, rest = line.split(maxsplit=2)
        shape_text, dtype = rest.rsplit(maxsplit=1)
        shape = tuple(int(s) for s in shape_text.strip("()").split(",") if s.strip())
        rows.append((key, shape, dtype))
    return rows


def random_official_state_dict(seed: int = 0) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape, dtype in official_key_list():
        if dtype == "int64":
            sd[key] = torch.randint(0, 100, shape, generator=g)
        else:
            sd[key] = torch.rand(shape, generator=g) + 0.5
    return sd


def inputs(n: int, size: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    rgb = torch.rand(n, 3, size, size, generator=g, dtype=dtype)
    return rgb, torch.rand(n, 1, size, size, generator=g, dtype=dtype)


@pytest.fixture(scope="module")
def official_model() -> BBSNet:
    torch.manual_seed(0)
    return BBSNet()


@pytest.fixture
def tiny() -> BBSNet:
    torch.manual_seed(0)
    return bbsnet_tiny()


def test_state_dict_matches_official_keys(official_model: BBSNet) -> None:
    ours = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in official_model.state_dict().items()]
    assert ours == official_key_list()
    assert official_model.input_size == 352


def test_strict_load_of_official_layout(official_model: BBSNet) -> None:
    sd = random_official_state_dict()
    official_model.load_official_checkpoint(sd)
    for key in ("resnet_depth.conv1.weight", "agg1.conv5.bias", "deconv2.2.upsample.1.running_var"):
        assert torch.equal(official_model.state_dict()[key], sd[key])
    official_model.load_official_checkpoint({f"module.{k}": v for k, v in sd.items()})

    missing = dict(sd)
    missing.pop("out1_conv.weight")
    with pytest.raises(RuntimeError, match="Missing key"):
        official_model.load_official_checkpoint(missing)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        official_model.load_official_checkpoint({**sd, "extra.weight": torch.zeros(1)})


def test_official_config_reduced_size_batches_independently(official_model: BBSNet) -> None:
    model = official_model.double().eval()
    rgb, depth = inputs(2, 64, torch.float64)
    with torch.no_grad():
        batched = model(rgb, depth)
        single = torch.cat([model(rgb[i : i + 1], depth[i : i + 1]) for i in range(2)])
    model.float()
    assert batched.shape == (2, 1, 64, 64)
    torch.testing.assert_close(batched, single, rtol=1e-10, atol=1e-12)


def test_tiny_size_and_forward_shape(tiny: BBSNet) -> None:
    assert isinstance(tiny, BBSNet) and tiny.input_size == 128
    assert 300_000 <= sum(p.numel() for p in tiny.parameters()) <= 2_000_000
    rgb, depth = inputs(3, tiny.input_size)
    with torch.no_grad():
        out = tiny.eval()(rgb, depth)
    assert out.shape == (3, 1, 128, 128) and out.dtype == torch.float32


def test_tiny_batch_equals_single_calls_float64(tiny: BBSNet) -> None:
    model = tiny.double().eval()
    rgb, depth = inputs(2, model.input_size, torch.float64)
    with torch.no_grad():
        batched = model(rgb, depth)
        single = torch.cat([model(rgb[i : i + 1], depth[i : i + 1]) for i in range(2)])
    assert batched.dtype == torch.float64
    torch.testing.assert_close(batched, single, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_input_gradients_nonzero_and_finite(tiny: BBSNet, dtype: torch.dtype) -> None:
    model = tiny.to(dtype).eval()
    rgb, depth = inputs(2, model.input_size, dtype)
    rgb.requires_grad_(True)
    depth.requires_grad_(True)
    model(rgb, depth).sum().backward()
    for grad in (rgb.grad, depth.grad):
        assert grad is not None and grad.dtype == dtype
        assert torch.isfinite(grad).all() and grad.abs().max() > 0


def test_training_outputs_are_supervised_maps(tiny: BBSNet) -> None:
    rgb, depth = inputs(2, tiny.input_size)
    outs = tiny.train().training_outputs(rgb, depth)
    assert len(outs) == 2 and all(o.shape == (2, 1, 128, 128) for o in outs)
    target = (torch.rand(2, 1, 128, 128) > 0.5).float()
    loss = sum(torch.nn.functional.binary_cross_entropy_with_logits(o, target) for o in outs)
    loss.backward()
    assert tiny.resnet_depth.conv1.weight.grad is not None
    with torch.no_grad():
        torch.testing.assert_close(tiny.eval().training_outputs(rgb, depth)[1], tiny(rgb, depth))


def test_postprocess_range_and_size(tiny: BBSNet) -> None:
    rgb, depth = inputs(2, tiny.input_size)
    with torch.no_grad():
        prob = tiny.eval().postprocess(tiny(rgb, depth), (90, 70))
    assert prob.shape == (2, 1, 90, 70)
    assert prob.min() >= 0 and prob.max() <= 1
    assert torch.equal(prob.amin(dim=(1, 2, 3)), torch.zeros(2))


def test_input_size_must_be_multiple_of_32() -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        bbsnet_tiny(input_size=100)
