"""The poisoning grid (issue 13): CLIP pre-trained on image-caption pairs an attack poisoned
(``attacks/poisoning/``), without and with a training-time defense (``defenses/training.py``), scored by
clean zero-shot accuracy and the attack's success (``benchmark/metrics/poisoning.py``).

A cell is (attack, defense, seed) at the run's poison rate and target class. Per seed, the clean cell
(attack ``none``, defense ``none``) pre-trains on the clean pairs; its success on a backdoor's triggered
test images (on a targeted attack's target images) is that attack's baseline: what the trigger (the
target image) gets without any poison. Every training of a seed starts from the same initialisation
(torch seeded with the seed), with the recipe's streams and the attack's draws seeded by it too.
CleanCLIP's cells fine-tune the (attack, none, seed) model on clean pairs (``defenses/cleanclip.py``:
its ``FINETUNING`` recipe, ``clean_subset`` of the clean train pairs).

Data: the embedded shapes (the first ``pairs`` of the train split; targeted poisoning's target images
from the ``held_out`` train images after them, never trained on; zero-shot evaluation on the test split
over the 8 classes with the default prompt templates), or a researcher's own: an image-caption CSV in
open_clip's layout (tab-separated when its header has a tab, else comma-separated; image paths relative
to the CSV's folder; its first ``pairs`` rows) and a class-folder evaluation set ``<folder>/<class>/<image>``,
from which targeted poisoning draws its target images, as RoCLIP draws them from its validation set.
Images are resized to the model's input size. Poisoned captions name the target in the shapes' own
templates, on real data in the zero-shot prompt templates. Bad input (a missing image, an empty caption,
a rate outside [0, 1], a target not among the evaluation classes, an attack the data cannot support) is an
error before any training, and before anything is written.

Run folder ``<results>/poisoning/<run>/``: ``manifest.json``; ``cells/<attack>-<defense>-s<seed>/`` (a
:class:`RunStore` cell: ``summary.json`` with metrics, recipes, attack and defense params, code and the
per-epoch history; ``records.jsonl``, that history with SafeCLIP's similarity of every pair at each
split); ``models/<attack>-s<seed>.pt`` (the models pre-trained without defense: the baselines' and
CleanCLIP's starting points); ``figures/safeclip.png``. A rerun skips the cells (and reuses the models)
computed by the same code; ``reuse_cells``: by any code.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import torch
from filelock import FileLock
from torch import Tensor
from tqdm import tqdm

from attacks.poisoning import (SHAPES_CAPTIONS, Backdoor, CaptionTemplates, Pairs, PoisonedPairs, Poisoning,
                               build_poisoning)
from benchmark import poisoning_report
from benchmark.data.base import resize
from benchmark.data.folder import read_image
from benchmark.data.labelled import ZERO_SHOT_TEMPLATES, FolderClassification, LabelledImage, make_labelled_batch
from benchmark.data.shapes import CLASSES, GENERATOR_VERSION, CaptionedShapes
from benchmark.executors import ray_actors
from benchmark.leaderboard import params_label
from benchmark.metrics.poisoning import backdoor_success, targeted_success
from benchmark.provenance import code_state, device_info, sha256_file, sha256_json
from benchmark.results import RunStore, save_trained
from benchmark.training.clip import top_k_accuracy, shape_images
from benchmark.training.contrastive import CLIPObjective, ContrastiveRecipe, train_contrastive
from benchmark.training.recipe import HashedRecipe
from defenses.cleanclip import CLEAN_PAIRS, FINETUNING, clean_subset
from defenses.training import build_training_defense
from models import build_model
from models.clip import CLIPZeroShot

# the default grid: one backdoor and targeted poisoning, the two attacks of SafeCLIP's headline claim, so that
# one seed fits 40 minutes on 2 cores (from a clean clone: 9 cells 29 min 9 s; with blended 13 cells 41 min 27 s,
# SafeCLIP's cells 860-880 s each). blended, wanet and label-consistent run by name (--attacks
# badnets,blended,wanet,targeted makes the committed table). WaNet's warp does not take on 32 px images: 0.089
# +- 0.058 success undefended over 3 seeds (clean baseline 0.021)
ATTACKS = ("badnets", "targeted")
DEFENSES = ("none", "safeclip", "roclip", "cleanclip")
SHAPES_TARGET = "star"
EVAL_BATCH = 256


@dataclass(frozen=True)
class PoisonRecipe(HashedRecipe):
    """The budget of every pre-training in the grid (the recipe id of its leaderboard rows): clip-tiny's own
    budget, 6000 pairs x 16 epochs at batch 128 (752 steps). Measured (seed 0, rate 0.03, one torch thread):
    plain CLIP reaches zero-shot top-1 0.94, BadNets succeeds on 0.93 of the triggered test images (0.06 on
    the clean model) and targeted poisoning on 8/8 targets, in 220-260 s a training; SafeCLIP (1.5x the
    epochs) 750-850 s, RoCLIP about 300 s, a CleanCLIP fine-tuning 90 s, two trainings at a time on
    two cores (``workers``; the README gives the default grid's time, measured). At the earlier
    3000 pairs x 10 epochs (240 steps) top-1 was 0.48 and neither attack took (BadNets 0.17 at rate 0.01,
    targeted 0/8)."""

    pairs: int = 6000  # training pairs: the first N
    epochs: int = 16
    batch_size: int = 128
    lr: float = 3e-3
    held_out: int = 256  # shapes: the train images after the first N that targeted poisoning may target
    clean_pairs: int = CLEAN_PAIRS  # CleanCLIP's clean fine-tuning pairs
    data_version: int = GENERATOR_VERSION

    def contrastive(self, seed: int) -> ContrastiveRecipe:
        """The pre-training recipe of a seed."""
        return ContrastiveRecipe(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=seed)


@dataclass
class PoisonConfig:
    """One grid: the model, attacks x defenses x seeds at one rate and target, the budget and the data
    (the embedded shapes, or ``data`` a CSV with ``eval_data`` a class-folder set)."""

    model: str = "clip-tiny"
    model_args: dict[str, str] = field(default_factory=dict)
    attacks: tuple[str, ...] = ATTACKS
    defenses: tuple[str, ...] = DEFENSES
    seeds: tuple[int, ...] = (0,)
    rate: float = 0.03
    target: str | None = None  # default: SHAPES_TARGET on the shapes
    recipe: PoisonRecipe = PoisonRecipe()
    data: str | None = None
    image_col: str = "filepath"
    caption_col: str = "title"
    eval_data: str | None = None
    device: str = "cpu"
    reuse_cells: bool = False
    workers: int = 0  # Ray workers (one torch thread each); 0: the cells one after another in this process
    results_dir: Path = Path("results")
    leaderboard_dir: Path = Path("leaderboards")

    def check(self) -> None:
        """Names, rate, seeds and data options, before anything is loaded; errors name the bad value."""
        for name in self.attacks:  # an unknown name, a rate outside [0, 1] (the target is checked on the data)
            build_poisoning(name, target=SHAPES_TARGET, rate=self.rate)
        for name in self.defenses:
            build_training_defense(name)
        if not self.seeds:
            raise ValueError("the grid needs at least one seed")
        if (self.data is None) != (self.eval_data is None):
            raise ValueError("own data needs both --data (image-caption CSV) and --eval-data (class-folder set)")
        if self.data is not None and self.target is None and self.attacks:
            raise ValueError("own data: name the target class (--target), one of the evaluation set's classes")


@dataclass(frozen=True)
class PoisonData:
    """A grid's data: the clean ``train`` pairs, the labelled ``held_out`` images targeted poisoning draws
    its targets from, the labelled ``test`` images scored zero-shot over ``test.classnames``, the
    ``captions`` poisoned pairs get, and names of the training and evaluation data."""

    train: Pairs
    held_out: Pairs
    test: Pairs
    captions: CaptionTemplates
    name: str
    eval_name: str


def pairs_sha256(pairs: Pairs) -> str:
    """sha256 over the images, captions and labels."""
    h = hashlib.sha256(pairs.images.contiguous().numpy().tobytes())
    h.update("\n".join(pairs.captions).encode())
    if pairs.labels is not None:
        h.update(pairs.labels.numpy().tobytes())
    return h.hexdigest()


def shapes_data(recipe: PoisonRecipe, size: int) -> PoisonData:
    """The embedded shapes: train pairs, the held-out train images after them, the test split."""
    n = recipe.pairs
    images, captions, labels = shape_images(CaptionedShapes("train", n=n + recipe.held_out))
    images = resize(images, size)
    x, test_captions, y = shape_images(CaptionedShapes("test"))
    return PoisonData(Pairs(images[:n], captions[:n], labels[:n], CLASSES),
                      Pairs(images[n:], captions[n:], labels[n:], CLASSES),
                      Pairs(resize(x, size), test_captions, y, CLASSES), SHAPES_CAPTIONS, "shapes", "shapes-test")


def folder_pairs(folder: Path, size: int) -> Pairs:
    """A class-folder set as labelled images (each captioned with its class name)."""
    ds = FolderClassification(folder.parent, folder.name)
    batch = make_labelled_batch([ds[i] for i in range(len(ds))], size)
    return Pairs(batch.rgb, [ds.classnames[k] for k in batch.target.tolist()], batch.target, ds.classnames)


def csv_pairs(path: Path, image_col: str, caption_col: str, n: int, size: int, classnames: list[str]) -> Pairs:
    """The first ``n`` image-caption pairs of an open_clip CSV (tab-separated when the header has a tab).
    A missing column, empty caption or missing image is an error naming the file, row and value."""
    if not path.is_file():
        raise FileNotFoundError(f"image-caption CSV not found: {path}")
    with path.open() as f:
        sep = "\t" if "\t" in f.readline() else ","
    table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    missing = [c for c in (image_col, caption_col) if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: no column {missing} (--image-col, --caption-col); its columns: {list(table.columns)}")
    table = table.head(n)
    if table.empty:
        raise ValueError(f"{path}: no image-caption pairs")
    for row, caption in enumerate(table[caption_col], 1):
        if not caption.strip():
            raise ValueError(f"{path}, row {row}: empty caption (column {caption_col!r})")
    images = [path.parent / p for p in table[image_col]]
    for row, image in enumerate(images, 1):
        if not image.is_file():
            raise FileNotFoundError(f"{path}, row {row}: image not found: {image}")
    samples = [LabelledImage(str(image), read_image(image, "RGB"), -1) for image in images]
    return Pairs(make_labelled_batch(samples, size).rgb, [c.strip() for c in table[caption_col]], None, classnames)


def own_data(cfg: PoisonConfig, size: int) -> PoisonData:
    """A CSV's pairs, scored (and targeted) on a class-folder set."""
    test = folder_pairs(Path(cfg.eval_data), size)
    path = Path(cfg.data)
    train = csv_pairs(path, cfg.image_col, cfg.caption_col, cfg.recipe.pairs, size, test.classnames)
    return PoisonData(train, test, test, CaptionTemplates(ZERO_SHOT_TEMPLATES), f"{path.name}@{pairs_sha256(train)[:8]}",
                      f"{Path(cfg.eval_data).name}@{pairs_sha256(test)[:8]}")


@dataclass(frozen=True)
class PoisonCell:
    """(attack, defense, seed); attack ``none`` with defense ``none``: the clean model."""

    attack: str
    defense: str
    seed: int

    @property
    def id(self) -> str:
        return f"{self.attack}-{self.defense}-s{self.seed}"


def grid_cells(cfg: PoisonConfig) -> list[PoisonCell]:
    """Per seed the clean cell, then every (attack, defense)."""
    return [cell for seed in cfg.seeds for cell in [PoisonCell("none", "none", seed)]
            + [PoisonCell(a, d, seed) for a in cfg.attacks for d in cfg.defenses]]


def work_order(cells: list[PoisonCell]) -> list[PoisonCell]:
    """The order workers take cells in: the clean models first (every scored cell's baseline needs its
    seed's), then the longest trainings (SafeCLIP), the models CleanCLIP fine-tunes, RoCLIP, and CleanCLIP's
    fine-tunings last, so a worker seldom waits for a model another is training."""
    rank = {"safeclip": 1, "none": 2, "roclip": 3, "cleanclip": 4}
    return sorted(cells, key=lambda c: 0 if c.attack == "none" else rank.get(c.defense, 3))


def split_names(text: str) -> tuple[str, ...]:
    """Names separated by commas or spaces."""
    return tuple(n for n in re.split(r"[,\s]+", text) if n)


class PoisonRun:
    """A grid in progress: its data, run folder and code state; trains, scores and stores cells."""

    def __init__(self, cfg: PoisonConfig, data: PoisonData, target: str, store: RunStore,
                 code: dict[str, Any] | None = None):
        self.cfg, self.data, self.target, self.store = cfg, data, target, store
        self.device = torch.device(cfg.device)
        self.code = code_state() if code is None else code
        self._poisoned: dict[tuple[str, int], Pairs] = {}
        self._baselines: dict[tuple[str, int], dict[str, float]] = {}

    def attack(self, name: str, seed: int) -> Poisoning | None:
        """The attack ``name`` of a seed (None for ``none``)."""
        if name == "none":
            return None
        return build_poisoning(name, target=self.target, rate=self.cfg.rate, seed=seed, captions=self.data.captions)

    def attack_params(self, name: str, seed: int) -> dict[str, Any]:
        """The parameters of attack ``name`` of a seed as its records store them (JSON); {} for ``none``."""
        attack = self.attack(name, seed)
        return {} if attack is None else json.loads(json.dumps(asdict(attack)))

    def poisoned(self, name: str, seed: int) -> Pairs:
        """The training pairs attack ``name`` leaves (the clean pairs for ``none``); the last one is kept."""
        if (name, seed) not in self._poisoned:
            attack = self.attack(name, seed)
            self._poisoned = {(name, seed): self.data.train if attack is None
                              else attack.poison(self.data.train, self.data.held_out)}
        return self._poisoned[(name, seed)]

    def fresh_model(self, seed: int) -> CLIPZeroShot:
        """The model's initialisation of a seed."""
        torch.manual_seed(seed)
        return build_model(self.cfg.model, **self.cfg.model_args)

    def model_path(self, attack: str, seed: int) -> Path:
        return self.store.root / "models" / f"{attack}-s{seed}.pt"

    def pretrained(self, attack: str, seed: int) -> tuple[CLIPZeroShot, dict[str, Any]]:
        """The model pre-trained without defense on what ``attack`` leaves, and its sidecar (recipe, seconds,
        history, attack params, code): loaded from the run folder when the same code (or ``reuse_cells``: any)
        trained it on the same attack, else trained and saved there."""
        path = self.model_path(attack, seed)
        sidecar = path.with_suffix(".json")
        wrapper = self.fresh_model(seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(path.parent / f".{path.stem}.lock"):  # a worker needing a model another is training waits for it
            if path.is_file() and sidecar.is_file():
                meta = json.loads(sidecar.read_text())
                if self.reusable(meta, attack, seed):
                    wrapper.load_checkpoint(path)
                    return wrapper.to(self.device), meta
            recipe = self.cfg.recipe.contrastive(seed)
            started = time.time()
            history = train_contrastive(wrapper, self.poisoned(attack, seed), CLIPObjective(), recipe, self.device,
                                        desc=f"{attack}/none s{seed}")
            meta = {"model": self.cfg.model, "attack": attack, "attack_params": self.attack_params(attack, seed),
                    "seed": seed, "recipe": asdict(recipe), "seconds": round(time.time() - started, 1),
                    "history": history, "code": self.code}
            save_trained(path, {k: v.cpu() for k, v in wrapper.model.state_dict().items()}, meta)
        return wrapper, meta

    @torch.no_grad()
    def logits(self, wrapper: CLIPZeroShot, images: Tensor) -> Tensor:
        """Zero-shot logits over the evaluation classes (set with ``set_classes`` before)."""
        return torch.cat([wrapper(x.to(self.device)).cpu() for x in images.split(EVAL_BATCH)])

    def scores(self, wrapper: CLIPZeroShot, attack_name: str, seed: int) -> dict[str, float]:
        """Clean top-1/top-5 on the test images and the attack's success: on the triggered test images not
        of the target (a backdoor), on its target images (targeted poisoning)."""
        test, attack = self.data.test, self.attack(attack_name, seed)
        wrapper.eval().set_classes(test.classnames)
        clean = self.logits(wrapper, test.images)
        out = {"top1": top_k_accuracy(clean, test.labels, 1), "top5": top_k_accuracy(clean, test.labels, 5)}
        if isinstance(attack, Backdoor):
            triggered = self.logits(wrapper, attack.apply_trigger(test.images))
            out["backdoor_success"] = backdoor_success(triggered, test.labels, attack.target_label(test.classnames))
        elif attack is not None:
            targets = self.poisoned(attack_name, seed).target_images
            images = self.data.held_out.images[torch.tensor(list(targets))]
            wanted = torch.tensor([test.classnames.index(t) for t in targets.values()])
            out["targeted_success"] = targeted_success(self.logits(wrapper, images), wanted)
        return out

    def baseline(self, attack: str, seed: int) -> dict[str, float]:
        """The clean model's success against ``attack``: ``<kind>_baseline``."""
        if (attack, seed) not in self._baselines:
            clean = self.scores(self.pretrained("none", seed)[0], attack, seed)
            self._baselines[(attack, seed)] = {k.replace("_success", "_baseline"): v for k, v in clean.items()
                                               if k.endswith("_success")}
        return self._baselines[(attack, seed)]

    def train(self, cell: PoisonCell) -> tuple[CLIPZeroShot, list[dict[str, Any]], dict[str, Any]]:
        """The cell's model, its training history and what the summary records of the training."""
        if cell.defense == "none":
            wrapper, meta = self.pretrained(cell.attack, cell.seed)
            return wrapper, meta["history"], {"training": meta["recipe"], "seconds": meta["seconds"]}
        objective = build_training_defense(cell.defense)
        params = {f.name: getattr(objective, f.name) for f in fields(objective) if f.init}
        seed, extra = cell.seed, {}
        if objective.finetunes:
            wrapper, _ = self.pretrained(cell.attack, seed)
            base = self.model_path(cell.attack, seed)
            pairs, recipe = clean_subset(self.data.train, self.cfg.recipe.clean_pairs, seed), replace(FINETUNING, seed=seed)
            extra["base"] = {"model": base.name, "sha256": sha256_file(base)}
        else:
            recipe = self.cfg.recipe.contrastive(seed)
            recipe = replace(recipe, epochs=max(1, round(recipe.epochs * objective.epoch_factor)))
            wrapper, pairs = self.fresh_model(seed), self.poisoned(cell.attack, seed)
        started = time.time()
        history = train_contrastive(wrapper, pairs, objective, recipe, self.device, desc=f"{cell.attack}/{cell.defense} s{seed}")
        return wrapper, history, {"training": asdict(recipe), "seconds": round(time.time() - started, 1),
                                  "defense_params": params, **extra}

    def run_cell(self, cell: PoisonCell) -> None:
        """Train, score and store one cell (atomically)."""
        wrapper, history, training = self.train(cell)
        metrics = self.scores(wrapper, cell.attack, cell.seed)
        if cell.attack != "none":
            metrics.update(self.baseline(cell.attack, cell.seed))
        attack, pairs = self.attack(cell.attack, cell.seed), self.poisoned(cell.attack, cell.seed)
        splits = [h for h in history if h.get("phase") == "split"]
        info = {"poisoned": len(pairs.records) if isinstance(pairs, PoisonedPairs) else 0}
        if splits and splits[-1]["poisoned"]:
            info["safe_poisoned"] = splits[-1]["safe_poisoned"] / splits[-1]["poisoned"]
        summary = {"id": cell.id, "cell": asdict(cell), "rate": 0.0 if attack is None else attack.rate,
                   "target": "-" if attack is None else attack.target, "metrics": metrics, "info": info,
                   "recipe": asdict(self.cfg.recipe), "recipe_id": self.cfg.recipe.id,
                   "attack_params": self.attack_params(cell.attack, cell.seed), "train_pairs": len(self.data.train),
                   "history": [{k: v for k, v in h.items() if not k.startswith("similarity_")} for h in history],
                   "code": self.code, **training}
        self.store.write_cell(cell.id, summary, history, {})

    def reusable(self, record: dict[str, Any], attack: str, seed: int) -> bool:
        """A stored cell summary or model sidecar computed by the same code (or ``reuse_cells``: any) with
        the current parameters of ``attack``."""
        return ((self.cfg.reuse_cells or record["code"] == self.code)
                and record.get("attack_params") == self.attack_params(attack, seed))  # older sidecars: none

    def is_done(self, cell: PoisonCell) -> bool:
        """Finished, and reusable."""
        return self.store.is_done(cell.id) and self.reusable(self.store.summary(cell.id), cell.attack, cell.seed)


class _PoisonWorker:
    """A Ray actor: the driver's run (its data and code state) with one torch thread, in the driver's folder."""

    def __init__(self, cfg: PoisonConfig, data: PoisonData, target: str, root: Path, code: dict[str, Any], cwd: str):
        os.chdir(cwd)
        torch.set_num_threads(1)
        self.run = PoisonRun(cfg, data, target, RunStore(root), code)

    def run_cell(self, cell: PoisonCell) -> str:
        self.run.run_cell(cell)
        return cell.id


def execute(run: PoisonRun, cells: list[PoisonCell]) -> Iterator[str]:
    """Run ``cells`` (in :func:`work_order`) in this process, or on ``run.cfg.workers`` Ray actors (a local
    instance, or the cluster at RAY_ADDRESS; the results folder at the same path on every node); yield each
    cell's id as it finishes. Cells are independent but for the pre-trained models they share, which a
    file lock lets one worker train while the others wait (:meth:`PoisonRun.pretrained`)."""
    cells = work_order(cells)
    if run.cfg.workers <= 0:
        for cell in cells:
            run.run_cell(cell)
            yield cell.id
        return
    from ray.util import ActorPool

    args = (run.cfg, run.data, run.target, run.store.root.resolve(), run.code, os.getcwd())
    with ray_actors(_PoisonWorker, args, min(run.cfg.workers, len(cells)), 1, run.device) as actors:
        # in submission order: a worker takes the next cell of the work order when it is free
        yield from ActorPool(actors).map_unordered(lambda worker, cell: worker.run_cell.remote(cell), cells)


def load_data(cfg: PoisonConfig, size: int) -> tuple[PoisonData, str]:
    """The grid's data and target class, every attack tried on it once: all input errors come here."""
    data = shapes_data(cfg.recipe, size) if cfg.data is None else own_data(cfg, size)
    target = cfg.target or SHAPES_TARGET
    if cfg.attacks and target not in data.test.classnames:
        raise ValueError(f"target class {target!r} is not in the evaluation set {data.eval_name}; its classes: "
                         f"{list(data.test.classnames)}")
    for name in cfg.attacks:  # e.g. too few captions naming the target for a label-consistent rate
        build_poisoning(name, target=target, rate=cfg.rate, seed=cfg.seeds[0], captions=data.captions).poison(
            data.train, data.held_out)
    return data, target


def run_poisoning(cfg: PoisonConfig) -> Path:
    """Run (or resume) the grid, update ``leaderboards/poisoning.csv|md``; return the run folder."""
    cfg.check()
    probe = build_model(cfg.model, **cfg.model_args)
    if not isinstance(probe, CLIPZeroShot):
        raise ValueError(f"poisoning pre-trains an open_clip CLIP model (clip-tiny, or clip with --model-arg arch=...), "
                         f"not {cfg.model!r}")
    data, target = load_data(cfg, probe.input_size)
    config = {"model": cfg.model, "model_args": cfg.model_args, "recipe": asdict(cfg.recipe), "dataset": data.name,
              "eval_dataset": data.eval_name, "rate": cfg.rate, "target": target,
              **{f"{k}_sha256": pairs_sha256(getattr(data, k)) for k in ("train", "held_out", "test")}}
    run_id = f"{cfg.model}-{data.name.split('@')[0]}-{sha256_json(config)[:8]}"
    store = RunStore(cfg.results_dir / "poisoning" / run_id)
    run, cells = PoisonRun(cfg, data, target, store), grid_cells(cfg)
    store.write_manifest({**config, "run": run_id, "config_sha256": sha256_json(config), "recipe_id": cfg.recipe.id,
                          "code": run.code, "device": device_info(run.device), "cells": [c.id for c in cells]})
    todo = [c for c in cells if not run.is_done(c)]
    print(f"[poison] {run_id}: {len(cells)} cells, {len(cells) - len(todo)} already done", file=sys.stderr)
    for _ in tqdm(execute(run, todo), total=len(todo), desc=f"poison {cfg.model}", unit="cell"):
        pass
    summaries = [store.summary(c.id) for c in cells]
    rows = poisoning_report.rows(summaries, model=cfg.model, model_args=params_label(cfg.model_args),
                                 dataset=data.name, eval_dataset=data.eval_name)
    safeclip = {f"{c.attack} s{c.seed}": store.records(c.id) for c in cells if c.defense == "safeclip"}
    figure = poisoning_report.safeclip_figure(safeclip, store.root / "figures" / "safeclip.png")
    table = poisoning_report.update(cfg.leaderboard_dir, rows, figure)
    print(f"[poison] results: {store.root}\n[poison] leaderboard: {table}", file=sys.stderr)
    return store.root
