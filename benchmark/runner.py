"""The benchmark grid: dataset -> model -> attack -> checks -> metrics -> results -> leaderboard.

Every (attack, threat model) cell runs over the whole test set and is stored on its own, so a
killed run resumes where it stopped. Seeds are derived from (suite seed, cell, batch): a cell's
numbers do not depend on which other cells ran before it.
"""
from __future__ import annotations

import hashlib
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from attacks import ATTACKS
from benchmark import leaderboard, plots
from benchmark.checks import ModelTampered, check_budget, model_fingerprint
from benchmark.data import Batch, load_dataset, make_batch
from benchmark.provenance import device_info, git_state, library_versions, sha256_json
from benchmark.results import RunStore
from benchmark.suite import Cell, Suite, load_suite
from benchmark.tasks import TASKS
from benchmark.zoo import ResolvedModel, resolve_model


@dataclass
class RunConfig:
    model: str
    ckpt: str | None = None
    suite: str = "default"
    dataset: str | None = None  # defaults to the suite's
    data_root: str | None = None
    device: str = "cpu"
    model_args: dict[str, Any] | None = None
    results_dir: Path = Path("results")
    leaderboard_dir: Path = Path("leaderboards")


def seed_everything(*parts: object) -> int:
    """Seed torch (torchattacks), numpy (ART) and random from a hash of ``parts``."""
    seed = int(hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:8], 16)
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    return seed


def run_cell(cell: Cell, model: torch.nn.Module, task: Any, batches: list[Batch], suite: Suite,
             fingerprint: str, store: RunStore) -> dict[str, Any]:
    attack = ATTACKS[cell.attack]
    records, f_curves, e_curves, seconds = [], [], [], 0.0
    for bi, b in enumerate(batches):
        seed = seed_everything(suite.seed, cell.id, bi)
        space = task.attack_space(b, cell.threat)
        t0 = time.perf_counter()
        u_adv = attack(task.attacked_model(model, space), space.initial(), b.target, cell.threat, task, **cell.params)
        seconds += time.perf_counter() - t0
        rgb, depth = space.compose(u_adv)
        norms = check_budget(b.names, b.rgb, b.depth, rgb, depth, cell.threat)
        if model_fingerprint(model) != fingerprint:
            raise ModelTampered(f"attack {cell.attack} changed the model's parameters or buffers")
        with torch.no_grad():
            logits = model(rgb, depth)
        for i, (scores, f, e) in enumerate(task.score(model, logits, b)):
            records.append({"image": b.names[i], "seed": seed, **scores,
                            **{k: float(v[i]) for k, v in norms.items()}})
            f_curves.append(f)
            e_curves.append(e)
    metrics = task.summarise(records, np.array(f_curves), np.array(e_curves))
    summary = {"id": cell.id, "cell": cell.spec(), "backend": attack.backend, "n_images": len(records),
               "attack_seconds": round(seconds, 3), "metrics": metrics}
    store.write_cell(cell.id, summary, records, np.array(f_curves), np.array(e_curves))
    return summary


def run(cfg: RunConfig) -> Path:
    """Run (or resume) a suite on one model; update the leaderboard; return the run folder."""
    suite = load_suite(cfg.suite)
    dataset_name = cfg.dataset or suite.dataset
    dataset = load_dataset(dataset_name, "test", cfg.data_root)
    resolved: ResolvedModel = resolve_model(cfg.model, cfg.ckpt, cfg.model_args)
    device = torch.device(cfg.device)
    model = resolved.model.to(device).eval().requires_grad_(False)
    task = TASKS[model.task]()

    n = len(dataset) if suite.limit is None else min(suite.limit, len(dataset))
    dataset_sha = dataset.manifest_sha256()
    config = {"model": resolved.name, "model_args": cfg.model_args or {}, "checkpoint_sha256": resolved.checkpoint_sha256,
              "dataset": dataset_name, "dataset_sha256": dataset_sha, "n_images": n,
              "batch_size": suite.batch_size, "seed": suite.seed, "input_size": model.input_size}
    run_id = f"{resolved.name}-{dataset_name}-{suite.name}-{sha256_json(config)[:8]}"
    store = RunStore(cfg.results_dir / run_id)
    store.write_manifest({**config, "run": run_id, "suite": suite.name, "config_sha256": sha256_json(config),
                          "checkpoint": resolved.checkpoint, "checkpoint_path": resolved.checkpoint_path,
                          "git": git_state(), "libraries": library_versions(), "device": device_info(device),
                          "cells": [c.spec() | {"id": c.id} for c in suite.cells]})

    todo = [c for c in suite.cells if not store.is_done(c.id)]
    done = len(suite.cells) - len(todo)
    print(f"[bench] {run_id}: {len(suite.cells)} cells, {done} already done, {n} images", file=sys.stderr)
    if todo:
        samples = [dataset[i] for i in range(n)]
        batches = [make_batch(samples[i:i + suite.batch_size], model.input_size).to(device)
                   for i in range(0, n, suite.batch_size)]
        fingerprint = model_fingerprint(model)
        for cell in tqdm(todo, desc=f"bench {resolved.name}", unit="cell"):
            run_cell(cell, model, task, batches, suite, fingerprint, store)

    summaries = [store.summary(c.id) for c in suite.cells]
    rows = leaderboard.rows(summaries, model=resolved.name, checkpoint=resolved.checkpoint, dataset=dataset_name)
    table = leaderboard.update(cfg.leaderboard_dir, task.name, rows)
    plots.robustness_curves(rows, store.root / "robustness.png", title=f"{resolved.name} on {dataset_name}")
    print(f"[bench] results: {store.root}\n[bench] leaderboard: {table}", file=sys.stderr)
    return store.root
