"""The headline table, RobustBench-style: one row per (model, checkpoint, dataset, defense) of a run, with
the clean score, the robust score under the task's standard threat, and the worst case per image over
every attack of the run within that threat (the ensemble evaluation AutoAttack reports: an image counts
as robust only if no attack broke it), each with its 95% bootstrap interval, ranked by the worst case.

Standard threat: saliency, PGD-20 at Linf 8/255 on RGB and depth (S-measure); classification, AutoAttack
at the suite's Linf eps (top-1). A defended row takes the adaptive cell where there is one (the
oblivious number is not a robustness claim). The worst case runs over the images the standard cell
scored, and over every cell whose perturbation the standard threat allows: Linf with each attacked
modality's budget at most eps (single-modality, transfer, black-box, universal, oblivious and adaptive
cells alike) and the clean input. Rows come from the raw run folders (``results/<run>``), so
``python -m benchmark summary results/*`` rebuilds them; every run updates its own.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.leaderboard import commit_label, params_label, table_lock
from benchmark.metrics.bootstrap import mean_ci
from benchmark.provenance import stable_seed
from benchmark.results import RunStore, atomic_write_text
from benchmark.suite import defense_label, fmt_eps

STANDARD = {"saliency": {"attack": "pgd", "metric": "S", "eps": 8 / 255, "modality": "rgbd", "steps": 20},
            "classification": {"attack": "autoattack", "metric": "top1"}}
KEY = ["model", "checkpoint", "model_args", "dataset", "defense", "suite", "n_images", "seed"]
SCORES = ("clean", "robust", "worst")
TOL = 1e-9


def _budgets(spec: dict[str, Any]) -> tuple[float, float]:
    """(rgb, depth) Linf budgets a cell's attack used: 0 for a modality it did not attack."""
    m = spec["modality"]
    return (spec["eps"] if m in ("rgb", "rgbd") else 0.0, spec["eps_depth"] if m in ("depth", "rgbd") else 0.0)


def _is_standard(spec: dict[str, Any], task: str) -> bool:
    std = STANDARD[task]
    if spec["attack"] != std["attack"] or spec["norm"] != "linf" or spec.get("surrogate"):
        return False
    if task == "classification":
        return True
    return (spec["modality"] == std["modality"] and spec["steps"] == std["steps"]
            and all(abs(e - std["eps"]) < TOL for e in _budgets(spec)))


def _within(spec: dict[str, Any], eps: float) -> bool:
    return spec["attack"] == "none" or (spec["norm"] == "linf" and max(_budgets(spec)) <= eps + TOL)


def _ci(values: np.ndarray, *seed: object) -> tuple[float, float, float]:
    return (float(values.mean()), *mean_ci(values, stable_seed(*seed)))


def with_interval(value: float, low: float, high: float) -> str:
    """A score and its 95% interval as the tables show them: ``0.577 [0.459, 0.677]``."""
    return f"{value:.3f}" if pd.isna(low) else f"{value:.3f} [{low:.3f}, {high:.3f}]"


def task_of(store: RunStore, specs: list[dict[str, Any]]) -> str | None:
    """The task of a run folder by the score its records carry (None without a finished cell)."""
    for c in specs:
        record = store.records(c["id"])[:1]
        if record:
            return next((t for t, std in STANDARD.items() if std["metric"] in record[0]), None)
    return None


def run_rows(root: Path) -> pd.DataFrame:
    """The headline rows of one run folder (none for a defense group without a standard cell)."""
    store = RunStore(root)
    manifest = store.manifest()
    specs = [c for c in manifest["cells"] if store.is_done(c["id"])]
    task = task_of(store, specs)
    if task is None:
        return pd.DataFrame()
    metric = STANDARD[task]["metric"]
    rows = []
    for label in sorted({defense_label(c.get("defense")) for c in specs}):
        group = [c for c in specs if defense_label(c.get("defense")) == label]
        standard = [c for c in group if _is_standard(c, task)]
        clean = [c for c in group if c["attack"] == "none"]
        if not standard or not clean:
            continue
        # the adaptive cell where there is one, on the most images, at the smallest eps (classification)
        scores = {c["id"]: {r["image"]: r[metric] for r in store.records(c["id"])} for c in group}
        std = min(standard, key=lambda c: (c.get("eval") != "adaptive", -len(scores[c["id"]]), c["eps"]))
        eps = max(_budgets(std))
        images = list(scores[std["id"]])
        counted = [c for c in group if _within(c, eps)]
        if not all(i in scores[clean[0]["id"]] for i in images):
            continue
        clean_s = np.array([scores[clean[0]["id"]][i] for i in images], dtype=float)
        robust = np.array([scores[std["id"]][i] for i in images], dtype=float)
        worst = np.array([min(scores[c["id"]][i] for c in counted if i in scores[c["id"]]) for i in images],
                         dtype=float)
        codes = {commit_label(store.summary(c["id"]).get("code")) for c in counted}
        row = {"task": task, "model": manifest["model"], "checkpoint": manifest["checkpoint"],
               "model_args": params_label(manifest.get("model_args") or {}),
               "dataset": manifest["dataset"], "defense": label, "suite": manifest["suite"],
               "n_images": len(images), "seed": manifest["seed"],
               "threat": f"linf {fmt_eps(eps)}" + (f" {std['modality']}" if task == "saliency" else ""),
               "standard": f"{std['attack']}" + (f" {std.get('eval')}" if std.get("eval") else ""),
               "attacks": sum(c["attack"] != "none" for c in counted), "commit": ", ".join(sorted(codes))}
        for name, values in zip(SCORES, (clean_s, robust, worst)):
            row[name], row[f"{name}_low"], row[f"{name}_high"] = _ci(values, manifest["run"], label, name)
        rows.append(row)
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame, task: str) -> str:
    metric = STANDARD[task]["metric"]
    head = ["rank", "model", "checkpoint", "dataset", "defense", "suite", "images", f"clean {metric}",
            f"robust {metric}", f"worst case {metric}", "attacks", "threat", "standard attack", "commit"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k, r in enumerate(table.itertuples(index=False), 1):
        scores = [with_interval(getattr(r, s), getattr(r, s + "_low"), getattr(r, s + "_high")) for s in SCORES]
        lines.append("| " + " | ".join(map(str, [k, r.model, r.checkpoint, r.dataset, r.defense, r.suite, r.n_images,
                                                  *scores, r.attacks, r.threat, r.standard, r.commit])) + " |")
    return "\n".join(lines) + "\n"


HEADER = """# Headline: {task}

Generated by `python -m benchmark run` (and `python -m benchmark summary RESULTS...`); do not edit. One row
per model, checkpoint, dataset, defense and suite, ranked by the worst case. **clean**: the score on the
images the standard attack scored; **robust**: under the standard threat's attack ({standard}; with a
defense, the adaptive attack); **worst case**: per image, the lowest score over the clean input and every
attack of the suite within that threat (`attacks` of them: other modalities, steps, transfer, black-box,
oblivious and adaptive), then averaged: the ensemble evaluation AutoAttack reports. [low, high]: 95%
bootstrap interval over the images.

"""


def update(directory: Path, new: pd.DataFrame) -> list[Path]:
    """Upsert ``new`` into ``<directory>/<task>-summary.csv`` of each task it has rows of and re-render its
    Markdown (under the table's lock); return the CSV paths."""
    return [_update_task(directory, task, rows.drop(columns="task")) for task, rows in new.groupby("task")] \
        if len(new) else []


def _update_task(directory: Path, task: str, new: pd.DataFrame) -> Path:
    name = f"{task}-summary"
    with table_lock(directory, name):
        path = directory / f"{name}.csv"
        table = new
        if path.is_file():
            old = pd.read_csv(path, keep_default_na=False, dtype={"model_args": str})
            keys = set(map(tuple, new[KEY].astype(str).values))
            old = old[[tuple(k) not in keys for k in old[KEY].astype(str).values]]
            table = pd.concat([old, new], ignore_index=True)
        table = table.sort_values(["worst", "robust", *KEY], ascending=[False, False, *[True] * len(KEY)])
        table = table.round(6).reset_index(drop=True)
        atomic_write_text(path, table.to_csv(index=False, float_format="%.6f"))
        standard = {"saliency": "PGD-20, Linf 8/255, RGB and depth",
                    "classification": "AutoAttack at the suite's Linf eps"}[task]
        atomic_write_text(directory / f"{name}.md", HEADER.format(task=task, standard=standard)
                          + to_markdown(table, task))
        return path
