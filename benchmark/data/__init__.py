"""Dataset registry: ``load_dataset("synthetic", split="test")`` or ``load_dataset("NJU2K", root=...)``."""
from __future__ import annotations

from pathlib import Path

from .base import Batch, Sample, make_batch
from .folder import FolderRGBD
from .synthetic import SyntheticRGBD

# The standard RGB-D SOD test sets, read from <root>/<NAME>/{RGB,depth,GT}.
FOLDER_DATASETS = ("NJU2K", "NLPR", "STERE", "DES", "RGBD135", "LFSD", "SIP", "SSD", "DUT-RGBD", "ReDWeb-S")

DATASETS = {"synthetic": SyntheticRGBD, **{name: FolderRGBD for name in FOLDER_DATASETS}}


def load_dataset(name: str, split: str = "test", root: str | Path | None = None) -> SyntheticRGBD | FolderRGBD:
    """Build a dataset by registry name; folder datasets need ``root`` (the folder holding <NAME>/)."""
    if name == "synthetic":
        return SyntheticRGBD(split)
    if root is None:
        raise ValueError(f"dataset {name!r} is read from disk: give its parent folder (DATA=/path)")
    return FolderRGBD(root, name)


__all__ = ["Batch", "DATASETS", "FOLDER_DATASETS", "FolderRGBD", "Sample", "SyntheticRGBD", "load_dataset", "make_batch"]
