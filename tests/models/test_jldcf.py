"""Unit tests for models.jldcf (JL-DCF, Fu et al. CVPR 2020): checkpoint layout, batching, gradients."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import Tensor

from models.jldcf import BACKBONES, JLDCF, jldcf_tiny

OFFICIAL_KEYS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "official_keys"
_KEY_LINE = re.compile(r"^\s*\d+\s+(\S+)\s+\(([^)]*)\)\s+(\w+)\s*$")


def official_keys(backbone: str) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """(key, shape, dtype) of the official state_dict, in order, from the official key list (a test fixture)."""
    path = OFFICIAL_KEYS_DIR / f"jldcf_{backbone}.txt"
    entries = []
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        match = _KEY_LINE.match(line)
        assert match, f"unparsable line in {path.name}: {line!r}"
        key, shape, dtype = match.groups()
        entries.append((key, tuple(int(s) for s in shape.replace(",", " ").split()), getattr(torch, dtype)))
    return entries


def random_official_state_dict(backbone: str) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {key: torch.randn(shape, generator=gen) if dtype.is_floating_point
            else torch.tensor(7, dtype=dtype) for key, shape, dtype in official_keys(backbone)}


def uninitialised(backbone: str) -> JLDCF:
    """A full-size model without paying for random initialisation."""
    with torch.device("meta"):
        model = JLDCF(backbone)
    return model.to_empty(device="cpu")


def rgbd(n: int, size: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, size, size, dtype=dtype, generator=gen),
            torch.rand(n, 1, size, size, dtype=dtype, generator=gen))


@pytest.fixture(scope="module")
def tiny() -> JLDCF:
    torch.manual_seed(0)
    return jldcf_tiny().double().eval()


@pytest.mark.parametrize("backbone", BACKBONES)
def test_state_dict_matches_official_layout(backbone: str) -> None:
    expected = official_keys(backbone)
    with torch.device("meta"):
        model = JLDCF(backbone)
    ours = [(k, tuple(v.shape), v.dtype) for k, v in model.state_dict().items()]
    assert [e[0] for e in ours] == [e[0] for e in expected]
    assert ours == expected
    assert model.input_size == 320


@pytest.mark.parametrize("backbone", ["resnet50", "vgg16"])
def test_strict_load_of_official_layout(backbone: str) -> None:
    sd = random_official_state_dict(backbone)
    model = uninitialised(backbone)
    model.load_official_checkpoint({f"module.{k}": v for k, v in sd.items()})
    loaded = model.state_dict()
    for key in (next(iter(sd)), "score_DCF.score.weight", "upsampling.3.3.weight"):
        assert torch.equal(loaded[key], sd[key])


def test_load_rejects_missing_or_extra_keys(tiny: JLDCF) -> None:
    sd = tiny.state_dict()
    missing = dict(sd)
    del missing["score_JL.score.bias"]
    with pytest.raises(RuntimeError, match="Missing key"):
        jldcf_tiny().load_official_checkpoint(missing)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        jldcf_tiny().load_official_checkpoint({**sd, "JLModule.extra.weight": torch.zeros(1)})


def test_load_from_file_round_trip(tiny: JLDCF, tmp_path: Path) -> None:
    path = tmp_path / "jldcf_tiny.pth"
    torch.save(tiny.state_dict(), path)
    other = jldcf_tiny().double().eval()
    other.load_official_checkpoint(path)
    rgb, depth = rgbd(1, 64)
    torch.testing.assert_close(other(rgb, depth), tiny(rgb, depth), rtol=0, atol=0)


def test_tiny_size_and_shapes(tiny: JLDCF) -> None:
    assert tiny.input_size == 128
    assert 300_000 <= sum(p.numel() for p in tiny.parameters()) <= 2_000_000
    rgb, depth = rgbd(2, tiny.input_size)
    logits = tiny(rgb, depth)
    assert logits.shape == (2, 1, 128, 128) and logits.dtype == torch.float64
    outs = tiny.training_outputs(rgb, depth)
    assert len(outs) == 3 and all(o.shape == (2, 1, 128, 128) for o in outs)
    torch.testing.assert_close(outs[0], logits, rtol=0, atol=0)


def test_batch_equals_single_pairs_tiny(tiny: JLDCF) -> None:
    rgb, depth = rgbd(3, 64)
    batched = tiny(rgb, depth)
    singles = torch.cat([tiny(rgb[i:i + 1], depth[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, singles, rtol=1e-12, atol=1e-12)


def test_batch_equals_single_pairs_resnet50() -> None:
    torch.manual_seed(0)
    model = JLDCF("resnet50", input_size=64).double().eval()
    rgb, depth = rgbd(2, 64)
    with torch.no_grad():
        batched = model(rgb, depth)
        singles = torch.cat([model(rgb[i:i + 1], depth[i:i + 1]) for i in range(2)])
    assert batched.shape == (2, 1, 64, 64)
    torch.testing.assert_close(batched, singles, rtol=1e-12, atol=1e-12)


def test_channels_last_matches_default_layout() -> None:
    torch.manual_seed(0)
    model = jldcf_tiny().double().eval()
    assert model.channels_last
    rgb, depth = rgbd(2, 64)
    nhwc = model(rgb, depth)
    model.channels_last = False
    torch.testing.assert_close(nhwc, model(rgb, depth), rtol=1e-12, atol=1e-12)


def test_input_gradients_nonzero_and_finite(tiny: JLDCF) -> None:
    rgb, depth = rgbd(2, 64)
    rgb.requires_grad_()
    depth.requires_grad_()
    tiny(rgb, depth).sum().backward()
    for grad in (rgb.grad, depth.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
        assert grad.is_contiguous()  # NCHW, even though the tiny model runs in NHWC
    assert (rgb.grad[1].abs().sum() > 0) and (depth.grad[1].abs().sum() > 0)


def test_depth_changes_the_prediction(tiny: JLDCF) -> None:
    rgb, depth = rgbd(1, 64)
    assert not torch.allclose(tiny(rgb, depth), tiny(rgb, 1.0 - depth))


def test_training_step_float32() -> None:
    torch.manual_seed(0)
    model = jldcf_tiny(input_size=64).train()
    rgb, depth = rgbd(2, 64, dtype=torch.float32)
    target = (torch.rand(2, 1, 64, 64) > 0.5).float()
    outputs = model.training_outputs(rgb, depth)
    loss = sum(torch.nn.functional.binary_cross_entropy_with_logits(o, target) for o in outputs)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_postprocess_range_and_size(tiny: JLDCF) -> None:
    logits = tiny(*rgbd(2, 64))
    prob = tiny.postprocess(logits, (97, 143))
    assert prob.shape == (2, 1, 97, 143)
    assert prob.min() >= 0 and prob.max() <= 1
    for p in prob:
        assert p.min() == 0 and p.max() > 1 - 1e-6


def test_invalid_inputs_are_rejected(tiny: JLDCF) -> None:
    rgb, depth = rgbd(1, 64)
    with pytest.raises(ValueError):
        tiny(rgb, depth.expand(-1, 3, -1, -1))
    with pytest.raises(ValueError):
        tiny(rgb[..., :56, :56], depth[..., :56, :56])
    with pytest.raises(ValueError):
        JLDCF("resnet18")
    with pytest.raises(ValueError):
        jldcf_tiny(input_size=100)
