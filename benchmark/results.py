"""The results store: ``results/<run>/manifest.json`` and one folder per finished cell.

A cell folder holds ``records.jsonl`` (one line per image: scores and perturbation norms),
``curves.npz`` (the per-image F and E curves) and ``summary.json`` (dataset scores). It is written
under a temporary name and renamed into place, so a killed run leaves no half-written cell and a
rerun skips exactly the finished ones.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace``: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
                   f_curves: np.ndarray, e_curves: np.ndarray) -> None:
        self.cells.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.cells, prefix=f".{cell_id}."))
        try:
            (tmp / "records.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
            np.savez_compressed(tmp / "curves.npz", f=f_curves, e=e_curves)
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
