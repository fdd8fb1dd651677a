"""Each saliency model's batch equals what its official test loader feeds the network, computed here
straight from the files with PIL, torchvision and OpenCV as the official scripts call them; depth
inversion for datasets stored near = dark."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from benchmark.cli import main
from benchmark.data import FolderRGBD, Sample, load_dataset, make_batch
from benchmark.runner import RunConfig, run
from benchmark.tasks import SaliencyTask
from models import build_model
from models.preprocessing import cv2_linear_float, cv2_linear_uint8_nearest_depth, pil_bilinear

H, W = 90, 150  # non-square, not a multiple of anything the networks use


def _write(root: Path, depth_bits: int) -> FolderRGBD:
    """One pair: a textured uint8 RGB PNG and an 8- or 16-bit depth PNG (16-bit values both below and
    far above 255, so the 8-bit conversions matter)."""
    rng = np.random.default_rng(0)
    for sub in ("RGB", "depth", "GT"):
        (root / "NJU2K" / sub).mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:H, 0:W]
    rgb = np.clip(np.stack([xx * 1.5, yy * 2.5, 128 + 60 * np.sin(xx / 5)], -1) + rng.normal(0, 25, (H, W, 3)), 0, 255)
    depth = rng.integers(0, 256, (H, W)) if depth_bits == 8 else rng.integers(0, 600, (H, W)) + 300 * xx
    cv2.imwrite(str(root / "NJU2K" / "RGB" / "a.png"), rgb.astype(np.uint8)[..., ::-1])
    cv2.imwrite(str(root / "NJU2K" / "depth" / "a.png"), depth.astype(np.uint8 if depth_bits == 8 else np.uint16))
    cv2.imwrite(str(root / "NJU2K" / "GT" / "a.png"), ((xx > 40) * 255).astype(np.uint8))
    return FolderRGBD(root, "NJU2K")


def _bbsnet_official(rgb_path: Path, depth_path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """BBS-Net data.py test_dataset without its normalisation: PIL, Resize((S,S)), ToTensor."""
    t = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()])
    return t(Image.open(rgb_path).convert("RGB")).numpy(), t(Image.open(depth_path).convert("L")).numpy()


def _jldcf_official(rgb_path: Path, depth_path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """JL-DCF dataset.py load_image_test without the mean/std: cv2.imread, float32, cv2.resize, BGR->RGB, /255."""
    def load(path: Path) -> np.ndarray:
        im = cv2.resize(np.array(cv2.imread(str(path)), dtype=np.float32), (size, size))
        return (im[:, :, ::-1] / 255.0).transpose(2, 0, 1)
    depth = load(depth_path)
    assert np.array_equal(depth[0], depth[1]) and np.array_equal(depth[0], depth[2])  # grey read as 3 channels
    return load(rgb_path), depth[:1]


def _d3net_official(rgb_path: Path, depth_path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """D3Net eval.py: PIL convert to numpy, cv2.resize (linear for the 3-D image, nearest for the 2-D
    depth), ToTensor (/255)."""
    img = cv2.resize(np.array(Image.open(rgb_path).convert("RGB")), (size, size), interpolation=cv2.INTER_LINEAR)
    dep = cv2.resize(np.array(Image.open(depth_path).convert("L")), (size, size), interpolation=cv2.INTER_NEAREST)
    return img.transpose(2, 0, 1) / 255.0, dep[None] / 255.0


OFFICIAL = {"bbsnet-tiny": _bbsnet_official, "jldcf-tiny": _jldcf_official, "d3net-tiny": _d3net_official}


@pytest.mark.parametrize("depth_bits", [8, 16])
@pytest.mark.parametrize("name", list(OFFICIAL))
def test_batch_equals_official_test_loader(tmp_path: Path, name: str, depth_bits: int) -> None:
    ds = _write(tmp_path, depth_bits)
    model = build_model(name)
    batch = SaliencyTask().make_batch([ds[0]], model)
    rgb_path, depth_path, _ = ds.pairs[0]
    rgb, depth = OFFICIAL[name](rgb_path, depth_path, model.input_size)
    assert batch.rgb.shape == (1, 3, model.input_size, model.input_size) and batch.gt_sizes == [(H, W)]
    np.testing.assert_allclose(batch.rgb[0].numpy(), rgb, rtol=0, atol=1e-6)
    np.testing.assert_allclose(batch.depth[0].numpy(), depth, rtol=0, atol=1e-6)


@pytest.mark.parametrize("loader", [pil_bilinear, cv2_linear_float, cv2_linear_uint8_nearest_depth])
@pytest.mark.parametrize("size", [224, 320, 352])
def test_loaders_at_official_sizes_match_files(tmp_path: Path, loader, size: int) -> None:
    """The official resolutions too, where the resize upsamples this small image."""
    ds = _write(tmp_path, 16)
    official = {pil_bilinear: _bbsnet_official, cv2_linear_float: _jldcf_official,
                cv2_linear_uint8_nearest_depth: _d3net_official}[loader]
    rgb, depth = loader(ds[0].rgb, ds[0].depth, size)
    ref_rgb, ref_depth = official(*ds.pairs[0][:2], size)
    np.testing.assert_allclose(rgb.numpy(), ref_rgb, rtol=0, atol=1e-6)
    np.testing.assert_allclose(depth.numpy(), ref_depth, rtol=0, atol=1e-6)


def test_sixteen_bit_depth_conversions_measured() -> None:
    """Pillow's convert('L') clips 16-bit depth to 255; cv2.imread keeps the high byte."""
    d = np.array([[0, 200, 255, 256, 1000, 65535]], np.uint16)
    _, pil = pil_bilinear(np.zeros((1, 6, 3), np.uint8), d, 6)
    _, cv = cv2_linear_float(np.zeros((1, 6, 3), np.uint8), d, 6)
    assert (pil[0, 0] * 255).round().tolist() == [0, 200, 255, 255, 255, 255]
    assert (cv[0, 0] * 255).round().tolist() == [0, 0, 0, 1, 3, 255]


def test_model_without_official_loader_gets_the_training_resize(toy_model) -> None:
    ds = [Sample("s", np.zeros((20, 30, 3), np.uint8), np.full((20, 30), 300, np.uint16), np.zeros((20, 30), np.uint8))]
    batch = SaliencyTask().make_batch(ds, toy_model)
    torch.testing.assert_close(batch.depth, make_batch(ds, toy_model.input_size).depth)
    assert torch.allclose(batch.depth, torch.tensor(300 / 65535))


def test_bad_array_is_reported_with_the_sample_name() -> None:
    grey = np.zeros((20, 30), np.uint8)
    bad = Sample("scene_7", np.zeros((20, 30, 3), np.float32), grey, grey)
    with pytest.raises(ValueError, match="scene_7: rgb must be"):
        make_batch([bad], 32, pil_bilinear)


@pytest.mark.parametrize("depth_bits", [8, 16])
def test_invert_depth_flips_near_and_far(tmp_path: Path, depth_bits: int) -> None:
    ds = _write(tmp_path, depth_bits)
    inverted = load_dataset("NJU2K", root=tmp_path, invert_depth=True)[0].depth
    top = 255 if depth_bits == 8 else 65535
    assert inverted.dtype == ds[0].depth.dtype and np.array_equal(inverted.astype(int), top - ds[0].depth.astype(int))
    assert np.array_equal(load_dataset("NJU2K-rgb2depth", root=tmp_path, invert_depth=True).base[0].depth, inverted)
    with pytest.raises(ValueError, match="folder datasets only"):
        load_dataset("synthetic", invert_depth=True)


def test_invert_depth_reaches_the_run_config(monkeypatch) -> None:
    seen = []
    monkeypatch.setattr("benchmark.runner.run", seen.append)
    main(["run", "--model", "jldcf", "--dataset", "NJU2K", "--data", "/data", "--invert-depth"])
    main(["run", "--model", "jldcf"])
    assert [cfg.invert_depth for cfg in seen] == [True, False]


def test_invert_depth_is_in_the_run_config_hash(tmp_path: Path) -> None:
    """A clean cell of an untrained d3net-tiny on the folder set, with and without inversion: two runs."""
    _write(tmp_path / "data", 8)
    ckpt = tmp_path / "d3net-tiny.pt"
    torch.manual_seed(0)
    torch.save(build_model("d3net-tiny").state_dict(), ckpt)
    (tmp_path / "clean.yaml").write_text("dataset: NJU2K\nbatch_size: 1\nseed: 0\ncells:\n  - {attack: none}\n")
    runs = [run(RunConfig(model="d3net-tiny", ckpt=str(ckpt), suite=str(tmp_path / "clean.yaml"),
                          data_root=str(tmp_path / "data"), invert_depth=invert, results_dir=tmp_path / "results",
                          leaderboard_dir=tmp_path / "leaderboards"))[0] for invert in (False, True)]
    assert runs[0] != runs[1]
    manifests = [json.loads((r / "manifest.json").read_text()) for r in runs]
    assert [m["invert_depth"] for m in manifests] == [False, True]
