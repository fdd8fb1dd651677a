"""Shared fixtures: a small toy saliency model (fast), and the pinned reference weights of jldcf-tiny,
clip-tiny and rgbd-clip (``models/weights/``: what `make bench` benchmarks; verified by sha256)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from benchmark.allocator import keep_freed_memory
from benchmark.data import SyntheticRGBD, make_batch
from models.base import SaliencyModel


def pytest_configure(config: pytest.Config) -> None:
    keep_freed_memory()  # as `python -m benchmark` does: the tests run the same models


class ToySaliency(SaliencyModel):
    """A 3-layer conv net with BatchNorm: enough for attacks to have gradients to follow."""

    input_size = 48

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                 nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))

    def forward(self, rgb: Tensor, depth: Tensor) -> Tensor:
        return self.net(torch.cat([rgb, depth], 1))


@pytest.fixture(scope="session")
def session_code_state() -> dict:
    from benchmark.provenance import code_state

    return code_state()


@pytest.fixture(autouse=True)
def stable_code_state(session_code_state, monkeypatch) -> None:
    """Runs within the test session see the code state of its start: a run recomputes cells computed by
    other code, and editing the tree while tests run must not look like that."""
    monkeypatch.setattr("benchmark.runner.code_state", lambda: session_code_state)


@pytest.fixture
def toy_model() -> ToySaliency:
    torch.manual_seed(0)
    return ToySaliency().eval().requires_grad_(False)


@pytest.fixture
def toy_batch():
    ds = SyntheticRGBD("test")
    return make_batch([ds[i] for i in range(4)], ToySaliency.input_size)


def _pinned(name: str) -> Path:
    from benchmark.pinned import pinned_weights

    found = pinned_weights(name)
    assert found is not None, f"{name} has no pinned weights"
    return found[1]


@pytest.fixture(scope="session")
def pinned_tiny() -> Path:
    """jldcf-tiny's pinned weights: a trained model for attacks to break."""
    return _pinned("jldcf-tiny")


@pytest.fixture(scope="session")
def pinned_clip_tiny() -> Path:
    return _pinned("clip-tiny")


@pytest.fixture(scope="session")
def pinned_rgbd_clip() -> Path:
    return _pinned("rgbd-clip")


@pytest.fixture
def write_folder_pair():
    """Writes ``<root>/NJU2K/{RGB,GT,depth}/a.*``: a 90x150 random JPEG, an empty GT and a random 8- or
    16-bit depth PNG (the official loaders' parity checks read it both ways)."""
    import numpy as np
    from PIL import Image

    def write(root: Path, depth_bits: int) -> None:
        rng = np.random.default_rng(0)
        for sub in ("RGB", "GT", "depth"):
            (root / "NJU2K" / sub).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (90, 150, 3), dtype=np.uint8)).save(root / "NJU2K" / "RGB" / "a.jpg")
        Image.fromarray(np.zeros((90, 150), np.uint8)).save(root / "NJU2K" / "GT" / "a.png")
        dtype = np.uint8 if depth_bits == 8 else np.uint16
        Image.fromarray(rng.integers(0, 256 if depth_bits == 8 else 2000, (90, 150)).astype(dtype)).save(
            root / "NJU2K" / "depth" / "a.png")
    return write
