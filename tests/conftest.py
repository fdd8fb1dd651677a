"""Shared fixtures: a small toy saliency model (fast), a briefly trained tiny JL-DCF, and clip-tiny and
rgbd-clip trained the way `make bench` trains them on first use, by their shipped recipes cut short
(slow, once per session)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from benchmark.data import SyntheticRGBD, make_batch
from models.base import SaliencyModel


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


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory) -> Path:
    """jldcf-tiny trained briefly with our own trainer: good enough that attacks have something to break."""
    from benchmark.training.saliency import Recipe, train

    out = tmp_path_factory.mktemp("ckpt") / "jldcf-tiny.pt"
    scores = train("jldcf-tiny", out, Recipe(epochs=4, train_images=160))
    assert scores["S"] > 0.6, scores
    return out


def _trained_on_first_use(name: str, cache: Path, **shorter) -> Path:
    """The checkpoint `make bench MODEL=<name>` trains on first use and caches (here in ``cache``), by
    its shipped recipe with the changes in ``shorter``: fewer epochs keep the test session short. What
    the full recipe reaches is its sidecar's business (`make train`), not the unit tests'."""
    from dataclasses import replace

    from benchmark import zoo

    recipe, trainer = zoo.TRAINERS[name]
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(zoo.TRAINERS, name, (replace(recipe, **shorter), trainer))
        return Path(zoo.resolve_model(name, cache=cache).checkpoint_path)


# Shortened recipes, measured on 2 CPU threads: clip-tiny 10 of 16 epochs (251 s instead of ~390 s; zero-shot
# top-1 0.70, caption R@1 0.23; at 6 epochs 0.38: too weak to attack), rgbd-clip 7 of 10 (~270 s instead
# of ~350 s; at 4 epochs its matching head had not learned yet)
CLIP_TINY_EPOCHS = 10
RGBD_CLIP_EPOCHS = 7


@pytest.fixture(scope="session")
def trained_clip_tiny(tmp_path_factory) -> Path:
    """clip-tiny by its shipped recipe cut to CLIP_TINY_EPOCHS epochs."""
    return _trained_on_first_use("clip-tiny", tmp_path_factory.mktemp("clip_tiny"), epochs=CLIP_TINY_EPOCHS)


@pytest.fixture(scope="session")
def trained_rgbd_clip(tmp_path_factory) -> Path:
    """rgbd-clip by its shipped recipe cut to RGBD_CLIP_EPOCHS epochs."""
    return _trained_on_first_use("rgbd-clip", tmp_path_factory.mktemp("rgbd_clip"), epochs=RGBD_CLIP_EPOCHS)


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
