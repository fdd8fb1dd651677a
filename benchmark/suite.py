"""Suites: YAML grids of benchmark cells (attack x threat model), expanded and hashed."""
from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from attacks import ATTACKS, ThreatModel
from attacks.ensemble import ensemble_members
from defenses import build_defense
from models import MODELS

SUITES_DIR = Path(__file__).parent / "suites"
EXPANDED = ("eps", "eps_depth", "modality", "surrogate", "defense", "eval")
CELL_KEYS = {"attack", "norm", "eps", "eps_depth", "modality", "steps", "rel_step", "queries", "surrogate", "images",
             "datasets", "params", "defense", "eval"}
EVALS = ("oblivious", "adaptive")
EOT_SAMPLES = 4  # default EOT draws of an adaptive attack on a randomized defense (a cell's params.eot)


def defense_label(defense: dict[str, Any] | None) -> str:
    """A cell's defense as a leaderboard row names it: ``jpeg(modality=rgb,quality=75)``, or ``none``."""
    if defense is None:
        return "none"
    params = ",".join(f"{k}={v}" for k, v in sorted(defense.items()) if k != "name")
    return f"{defense['name']}({params})"


@dataclass(frozen=True)
class Cell:
    """One benchmark cell: an attack under one threat model, crafted on the benchmarked model itself
    (white-box) or on a ``surrogate`` model (or several joined by '+': an ensemble) and transferred."""

    attack: str
    threat: ThreatModel
    params: dict[str, Any] = field(default_factory=dict)
    surrogate: str | None = None
    images: int | None = None  # only the first `images` test images (for slow black-box attacks)
    datasets: tuple[str, ...] | None = None  # only on these of the suite's datasets (default: all)
    # a defense in front of the model: its registry name and every constructor argument, and how the
    # attack treats it: "oblivious" (crafted on the undefended model) or "adaptive" (on model o defense,
    # BPDA where it is not differentiable, EOT over params.eot draws where it is randomized). With no
    # defense, "adaptive" attacks a model's built-in defense (D3Net's depth depurator) through its
    # ``adaptive_view``.
    defense: dict[str, Any] | None = None
    eval: str | None = None

    def spec(self) -> dict[str, Any]:
        spec = {"attack": self.attack, **self.threat.to_dict(), "params": self.params}
        optional = {"surrogate": self.surrogate, "images": self.images,
                    "datasets": list(self.datasets) if self.datasets else None,
                    "defense": self.defense, "eval": self.eval}
        return {**spec, **{k: v for k, v in optional.items() if v is not None}}

    @property
    def defense_label(self) -> str:
        return defense_label(self.defense)

    def undefended(self) -> Cell:
        """This cell without its defense (and its EOT draws)."""
        return replace(self, defense=None, eval=None, params={k: v for k, v in self.params.items() if k != "eot"})

    @property
    def crafting(self) -> Cell:
        """The cell whose attack this one's is: itself when adaptive, else the undefended cell (an oblivious
        attack never sees the defense, so it shares the undefended cell's seed, fit and inputs)."""
        return self if self.eval == "adaptive" else self.undefended()

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
    leaderboard: str | None = None  # its rows go to leaderboards/<task>-<leaderboard>.csv (default: <task>.csv)


def _number(v: Any) -> float:
    try:
        return float(Fraction(str(v)))
    except (ValueError, ZeroDivisionError) as e:
        raise ValueError(f"not a number or fraction: {v!r}") from e


def fmt_eps(e: float) -> str:
    """An eps as a suite writes it: ``8/255`` where it is a multiple of 1/255, else the number."""
    f = Fraction(e).limit_denominator(255)
    return "0" if e == 0 else (f"{f.numerator}/255" if f.denominator == 255 and abs(float(f) - e) < 1e-6 else f"{e:g}")


def _expand(entry: dict[str, Any], where: str) -> list[Cell]:
    unknown = set(entry) - CELL_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; allowed {sorted(CELL_KEYS)}")
    name = entry.get("attack")
    if name not in ATTACKS:
        raise ValueError(f"{where}: unknown attack {name!r}; see `python -m benchmark list attacks`")
    lists = {k: entry[k] if isinstance(entry[k], list) else [entry[k]] for k in EXPANDED if k in entry}
    if "defense" in lists:  # a YAML alias of a list of defenses inside a list: [none, *all] reads [none, [...]]
        lists["defense"] = [d for v in lists["defense"] for d in (v if isinstance(v, list) else [v])]
    cells = []
    for combo in itertools.product(*lists.values()) if lists else [()]:
        values = dict(zip(lists, combo))
        try:
            threat = _threat(name, entry, values)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from e
        images = int(entry["images"]) if "images" in entry else None
        surrogate = values.get("surrogate")
        if surrogate is not None:
            members = ensemble_members(str(surrogate))
            unknown = [m for m in members if m not in MODELS]
            if unknown or len(set(members)) < len(members):
                raise ValueError(f"{where}: surrogate {surrogate!r}: a registered model, or several joined by '+' "
                                 f"(each once){f'; unknown {unknown}' if unknown else ''}")
        datasets = entry.get("datasets")
        if datasets is not None and (not isinstance(datasets, list) or not all(isinstance(d, str) for d in datasets)):
            raise ValueError(f"{where}: 'datasets' is a list of dataset names, got {datasets!r}")
        try:
            defense, evaluation, params = _defense(name, values, dict(entry.get("params", {})))
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from e
        cells.append(Cell(name, threat, params, surrogate, images,
                          tuple(datasets) if datasets else None, defense, evaluation))
    return cells


def _defense(attack: str, values: dict[str, Any], params: dict[str, Any]
             ) -> tuple[dict[str, Any] | None, str | None, dict[str, Any]]:
    """A cell's defense (built once here, so an unknown name or param fails at load), its eval, and its
    params with the EOT draws recorded where an adaptive attack meets a randomized defense."""
    spec, evaluation = values.get("defense"), values.get("eval")
    if evaluation is not None and evaluation not in EVALS:
        raise ValueError(f"eval is one of {list(EVALS)}, not {evaluation!r}")
    if spec in (None, "none"):
        # no defense: oblivious is the plain white-box cell; adaptive attacks a built-in defense
        return None, (None if attack == "none" or evaluation == "oblivious" else evaluation), params
    spec = {"name": spec} if isinstance(spec, str) else dict(spec) if isinstance(spec, dict) else {}
    if not isinstance(spec.get("name"), str):
        raise ValueError(f"defense is a registry name or a mapping with a 'name', got {values.get('defense')!r}")
    name = spec.pop("name")
    defense = build_defense(name, **spec)
    if attack == "none":  # the clean cell of a defense: nothing is crafted
        evaluation = None
    elif evaluation is None:
        raise ValueError(f"a cell with defense {name!r} needs eval: oblivious or adaptive")
    if evaluation == "adaptive" and defense.randomized and not getattr(ATTACKS[attack], "black_box", False):
        params = {"eot": EOT_SAMPLES, **params}  # a black-box attack's queries each see one draw
    return {"name": name, **defense.config()}, evaluation, params


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


def suite_path(name_or_path: str) -> Path:
    """``benchmark/suites/<name>.yaml`` for a name, the path itself for a path."""
    path = Path(name_or_path)
    return SUITES_DIR / f"{name_or_path}.yaml" if not path.suffix else path


def load_suite(name_or_path: str) -> Suite:
    """A suite by name (``benchmark/suites/<name>.yaml``) or by path; errors name the file."""
    path = suite_path(name_or_path)
    if not path.is_file():
        known = sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"suite not found: {path} (built-in suites: {known})")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: invalid YAML: {e}") from e
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list):
        raise ValueError(f"{path}: expected a mapping with a 'cells' list")
    expanded = [c for i, e in enumerate(raw["cells"]) for c in _expand(e, f"{path}: cells[{i}]")]
    cells = list({c.id: c for c in expanded}.values())  # identical cells once (e.g. a clean cell listed per eval)
    datasets = raw.get("dataset", "synthetic")
    datasets = tuple(datasets) if isinstance(datasets, list) else (datasets,)
    if not datasets or not all(isinstance(d, str) for d in datasets):
        raise ValueError(f"{path}: 'dataset' is a dataset name or a list of them, got {raw.get('dataset')!r}")
    for c in cells:
        if c.datasets and not set(c.datasets) <= set(datasets):
            raise ValueError(f"{path}: cell {c.attack} names datasets {list(c.datasets)} outside the suite's {list(datasets)}")
    table = raw.get("leaderboard")
    if table is not None and (not isinstance(table, str) or not table.replace("-", "_").isidentifier()):
        raise ValueError(f"{path}: 'leaderboard' is a table name suffix (words joined by '-'), got {table!r}")
    return Suite(name=path.stem, datasets=datasets, batch_size=int(raw.get("batch_size", 16)),
                 seed=int(raw.get("seed", 0)), cells=cells, limit=raw.get("limit"), leaderboard=table)


def list_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))
