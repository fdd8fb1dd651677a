"""The results store: ``results/<run>/manifest.json`` and one folder per finished cell.

A cell folder holds ``records.jsonl`` (one line per image: scores and perturbation norms),
``curves.npz`` (per-image curves where the task has them: saliency's F and E curves), ``summary.json`` (dataset scores) and, for patch
attacks, ``adversarial.npz`` (every adversarial image with its true patch mask, for scoring patch
defenses later). It is written under a temporary name and renamed into place, so a killed run leaves
no half-written cell and a rerun skips exactly the finished ones.

A universal attack's fitted perturbation or patch (or AdvGAN's generator) is kept in
``universal/<cell>.pt`` (exact), with a PNG rendering of each modality and a JSON of its metadata.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor


# The process's umask, read once (reading it means setting it, which races with threads creating files).
_UMASK = os.umask(0)
os.umask(_UMASK)


def _temporary_file(path: Path) -> tuple[int, str]:
    """A temporary file beside ``path`` with the mode a plain ``open`` would give (``mkstemp`` makes it 0600,
    and ``os.replace`` would carry that onto tables and checkpoints that others must read)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.fchmod(fd, 0o666 & ~_UMASK)
    return fd, tmp


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace``: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temporary_file(path)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_trained(out: Path, state_dict: dict[str, Tensor], sidecar: dict[str, Any]) -> None:
    """A trained model's ``state_dict`` at ``out`` (written under a temporary name and renamed), and
    ``sidecar`` (model, recipe, seconds, test scores) at ``out.with_suffix(".json")``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    torch.save(state_dict, tmp)
    tmp.replace(out)
    atomic_write_text(out.with_suffix(".json"), json.dumps(sidecar, indent=2))


class RunStore:
    def __init__(self, root: Path):
        self.root = root
        self.cells = root / "cells"

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_text(self.root / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True, default=str))

    def manifest(self) -> dict[str, Any]:
        return json.loads((self.root / "manifest.json").read_text())

    def is_done(self, cell_id: str) -> bool:
        return (self.cells / cell_id / "summary.json").is_file()

    def write_cell(self, cell_id: str, summary: dict[str, Any], records: list[dict[str, Any]],
                   curves: dict[str, np.ndarray], adversarial: dict[str, np.ndarray] | None = None,
                   gallery: dict[str, np.ndarray] | None = None) -> None:
        self.cells.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.cells, prefix=f".{cell_id}."))
        try:
            tmp.chmod(0o777 & ~_UMASK)  # mkdtemp's 0700 would make finished cells private to their writer
            (tmp / "records.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
            if curves:
                np.savez_compressed(tmp / "curves.npz", **curves)
            if adversarial is not None:
                np.savez_compressed(tmp / "adversarial.npz", **adversarial)
            if gallery is not None:
                np.savez_compressed(tmp / "gallery.npz", **gallery)
            (tmp / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
            final = self.cells / cell_id
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def summary(self, cell_id: str) -> dict[str, Any]:
        return json.loads((self.cells / cell_id / "summary.json").read_text())

    def records(self, cell_id: str) -> list[dict[str, Any]]:
        lines = (self.cells / cell_id / "records.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    def _arrays(self, cell_id: str, name: str) -> dict[str, np.ndarray]:
        path = self.cells / cell_id / f"{name}.npz"
        if not path.is_file():
            return {}
        with np.load(path) as z:
            return {k: z[k] for k in z.files}

    def curves(self, cell_id: str) -> dict[str, np.ndarray]:
        return self._arrays(cell_id, "curves")

    def adversarial(self, cell_id: str) -> dict[str, np.ndarray]:
        """A cell's stored adversarial inputs (names, 8-bit rgb, 16-bit depth, bool patch mask); {} if none."""
        return self._arrays(cell_id, "adversarial")

    def gallery(self, cell_id: str) -> dict[str, np.ndarray]:
        """A cell's first images as scored (the report's gallery: ``task.gallery``); {} if none."""
        return self._arrays(cell_id, "gallery")

    def universal_path(self, cell_id: str) -> Path:
        return self.root / "universal" / f"{cell_id}.pt"

    def load_universal(self, cell_id: str) -> Tensor | dict[str, Tensor] | None:
        path = self.universal_path(cell_id)
        return torch.load(path, weights_only=True) if path.is_file() else None

    def write_universal(self, cell_id: str, pert: Tensor | dict[str, Tensor], meta: dict[str, Any]) -> None:
        """Save a fitted universal perturbation (C,H,W), or a fitted network's state_dict (AdvGAN's
        generator): ``.pt`` last, so its presence means complete. PNGs of a perturbation: the RGB channels
        (when attacked) and the depth channel, as 8-bit images; a perturbation that is a difference (UAP)
        is shown about mid-grey, 0.5 + delta / (2 eps)."""
        path = self.universal_path(cell_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2, sort_keys=True, default=str))
        if isinstance(pert, dict):
            self._save_last(path, {k: v.detach().cpu() for k, v in pert.items()})
            return
        shown = pert.detach().cpu().float()
        if meta.get("kind") == "perturbation":
            shown = 0.5 + shown / (2 * max(float(meta["eps"]), 1e-12))
        img = (shown.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        channels = {"rgb": img[..., :3]} if meta["modality"] in ("rgb", "rgbd") else {}
        if meta["modality"] in ("depth", "rgbd"):
            channels["depth"] = img[..., -1]
        for name, a in channels.items():
            Image.fromarray(a).save(path.with_name(f"{cell_id}-{name}.png"))
        self._save_last(path, pert.detach().cpu())

    @staticmethod
    def _save_last(path: Path, obj: Any) -> None:
        fd, tmp = _temporary_file(path)
        os.close(fd)
        torch.save(obj, tmp)
        os.replace(tmp, path)
