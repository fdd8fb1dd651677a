"""RGB-D SOD test sets in the standard layout ``<root>/<NAME>/{RGB,depth,GT}``, paired by file stem.
The three folders may carry the other names the benchmarks' downloads use (:data:`LAYOUT`: ``Image`` or
``Imgs`` for RGB, ``Depth``, ``Mask`` for GT, in any letter case), so a set of any name laid out so is
read as an RGB-D set (:func:`rgbd_folders`).

Works for NJU2K, NLPR, STERE, DES (RGBD135), LFSD, SIP, SSD, DUT-RGBD and ReDWeb-S as distributed by
the RGB-D SOD benchmarks. When ``<root>/<NAME>/test.lst`` exists (JL-DCF's list format: one pair per
line, ``<rgb path> <depth path> [<gt path>]`` relative to the dataset folder) it fixes the images and
their order; otherwise every stem present in all three folders is used, sorted.

Depth is expected near = bright (NJU2K, NLPR, ...); ``invert_depth=True`` reads a set stored near = dark
as ``max - d`` (255 for 8-bit maps, 65535 for 16-bit ones).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from .base import Sample

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
# Each role's folder names, in any letter case: the first of each is the standard layout's.
LAYOUT = {"RGB": ("RGB", "Image", "Images", "Imgs"), "depth": ("depth", "Depths"), "GT": ("GT", "Mask", "Masks")}
ACCEPTED = "; ".join(f"{role}: {'/'.join(names)}" for role, names in LAYOUT.items()) + ", any letter case"


def rgbd_folders(folder: Path) -> dict[str, Path] | None:
    """The RGB, depth and GT folders of ``folder`` (role -> path) when it is laid out as an RGB-D set; None
    when none of its folders has a role's name. A set with some roles but not all, or two folders for one
    role, is an error that names what is there and what is accepted."""
    found: dict[str, list[Path]] = {role: [] for role in LAYOUT}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        for role, names in LAYOUT.items():
            if sub.name.lower() in (n.lower() for n in names):
                found[role].append(sub)
    if not any(found.values()):
        return None
    missing = [role for role, subs in found.items() if not subs]
    if missing:
        present = ", ".join(sub.name for subs in found.values() for sub in subs)
        raise ValueError(f"dataset {folder}: has {present} but no {' or '.join(missing)} folder; an RGB-D set "
                         f"needs one folder per role ({ACCEPTED})")
    twice = {role: [sub.name for sub in subs] for role, subs in found.items() if len(subs) > 1}
    if twice:
        raise ValueError(f"dataset {folder}: two folders for one role {twice}; keep one ({ACCEPTED})")
    return {role: subs[0] for role, subs in found.items()}


def _index(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder missing: {folder}")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def read_image(path: Path, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            if mode == "depth":
                # 16-bit depth PNGs (PIL modes "I;16*" or "I") keep their range; others are 8-bit grey.
                if im.mode.startswith("I"):
                    return np.clip(np.array(im), 0, 65535).astype(np.uint16)
                return np.array(im.convert("L"))
            return np.array(im.convert(mode))
    except (OSError, ValueError) as e:
        raise ValueError(f"unreadable image {path}: {e}") from e


class FolderRGBD:
    """A folder dataset; ``FolderRGBD(root, "NJU2K")[i]`` is a :class:`Sample`."""

    task = "saliency"

    def __init__(self, root: str | Path, name: str, invert_depth: bool = False):
        self.root, self.name, self.invert_depth = Path(root) / name, name, invert_depth
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset {name!r} not found: {self.root} is not a folder")
        folders = rgbd_folders(self.root)
        if folders is None:
            raise FileNotFoundError(f"dataset {self.root}: no RGB, depth and GT folders ({ACCEPTED})")
        self.folders = folders
        lst = self.root / "test.lst"
        self.pairs = self._from_list(lst) if lst.is_file() else self._from_stems()
        if not self.pairs:
            raise ValueError(f"dataset {self.root}: no RGB/depth/GT triples found")

    def _from_stems(self) -> list[tuple[Path, Path, Path]]:
        rgb, depth, gt = (_index(self.folders[role]) for role in LAYOUT)
        for stem in sorted(rgb):
            for other, role in ((depth, "depth"), (gt, "GT")):
                if stem not in other:
                    raise FileNotFoundError(f"{rgb[stem]}: no partner file with stem {stem!r} in {self.folders[role]}")
        for other in (depth, gt):
            orphans = sorted(set(other) - set(rgb))
            if orphans:
                raise FileNotFoundError(f"{other[orphans[0]]}: no partner file with stem {orphans[0]!r} in "
                                        f"{self.folders['RGB']}")
        return [(rgb[s], depth[s], gt[s]) for s in sorted(rgb)]

    def _from_list(self, lst: Path) -> list[tuple[Path, Path, Path]]:
        gts = _index(self.folders["GT"])
        pairs = []
        for n, line in enumerate(lst.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise ValueError(f"{lst}:{n}: expected '<rgb> <depth> [<gt>]', got {line!r}")
            rgb, depth = self.root / parts[0], self.root / parts[1]
            gt = self.root / parts[2] if len(parts) > 2 else gts.get(Path(parts[0]).stem)
            for p in (rgb, depth, gt):
                if p is None or not p.is_file():
                    missing = p or f"{Path(parts[0]).stem} in {self.folders['GT'].name}/"
                    raise FileNotFoundError(f"{lst}:{n}: missing file {missing}")
            pairs.append((rgb, depth, gt))
        return pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> Sample:
        rgb_p, depth_p, gt_p = self.pairs[i]
        rgb, depth, gt = read_image(rgb_p, "RGB"), read_image(depth_p, "depth"), read_image(gt_p, "L")
        if self.invert_depth:
            depth = np.iinfo(depth.dtype).max - depth
        for arr, p in ((depth, depth_p), (gt, gt_p)):
            if arr.shape[:2] != rgb.shape[:2]:
                raise ValueError(f"size mismatch: {p} is {arr.shape[1]}x{arr.shape[0]} but {rgb_p} is "
                                 f"{rgb.shape[1]}x{rgb.shape[0]}")
        return Sample(name=rgb_p.stem, rgb=rgb, depth=depth, gt=gt)

    def manifest_sha256(self) -> str:
        """sha256 over the relative paths and bytes of every file used, in order."""
        h = hashlib.sha256()
        for triple in self.pairs:
            for p in triple:
                h.update(str(p.relative_to(self.root)).encode())
                h.update(hashlib.sha256(p.read_bytes()).digest())
        return h.hexdigest()
