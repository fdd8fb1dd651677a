"""Test-time input loaders: how each official RGB-D SOD test script turns the files of a dataset into the
network-resolution tensors its model sees (depth conversion to 8 bits, resize library and mode).

A loader maps one image pair at the dataset's resolution, ``rgb`` (H,W,3) uint8 and ``depth`` (H,W)
uint8 or uint16 (near = bright, as read from the file), to ``(rgb (3,S,S), depth (1,S,S))`` float32 in
[0,1] at the network resolution S. Normalisation and depth replication stay inside each model's forward,
so attacks perturb these [0,1] pixels. Each saliency model names its loader as ``input_loader``; a
model that names none gets the benchmark's own float bilinear resize (``benchmark.data.make_batch``),
which is also what the tiny variants are trained on.

Facts measured with the pinned Pillow 13.0.0 and OpenCV 4.14: Pillow opens a 16-bit grey PNG as mode
"I;16", and ``convert('L')`` (from "I;16" or "I") clips to [0, 255]: every value above 255 becomes 255.
``cv2.imread(path)`` (IMREAD_COLOR) keeps the high byte, ``v >> 8``, replicated to three channels.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np
import torch
from PIL import Image
from torch import Tensor

InputLoader = Callable[[np.ndarray, np.ndarray, int], tuple[Tensor, Tensor]]


def _check(rgb: np.ndarray, depth: np.ndarray) -> None:
    """What a dataset's ``Sample`` holds: RGB (H,W,3) uint8, depth (H,W) uint8 or uint16."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be (H,W,3) uint8, got {rgb.shape} {rgb.dtype}")
    if depth.ndim != 2 or depth.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"depth must be (H,W) uint8 or uint16, got {depth.shape} {depth.dtype}")


def pil_grey(depth: np.ndarray) -> np.ndarray:
    """``Image.convert('L')`` of the depth file, as official loaders that open it with PIL do: 8-bit
    maps unchanged, 16-bit maps clipped to [0, 255]."""
    return np.asarray(Image.fromarray(depth).convert("L"))


def cv2_imread_grey(depth: np.ndarray) -> np.ndarray:
    """The grey level ``cv2.imread(path)`` gives a depth file: 8-bit maps unchanged, 16-bit maps
    reduced to their high byte."""
    return (depth >> 8).astype(np.uint8) if depth.dtype == np.uint16 else depth


def _chw(a: np.ndarray) -> Tensor:
    """(H,W) or (H,W,C) image in 0..255 -> (C,H,W) float32 in [0,1]."""
    a = a[..., None] if a.ndim == 2 else a
    return torch.from_numpy(a.transpose(2, 0, 1).astype(np.float32)) / 255


def pil_bilinear(rgb: np.ndarray, depth: np.ndarray, size: int) -> tuple[Tensor, Tensor]:
    """BBS-Net (zyjwuyan/BBS-Net, ``data.py`` ``test_dataset``): PIL images, RGB as is and depth by
    ``convert('L')``, each resized to (S,S) by torchvision's ``Resize`` (PIL bilinear on uint8, which
    antialiases when shrinking), then ``ToTensor`` (/255)."""
    _check(rgb, depth)
    resized = [np.asarray(Image.fromarray(a).resize((size, size), Image.Resampling.BILINEAR))
               for a in (rgb, pil_grey(depth))]
    return _chw(resized[0]), _chw(resized[1])


def cv2_linear_float(rgb: np.ndarray, depth: np.ndarray, size: int) -> tuple[Tensor, Tensor]:
    """JL-DCF (jiangyao-scu/JL-DCF-pytorch, ``dataset.py`` ``load_image_test``, used for the image and
    the depth): ``cv2.imread`` (BGR; depth as a grey image replicated to three channels, 16-bit maps
    to their high byte), cast to float32, ``cv2.resize`` to (S,S) with INTER_LINEAR (no rounding, no
    antialiasing), then /255 before the ImageNet normalisation."""
    _check(rgb, depth)
    resized = [cv2.resize(a.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
               for a in (rgb, cv2_imread_grey(depth))]
    return _chw(resized[0]), _chw(resized[1])


def cv2_linear_uint8_nearest_depth(rgb: np.ndarray, depth: np.ndarray, size: int) -> tuple[Tensor, Tensor]:
    """D3Net (DengPingFan/D3NetBenchmark, ``eval.py`` with ``dataloader_rgbdsod.py`` and the ``Resize``
    of ``my_custom_transforms.py``): PIL ``convert('RGB')`` and ``convert('L')`` to numpy, then
    ``cv2.resize`` to (S,S): INTER_LINEAR on the uint8 RGB image (three channels) and INTER_NEAREST on
    the uint8 depth map (two dimensions), then /255."""
    _check(rgb, depth)
    return (_chw(cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR)),
            _chw(cv2.resize(pil_grey(depth), (size, size), interpolation=cv2.INTER_NEAREST)))

