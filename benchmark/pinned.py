"""Pinned reference weights: the checkpoints `make bench` uses for the embedded variants, committed in
``models/weights/`` and listed in ``models/weights/pinned.json`` (name -> file, sha256, the recipe that
trained it, its test scores, the target a retrain must reach, why it is small enough for git), the way
RobustBench lists its models. Every clone benchmarks the same bytes, so leaderboard rows compare across
machines; ``make train MODEL=... PIN=1`` retrains one and, if it reaches its target, replaces it.

A variant fine-tuned from another with part of it frozen (clip-tiny-tecoa: only the image tower) is
pinned as the tensors that differ from its base's pinned weights; its full checkpoint is composed once
into the local cache."""
from __future__ import annotations

import json
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from benchmark.metrics import HIGHER_IS_BETTER
from benchmark.provenance import REPO, sha256_file
from benchmark.results import atomic_write_text
from models.base import load_state_dict_file

WEIGHTS = REPO / "models" / "weights"
REGISTRY = WEIGHTS / "pinned.json"


@dataclass(frozen=True)
class PinnedWeights:
    name: str
    file: str  # in the registry's folder
    sha256: str
    recipe: str  # id of the recipe that trained it
    test: dict[str, float]  # its scores on the embedded test split, as its trainer measures them
    target: dict[str, float] = field(default_factory=dict)  # what a retrain must reach (a bound per score)
    why: str = ""  # why the file is small enough to keep in git
    base: str = ""  # a pinned variant whose weights fill in the tensors this file leaves out
    base_sha256: str = ""  # ... and the sha256 of those weights

    def label(self) -> str:
        """The leaderboard's checkpoint column: the recipe and the weights' sha256 prefix."""
        return weights_label(self.recipe, self.sha256)


def weights_label(recipe_id: str, sha256: str) -> str:
    return f"recipe-{recipe_id}@{sha256[:8]}"


def registry(path: Path | None = None) -> dict[str, PinnedWeights]:
    """The registry at ``path`` (default: ``REGISTRY``)."""
    path = path or REGISTRY
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text())
        return {name: PinnedWeights(name=name, **entry) for name, entry in entries.items()}
    except (json.JSONDecodeError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: not a pinned-weights registry ({e})") from e


def pinned_weights(name: str, path: Path | None = None) -> tuple[PinnedWeights, Path] | None:
    """The pinned entry of ``name`` and its verified file, or None if ``name`` has none. A file that is
    missing or whose sha256 differs from the registry's is an error naming the file."""
    path = path or REGISTRY
    entry = registry(path).get(name)
    if entry is None:
        return None
    file = path.parent / entry.file
    if not file.is_file():
        raise FileNotFoundError(f"{file}: pinned weights of {name} listed in {path} are missing")
    digest = sha256_file(file)
    if digest != entry.sha256:
        raise ValueError(f"{file}: sha256 {digest[:12]}... differs from {entry.sha256[:12]}... in {path} "
                         f"(a changed or corrupt file; `make train MODEL={name} PIN=1` re-pins it)")
    return entry, file


def compose(entry: PinnedWeights, file: Path, cache: Path) -> Path:
    """The full checkpoint of a pinned entry with a ``base``: the base's pinned state_dict updated with the
    entry's tensors, written once to ``cache``; an error if the base was re-pinned since."""
    base_entry, base_file = pinned_weights(entry.base, file.parent / REGISTRY.name)
    if base_entry.sha256 != entry.base_sha256:
        raise ValueError(f"{file}: pinned against {entry.base}@{entry.base_sha256[:8]}, which is now "
                         f"@{base_entry.sha256[:8]}; `make train MODEL={entry.name} PIN=1` re-pins it")
    out = cache / f"{entry.name}@{entry.sha256[:8]}.pt"
    if out.is_file():
        return out
    state, own = load_state_dict_file(base_file), load_state_dict_file(file)
    if set(own) - set(state):
        raise ValueError(f"{file}: tensors {sorted(set(own) - set(state))[:3]} are not in {entry.base}'s weights")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    torch.save(state | own, tmp)
    tmp.replace(out)
    return out


def missed_targets(scores: dict[str, float], target: dict[str, float]) -> list[str]:
    """The scores that miss their target: below it, or above it for a lower-is-better metric (MAE)."""
    missed = []
    for metric, bound in target.items():
        value = scores.get(metric, float("nan"))
        lower_is_better = HIGHER_IS_BETTER.get(metric) is False
        if not (value <= bound if lower_is_better else value >= bound):
            missed.append(f"{metric} {value:.3f} {'>' if lower_is_better else '<'} {bound}")
    return missed


def pin(name: str, checkpoint: Path, recipe_id: str, test: dict[str, float], target: dict[str, float] | None = None,
        why: str | None = None, base: str | None = None, path: Path | None = None) -> PinnedWeights:
    """Copy ``checkpoint`` into the registry's folder as ``<name>.pt`` (with a ``base``: only its tensors
    that differ from the base's pinned ones) and record it; the target, the size note and the base stay
    those of the entry it replaces unless given."""
    path = path or REGISTRY
    entries = registry(path)
    old = entries.get(name)
    target = target if target is not None else (old.target if old else None)
    why = why if why is not None else (old.why if old else None)
    base = base if base is not None else (old.base if old else "")
    if target is None or why is None:
        raise ValueError(f"{name} has no entry in {path}: give its target and why it is small enough for git")
    file = path.parent / f"{name}.pt"
    tmp = file.with_suffix(".tmp")
    base_sha256 = ""
    if base:
        base_entry, base_file = pinned_weights(base, path)
        base_state, state = load_state_dict_file(base_file), load_state_dict_file(checkpoint)
        torch.save({k: v for k, v in state.items() if k not in base_state or not torch.equal(v, base_state[k])}, tmp)
        base_sha256 = base_entry.sha256
    else:
        shutil.copyfile(checkpoint, tmp)
    tmp.replace(file)
    entries[name] = PinnedWeights(name, file.name, sha256_file(file), recipe_id,
                                  {k: round(v, 4) for k, v in test.items()}, target, why, base, base_sha256)
    atomic_write_text(path, json.dumps({n: {k: v for k, v in asdict(e).items() if k != "name" and v != ""}
                                        for n, e in sorted(entries.items())}, indent=2) + "\n")
    print(f"[pinned] {name}: {file} ({file.stat().st_size / 1e6:.1f} MB, {entries[name].label()})", file=sys.stderr)
    return entries[name]
