"""Labelled images for classification-task models: zero-shot classification, and retrieval posed as
classification over a gallery (image -> text: each image's own caption is its class; RGB <-> depth: each
image's own partner in the other modality is its class).

A classification dataset yields items with ``name``, the query image (``rgb`` (H,W,3) or ``depth``
(H,W)) and ``label``, names its query modality in ``query``, and says what the model scores queries
against: ``classnames`` and ``templates``, which a CLIP-like model turns into class embeddings (prompt
``template.format(classname)``), or a ``gallery(size)`` of images of the other modality.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from .base import _unit, make_batch, resize
from .folder import IMAGE_SUFFIXES, read_image

PAIR_QUERIES = ("rgb", "depth")
ZERO_SHOT_TEMPLATES = ("a photo of a {}.", "a picture of a {}.", "an image of a {}.")


@dataclass
class LabelledImage:
    """One labelled query image, RGB (H,W,3) or depth (H,W) (uint8/uint16), the class index, and a
    caption where the dataset has one."""

    name: str
    rgb: np.ndarray | None
    label: int
    caption: str = ""
    depth: np.ndarray | None = None


@dataclass
class LabelledBatch:
    """Images at the network resolution S with their labels. A classifier takes one modality: the
    other is None."""

    names: list[str]
    rgb: Tensor | None  # (N,3,S,S) in [0,1]
    depth: Tensor | None  # (N,1,S,S) in [0,1]
    target: Tensor  # (N,) class index

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> LabelledBatch:
        move = (lambda x: None if x is None else x.to(device, dtype))
        return LabelledBatch(self.names, move(self.rgb), move(self.depth), self.target.to(device))


def make_labelled_batch(samples: Sequence[LabelledImage], size: int) -> LabelledBatch:
    """The query images of ``samples`` (RGB or depth, whichever they have) at network resolution."""
    def stack(images: list[np.ndarray | None], channels_last: bool) -> Tensor | None:
        if images[0] is None:
            return None
        x = [torch.from_numpy(_unit(a)) for a in images]
        return torch.cat([resize(t.permute(2, 0, 1)[None] if channels_last else t[None, None], size) for t in x])
    return LabelledBatch([s.name for s in samples], stack([s.rgb for s in samples], True),
                         stack([s.depth for s in samples], False),
                         torch.tensor([s.label for s in samples], dtype=torch.long))


class CaptionRetrieval:
    """Image -> text retrieval on a captioned dataset, as classification: the classes are the split's
    distinct captions (each its own prompt, template "{}"), in order of first appearance, and an image's
    label is the index of its caption, so top-k accuracy is recall@k. Images that share a caption share
    its one gallery entry: a duplicate entry would tie with it exactly, and a tie cannot be scored one way
    by the metric and another by the attacks' argmax."""

    task = "classification"
    query = "rgb"
    templates = ("{}",)

    def __init__(self, base: Any):
        self.base, self.name = base, f"{base.name}-captions"
        captions = [base[i].caption for i in range(len(base))]
        self.classnames = list(dict.fromkeys(captions))
        index = {c: k for k, c in enumerate(self.classnames)}
        self.labels = [index[c] for c in captions]

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> Any:
        return replace(self.base[i], label=self.labels[i])

    def manifest_sha256(self) -> str:
        return hashlib.sha256(f"captions/{self.base.manifest_sha256()}".encode()).hexdigest()


class FolderClassification:
    """Zero-shot test set in the ImageFolder layout ``<root>/<NAME>/<class>/<image>``; class names are
    the folder names with underscores as spaces."""

    task = "classification"
    query = "rgb"
    templates = ZERO_SHOT_TEMPLATES

    def __init__(self, root: str | Path, name: str):
        self.root, self.name = Path(root) / name, name
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset {name!r} not found: {self.root} is not a folder")
        folders = sorted(p for p in self.root.iterdir() if p.is_dir())
        if not folders:
            raise ValueError(f"dataset {self.root}: expected one sub-folder of images per class, found none")
        self.classnames = [p.name.replace("_", " ") for p in folders]
        self.items = [(p, label) for label, folder in enumerate(folders)
                      for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        empty = [f.name for f in folders if not any(p.parent == f for p, _ in self.items)]
        if empty:
            raise ValueError(f"dataset {self.root}: class folder(s) without images: {empty}")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> LabelledImage:
        path, label = self.items[i]
        return LabelledImage(f"{path.parent.name}/{path.stem}", read_image(path, "RGB"), label)

    def manifest_sha256(self) -> str:
        h = hashlib.sha256()
        for path, label in self.items:
            h.update(f"{path.relative_to(self.root)}:{label}:".encode())
            h.update(hashlib.sha256(path.read_bytes()).digest())
        return h.hexdigest()


class PairRetrieval:
    """RGB -> depth (``query="rgb"``) or depth -> RGB retrieval on an RGB-D dataset, as classification:
    the gallery is the split's images of the other modality and a query's label is the index of its own
    partner, so top-k accuracy is recall@k."""

    task = "classification"

    def __init__(self, base: Any, query: str):
        if query not in PAIR_QUERIES:
            raise ValueError(f"RGB-D retrieval: query must be one of {PAIR_QUERIES}, got {query!r}")
        self.base, self.query = base, query
        self.other = "depth" if query == "rgb" else "rgb"
        self.name = f"{base.name}-{query}2{self.other}"

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> LabelledImage:
        s = self.base[i]
        return LabelledImage(s.name, s.rgb if self.query == "rgb" else None, i,
                             depth=s.depth if self.query == "depth" else None)

    def gallery(self, size: int) -> Tensor:
        """The other modality of every pair, (G,C,S,S) in [0,1] at network resolution ``size``."""
        batch = make_batch([self.base[i] for i in range(len(self.base))], size)
        return batch.depth if self.query == "rgb" else batch.rgb

    def manifest_sha256(self) -> str:
        return hashlib.sha256(f"{self.query}2{self.other}/{self.base.manifest_sha256()}".encode()).hexdigest()
