"""Dataset registry: ``load_dataset("synthetic", split="test")``, ``load_dataset("NJU2K", root=...)``,
``load_dataset("shapes")``; any other name with a root is an ImageFolder zero-shot set."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import Batch, Sample, make_batch
from .folder import FolderRGBD
from .labelled import CaptionRetrieval, FolderClassification, LabelledBatch, make_labelled_batch
from .shapes import CaptionedShapes
from .synthetic import SyntheticRGBD

# The standard RGB-D SOD test sets, read from <root>/<NAME>/{RGB,depth,GT}.
FOLDER_DATASETS = ("NJU2K", "NLPR", "STERE", "DES", "RGBD135", "LFSD", "SIP", "SSD", "DUT-RGBD", "ReDWeb-S")

DATASETS = {
    "synthetic": SyntheticRGBD,  # saliency, generated
    "shapes": CaptionedShapes,  # zero-shot classification, generated with captions
    "shapes-captions": CaptionRetrieval,  # image -> text retrieval on shapes
    **{name: FolderRGBD for name in FOLDER_DATASETS},
    "<NAME>": FolderClassification,  # zero-shot on <root>/<NAME>/<class>/<image>
}


def load_dataset(name: str, split: str = "test", root: str | Path | None = None) -> Any:
    """Build a dataset by registry name; folder datasets need ``root`` (the folder holding <NAME>/)."""
    if name == "synthetic":
        return SyntheticRGBD(split)
    if name == "shapes":
        return CaptionedShapes(split)
    if name == "shapes-captions":
        return CaptionRetrieval(CaptionedShapes(split))
    if root is None:
        raise ValueError(f"dataset {name!r} is read from disk: give its parent folder (DATA=/path)")
    return FolderRGBD(root, name) if name in FOLDER_DATASETS else FolderClassification(root, name)


__all__ = ["Batch", "CaptionRetrieval", "CaptionedShapes", "DATASETS", "FOLDER_DATASETS", "FolderClassification",
           "FolderRGBD", "LabelledBatch", "Sample", "SyntheticRGBD", "load_dataset", "make_batch",
           "make_labelled_batch"]
