"""Dataset registry: ``load_dataset("synthetic", split="test")``, ``load_dataset("NJU2K", root=...)``,
``load_dataset("shapes")``, ``load_dataset("synthetic-rgb2depth")``; any other name with a root is an
RGB-D set when its folders say so (``RGB``/``Image``, ``depth``, ``GT``/``Mask``: ``folder.LAYOUT``), else
an ImageFolder zero-shot set."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import Batch, Sample, make_batch
from .folder import FolderRGBD, rgbd_folders
from .labelled import CaptionRetrieval, FolderClassification, LabelledBatch, PairRetrieval, make_labelled_batch
from .shapes import CaptionedShapes
from .synthetic import SyntheticRGBD

# The standard RGB-D SOD test sets, read from <root>/<NAME>/{RGB,depth,GT}.
FOLDER_DATASETS = ("NJU2K", "NLPR", "STERE", "DES", "RGBD135", "LFSD", "SIP", "SSD", "DUT-RGBD", "ReDWeb-S")

DATASETS = {
    "synthetic": SyntheticRGBD,  # saliency, generated
    "shapes": CaptionedShapes,  # zero-shot classification, generated with captions
    "shapes-captions": CaptionRetrieval,  # image -> text retrieval on shapes
    **{name: FolderRGBD for name in FOLDER_DATASETS},
    "<RGBD>-rgb2depth": PairRetrieval,  # RGB -> depth retrieval on synthetic or an RGB-D folder set
    "<RGBD>-depth2rgb": PairRetrieval,  # depth -> RGB
    "<NAME>": FolderClassification,  # zero-shot on <root>/<NAME>/<class>/<image>
}
PAIR_SUFFIXES = {"-rgb2depth": "rgb", "-depth2rgb": "depth"}


def _without_pair_suffix(name: str) -> str:
    """The RGB-D dataset under an RGB-depth retrieval name ("NJU2K-rgb2depth" -> "NJU2K"); others as they are."""
    return next((name.removesuffix(s) for s in PAIR_SUFFIXES if name.endswith(s)), name)


def has_train_split(name: str) -> bool:
    """The generated datasets have train and test splits; folder datasets are test sets only."""
    return _without_pair_suffix(name) in ("synthetic", "shapes", "shapes-captions")


def load_dataset(name: str, split: str = "test", root: str | Path | None = None, invert_depth: bool = False) -> Any:
    """Build a dataset by registry name; folder datasets need ``root`` (the folder holding <NAME>/).
    ``invert_depth``: an RGB-D folder dataset stores depth near = dark (see ``FolderRGBD``)."""
    if invert_depth and has_train_split(name):
        raise ValueError(f"dataset {name!r}: invert_depth applies to RGB-D folder datasets only")
    if name == "synthetic":
        return SyntheticRGBD(split)
    if name == "shapes":
        return CaptionedShapes(split)
    if name == "shapes-captions":
        return CaptionRetrieval(CaptionedShapes(split))
    for suffix, query in PAIR_SUFFIXES.items():
        if name.endswith(suffix):
            base = load_dataset(name.removesuffix(suffix), split, root, invert_depth)
            if base.task != "saliency":
                raise ValueError(f"dataset {name!r}: RGB-depth retrieval needs an RGB-D dataset, "
                                 f"{name.removesuffix(suffix)!r} is not one")
            return PairRetrieval(base, query)
    if root is None:
        raise ValueError(f"dataset {name!r} is read from disk: give its parent folder (DATA=/path)")
    folder = Path(root) / name
    if name in FOLDER_DATASETS or (folder.is_dir() and rgbd_folders(folder) is not None):
        return FolderRGBD(root, name, invert_depth)
    if invert_depth:
        raise ValueError(f"dataset {folder}: invert_depth applies to RGB-D folder datasets only; this one has no "
                         f"RGB, depth and GT folders")
    return FolderClassification(root, name)


__all__ = ["Batch", "CaptionRetrieval", "CaptionedShapes", "DATASETS", "FOLDER_DATASETS", "FolderClassification",
           "FolderRGBD", "LabelledBatch", "PairRetrieval", "Sample", "SyntheticRGBD", "has_train_split", "load_dataset", "make_batch",
           "make_labelled_batch"]
