"""What every dataset yields, and how samples become network-resolution batches."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from models.preprocessing import InputLoader


@dataclass
class Sample:
    """One RGB-D image pair with its GT, at the dataset's own resolution.

    rgb: (H,W,3) uint8; depth: (H,W) uint8 or uint16 (near = bright); gt: (H,W) uint8 in {0..255}.
    """

    name: str
    rgb: np.ndarray
    depth: np.ndarray
    gt: np.ndarray


@dataclass
class Batch:
    """Samples resized to the network resolution S; GTs kept at their own size for the metrics."""

    names: list[str]
    rgb: Tensor  # (N,3,S,S) in [0,1]
    depth: Tensor  # (N,1,S,S) in [0,1]
    target: Tensor  # (N,1,S,S) binary GT at S: what an attack moves the prediction away from
    gts: list[np.ndarray]  # uint8 GTs at their original resolution

    @property
    def gt_sizes(self) -> list[tuple[int, int]]:
        """(H, W) of each image's GT: where the official evaluation scores (and D3Net decides)."""
        return [(gt.shape[0], gt.shape[1]) for gt in self.gts]

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> "Batch":
        return Batch(self.names, self.rgb.to(device, dtype), self.depth.to(device, dtype),
                     self.target.to(device, dtype), self.gts)


def _unit(a: np.ndarray) -> np.ndarray:
    """Integer image to float32 in [0,1] by its dtype's range."""
    return a.astype(np.float32) / float(np.iinfo(a.dtype).max) if a.dtype.kind in "ui" else a.astype(np.float32)


def resize(x: Tensor, size: int) -> Tensor:
    """Bilinear resize of an (N,C,H,W) batch to (S,S); identity when already that size."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def _load(sample: Sample, size: int, loader: InputLoader) -> tuple[Tensor, Tensor]:
    """(1,3,S,S) RGB and (1,1,S,S) depth of one sample by a model's official loader; bad arrays are
    reported with the sample's name."""
    try:
        rgb, depth = loader(sample.rgb, sample.depth, size)
    except ValueError as e:
        raise ValueError(f"{sample.name}: {e}") from e
    return rgb[None], depth[None]


def make_batch(samples: Sequence[Sample], size: int, loader: InputLoader | None = None) -> Batch:
    """Stack samples into a batch at network resolution ``size``: RGB and depth by ``loader`` (a model's
    official test loader, ``models/preprocessing.py``), by default by our own float bilinear resize (what
    the tiny variants are trained on); the attack target by a bilinear resize of the GT, thresholded."""
    if loader is None:
        rgb = [resize(torch.from_numpy(_unit(s.rgb)).permute(2, 0, 1)[None], size) for s in samples]
        depth = [resize(torch.from_numpy(_unit(s.depth))[None, None], size) for s in samples]
    else:
        rgb, depth = zip(*(_load(s, size, loader) for s in samples))
    gt = [resize(torch.from_numpy(_unit(s.gt))[None, None], size) for s in samples]
    return Batch(
        names=[s.name for s in samples],
        rgb=torch.cat(rgb),
        depth=torch.cat(depth),
        target=(torch.cat(gt) > 0.5).float(),
        gts=[s.gt for s in samples],
    )
