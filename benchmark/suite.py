"""Suites: YAML grids of benchmark cells (attack x threat model), expanded and hashed."""
from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from attacks import ATTACKS, ThreatModel

SUITES_DIR = Path(__file__).parent / "suites"
EXPANDED = ("eps", "eps_depth", "modality", "surrogate")
CELL_KEYS = {"attack", "norm", "eps", "eps_depth", "modality", "steps", "rel_step", "queries", "surrogate", "images",
             "datasets",
             "params"}


@dataclass(frozen=True)
class Cell:
    """One benchmark cell: an attack under one threat model, crafted on the benchmarked model itself
    (white-box) or on a ``surrogate`` model and transferred."""

    attack: str
    threat: ThreatModel
    params: dict[str, Any] = field(default_factory=dict)
    surrogate: str | None = None
    images: int | None = None  # only the first `images` test images (for slow black-box attacks)
    datasets: tuple[str, ...] | None = None  # only on these of the suite's datasets (default: all)

    def spec(self) -> dict[str, Any]:
        spec = {"attack": self.attack, **self.threat.to_dict(), "params": self.params}
        optional = {"surrogate": self.surrogate, "images": self.images,
                    "datasets": list(self.datasets) if self.datasets else None}
        return {**spec, **{k: v for k, v in optional.items() if v is not None}}

    @property
    def id(self) -> str:
        return hashlib.sha256(json.dumps(self.spec(), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Suite:
    name: str
    datasets: tuple[str, ...]  # the grid runs on each in turn (one run folder per dataset)
    batch_size: int
    seed: int
    cells: list[Cell]
    limit: int | None = None  # use only the first `limit` images (smoke tests)


def _number(v: Any) -> float:
    try:
        return float(Fraction(str(v)))
    except (ValueError, ZeroDivisionError) as e:
        raise ValueError(f"not a number or fraction: {v!r}") from e


def _expand(entry: dict[str, Any], where: str) -> list[Cell]:
    unknown = set(entry) - CELL_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; allowed {sorted(CELL_KEYS)}")
    name = entry.get("attack")
    if name not in ATTACKS:
        raise ValueError(f"{where}: unknown attack {name!r}; see `python -m benchmark list attacks`")
    lists = {k: entry[k] if isinstance(entry[k], list) else [entry[k]] for k in EXPANDED if k in entry}
    cells = []
    for combo in itertools.product(*lists.values()) if lists else [()]:
        values = dict(zip(lists, combo))
        try:
            threat = _threat(name, entry, values)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from e
        images = int(entry["images"]) if "images" in entry else None
        datasets = entry.get("datasets")
        if datasets is not None and (not isinstance(datasets, list) or not all(isinstance(d, str) for d in datasets)):
            raise ValueError(f"{where}: 'datasets' is a list of dataset names, got {datasets!r}")
        cells.append(Cell(name, threat, dict(entry.get("params", {})), values.get("surrogate"), images,
                          tuple(datasets) if datasets else None))
    return cells


def _default_steps(name: str) -> int:
    """One for single-step attacks, an attack's own ``default_steps`` (AutoAttack: 100), else 10."""
    return 1 if name in ("none", "fgsm", "art-fgm") else getattr(ATTACKS[name], "default_steps", 10)


def _threat(name: str, entry: dict[str, Any], values: dict[str, Any]) -> ThreatModel:
    return ThreatModel(
        norm=entry.get("norm", "linf"),
        eps=_number(values.get("eps", 0)),
        eps_depth=_number(values["eps_depth"]) if "eps_depth" in values else None,
        modality=values.get("modality", "rgbd"),
        steps=int(entry.get("steps", _default_steps(name))),
        rel_step=_number(entry.get("rel_step", 0.25)),
        queries=int(entry["queries"]) if "queries" in entry else None,
    )


def load_suite(name_or_path: str) -> Suite:
    """A suite by name (``benchmark/suites/<name>.yaml``) or by path; errors name the file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SUITES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"suite not found: {path} (built-in suites: {known})")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: invalid YAML: {e}") from e
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list):
        raise ValueError(f"{path}: expected a mapping with a 'cells' list")
    cells = [c for i, e in enumerate(raw["cells"]) for c in _expand(e, f"{path}: cells[{i}]")]
    datasets = raw.get("dataset", "synthetic")
    datasets = tuple(datasets) if isinstance(datasets, list) else (datasets,)
    if not datasets or not all(isinstance(d, str) for d in datasets):
        raise ValueError(f"{path}: 'dataset' is a dataset name or a list of them, got {raw.get('dataset')!r}")
    for c in cells:
        if c.datasets and not set(c.datasets) <= set(datasets):
            raise ValueError(f"{path}: cell {c.attack} names datasets {list(c.datasets)} outside the suite's {list(datasets)}")
    return Suite(name=path.stem, datasets=datasets, batch_size=int(raw.get("batch_size", 16)),
                 seed=int(raw.get("seed", 0)), cells=cells, limit=raw.get("limit"))


def list_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))
