"""The benchmark grid: dataset -> model -> attack -> checks -> metrics -> results -> leaderboard.

Every (attack, threat model) cell runs over the whole test set and is stored on its own, so a
killed run resumes where it stopped. Seeds are derived from (suite seed, cell, batch): a cell's
numbers do not depend on which other cells ran before it.
"""
from __future__ import annotations

import random
import shutil
import sys
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from attacks import ATTACKS
from attacks.base import as_output
from attacks.ensemble import SEPARATOR, SurrogateEnsemble, ensemble_members, includes
from attacks.queries import QueryCounter
from benchmark import headline, leaderboard, plots
from benchmark.checks import ModelTampered, check_budget, model_fingerprint
from benchmark.data import has_train_split, load_dataset
from benchmark.executors import executor_for
from benchmark.metrics.bootstrap import mean_ci
from benchmark.metrics.patch import mask_counts, mask_scores
from benchmark.provenance import code_state, device_info, git_state, library_versions, sha256_json, stable_seed
from benchmark.results import RunStore
from benchmark.suite import Cell, Suite, load_suite
from benchmark.tasks import TASKS
from benchmark.zoo import ResolvedModel, resolve_model, variant_checkpoint
from defenses import ExpectationOverTransformation, build_defense
from models.base import load_state_dict_file


@dataclass
class RunConfig:
    model: str
    ckpt: str | None = None
    suite: str | None = None  # default: the model's ``default_suite``, else its task's DEFAULT_SUITES entry
    dataset: str | None = None  # defaults to the suite's (each of them in turn)
    data_root: str | None = None
    device: str = "cpu"
    model_args: dict[str, Any] | None = None
    surrogate_ckpts: dict[str, str] | None = None  # transfer cells: surrogate name -> checkpoint (else tiny)
    invert_depth: bool = False  # the folder dataset stores depth near = dark
    reuse_cells: bool = False  # resume with cells computed by other code (they keep their own commit)
    workers: int = 0  # Ray workers running the cells (0: the local loop in this process)
    worker_cpus: int = 1  # CPUs (torch threads) each Ray worker declares and uses
    results_dir: Path = Path("results")
    leaderboard_dir: Path = Path("leaderboards")


def seed_everything(*parts: object) -> int:
    """Seed torch (torchattacks), numpy (ART) and random from a hash of ``parts``."""
    seed = stable_seed(*parts)
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    return seed


DEFAULT_SUITES = {"saliency": "default", "classification": "clip"}
RUNNER_PARAMS = ("fit_dataset", "fit_images", "eot")  # cell params the runner consumes (universal fitting, EOT)


def attack_params(cell: Cell) -> dict[str, Any]:
    """The cell's params meant for the attack (without those the runner consumes)."""
    return {k: v for k, v in cell.params.items() if k not in RUNNER_PARAMS}


def make_batches(task: Any, model: torch.nn.Module, samples: list[Any], count: int, batch_size: int,
                 device: torch.device) -> list[Any]:
    """The first ``count`` samples as the task's batches for ``model`` (its resolution, its loader) on ``device``."""
    return [task.make_batch(samples[i:min(i + batch_size, count)], model).to(device)
            for i in range(0, count, batch_size)]


def stack_curves(curves: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-image curve dicts (saliency: F and E curves; none for classification) as (N, ...) arrays."""
    return {k: np.array([c[k] for c in curves]) for k in curves[0]} if curves else {}


GALLERY_IMAGES = 4  # the first images of every cell, stored for the report (and the patch-defense figures)
# per-image numbers averaged into the summary (certified: the share of clean images a defense certifies)
# unrestricted (latent) attacks: the latent distance used and the pixel distances it came to
INFO = ("queries", "success", "l0", "patch_area", "patch_side", "certified", "latent_distance", "pixel_l2",
        "pixel_linf")
# minimum-norm attacks: the median size of the perturbations found (inf: none); a defense's ms per image
MEDIAN_INFO = ("found_norm", "defense_ms")


def defended_models(cell: Cell, model: torch.nn.Module, crafter: torch.nn.Module, task: Any
                    ) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(scored, crafting) models of a cell: the one scored is ``model`` behind the cell's defense; the
    attack crafts on ``crafter`` as it is (no eval, or oblivious), or adaptive: on its ``adaptive_view``
    (a built-in defense made differentiable) behind the same defense, whose non-differentiable parts
    backpropagate through BPDA, averaged over ``params.eot`` draws where the defense is randomized (the
    suite sets it, except for black-box attacks: each of their queries is one draw, and counts as one)."""
    defense = None
    if cell.defense is not None:
        defense = build_defense(cell.defense["name"], **{k: v for k, v in cell.defense.items() if k != "name"})
        if getattr(defense, "checkpoint", None) == "trained":  # a learned defense: its pinned (or trained) network
            defense.load(variant_checkpoint(defense.trained_variant).path)
    scored = model if defense is None else task.defended(model, defense, cell)
    if cell.eval != "adaptive":
        return scored, crafter
    view = crafter.adaptive_view() if hasattr(crafter, "adaptive_view") else crafter
    if defense is None:
        return scored, view
    # a classifier-level defense (PatchCleanser): its differentiable surrogate, not its exact vote
    view = defense.wrap(view, vote=False) if getattr(defense, "wraps_model", False) else task.defended(view, defense, cell)
    if "eot" not in cell.params:  # deterministic, or a black-box attack, whose every query is one draw
        return scored, view
    return scored, ExpectationOverTransformation(view, int(cell.params["eot"]))


def _adversarial_arrays(names: list[str], rgb: Tensor | None, depth: Tensor | None,
                        mask: Tensor) -> dict[str, np.ndarray]:
    """A batch of adversarial inputs as stored: 8-bit RGB, 16-bit depth (those the model takes), the
    bool patch mask."""
    arrays = {"names": np.array(names), "mask": mask[:, 0].cpu().numpy()}
    if rgb is not None:
        arrays["rgb"] = (rgb * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    if depth is not None:
        arrays["depth"] = (depth[:, 0] * 65535).round().to(torch.int32).cpu().numpy().astype(np.uint16)
    return arrays


@dataclass
class Crafted:
    """One batch's adversarial inputs as an attack crafted them, checked against the budget."""

    seed: int
    rgb: Tensor | None
    depth: Tensor | None
    per_image: dict[str, Tensor]  # budget-check numbers and the attack's own (queries, success, ...)
    mask: Tensor | None
    seconds: float


def craft(cell: Cell, crafter: torch.nn.Module, task: Any, b: Any, seed: int, params: dict[str, Any]) -> Crafted:
    """Attack batch ``b`` on ``crafter`` (the caller seeded the RNGs with ``seed``) and check the budget."""
    attack = ATTACKS[cell.attack]
    space = task.attack_space(b, cell.threat)
    dense = task.attacked_model(crafter, space, b)
    if getattr(attack, "black_box", False):  # its model queries are counted per image, within the budget
        dense = QueryCounter(dense, space.initial(), cell.threat.queries)
    t0 = time.perf_counter()
    # `seed` reaches the attacks that take one (AutoAttack, APGD, FAB, Square): recorded per image
    out = as_output(attack(dense, space.initial(), b.target, cell.threat, task, names=b.names, seed=seed, **params))
    seconds = time.perf_counter() - t0
    if isinstance(dense, QueryCounter):
        out.info["queries"] = dense.per_image(out.u)  # what the row claims is what the model answered
    rgb, depth = space.compose(out.u)
    per_image = {**check_budget(b.names, b.rgb, b.depth, rgb, depth, cell.threat, out.mask,
                                out.info.get("latent_distance")), **out.info}
    return Crafted(seed, rgb, depth, per_image, out.mask, seconds)


def run_cell(cell: Cell, model: torch.nn.Module, task: Any, batches: list[Any], suite: Suite,
             fingerprint: str, store: RunStore, crafter: torch.nn.Module | None = None,
             fitted: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
             code: dict[str, Any] | None = None, crafted: dict[tuple[str, int], Crafted] | None = None
             ) -> dict[str, Any]:
    """Attack every batch (on ``crafter``, default the model itself, or as the cell's defense and eval
    say: :func:`defended_models`; ``fitted``: what the attack gets besides the cell's params, a universal
    attack's ``universal``, a trained attack network), check, score, store the cell with the ``code``
    state that computed it (default: the current one). A patch attack's cell is scored twice: on the full
    map and with the patch pixels excluded. Neither the model nor a surrogate may change.

    Crafting that does not see a defense (undefended and oblivious cells) is seeded by the undefended
    cell and kept in ``crafted`` (one such cell's at a time, so the runner runs them in a row): the
    oblivious cells of every defense score the very inputs the undefended cell was attacked with, and
    cost one defended forward pass each."""
    started = time.perf_counter()
    scored, crafter = defended_models(cell, model, model if crafter is None else crafter, task)
    crafter_fingerprint = fingerprint if crafter is model else model_fingerprint(crafter)
    params = {**attack_params(cell), **(fitted or {})}
    craft_id = cell.crafting.id
    shared = crafted is not None and cell.eval != "adaptive"  # crafting that never sees a defense
    records, curves, adversarial, seconds, gallery = [], [], [], 0.0, None
    nopatch: dict[str, list] = {"adversarial": [], "clean": []}  # (scalars, curves) with the patch excluded
    if shared:  # keep one cell's crafting at a time
        for key in [k for k in crafted if k[0] != craft_id]:
            del crafted[key]
    for bi, b in enumerate(batches):
        c = crafted.get((craft_id, bi)) if shared else None
        if c is None:
            c = craft(cell, crafter, task, b, seed_everything(suite.seed, craft_id, bi), params)
            if shared:
                crafted[(craft_id, bi)] = c
            seconds += c.seconds
        if model_fingerprint(model) != fingerprint:
            raise ModelTampered(f"attack {cell.attack} changed the model's parameters or buffers")
        if crafter is not model and model_fingerprint(crafter) != crafter_fingerprint:
            raise ModelTampered(f"attack {cell.attack} changed the surrogate's parameters or buffers")
        rgb, depth, per_image, mask, seed = c.rgb, c.depth, dict(c.per_image), c.mask, c.seed
        seed_everything(suite.seed, cell.id, bi, "score")  # a randomized defense's draws when scored
        with torch.no_grad():
            logits = task.forward(scored, rgb, depth, b)
        if scored is not model:  # the defense's own cost in that forward pass
            per_image["defense_ms"] = torch.full((len(b.names),), 1000 * scored.defense_seconds / len(b.names))
        if cell.attack == "none" and hasattr(scored, "certified"):  # a certifying classifier (PatchCleanser)
            per_image["certified"] = scored.certified(logits.query, b.target).float()  # the query it scored
        if mask is not None and getattr(scored, "defense_mask", None) is not None:  # where it located the patch
            per_image.update(mask_counts(scored.defense_mask.cpu().numpy(), mask.cpu().numpy()))
        if bi == 0:  # a few examples for the report's gallery
            gallery = task.gallery(rgb, depth, logits, b, GALLERY_IMAGES)
        for i, (scores, image_curves) in enumerate(task.score(scored, logits, b)):
            records.append({"image": b.names[i], "seed": seed, **scores,
                            **{k: float(v[i]) for k, v in per_image.items()}})
            curves.append(image_curves)
        if mask is not None:
            if task.score_without_patch:  # the clean reference excludes the same pixels
                with torch.no_grad():
                    clean_logits = task.forward(scored, b.rgb, b.depth, b)
                nopatch["adversarial"] += task.score(scored, logits, b, exclude=mask)
                nopatch["clean"] += task.score(scored, clean_logits, b, exclude=mask)
            adversarial.append(_adversarial_arrays(b.names, rgb, depth, mask))
    metrics, extra = task.summarise(records, stack_curves(curves)), dict(extra or {})
    if nopatch["adversarial"]:
        for r, (scores, _), (clean, _) in zip(records, nopatch["adversarial"], nopatch["clean"]):
            r.update({f"{k}_nopatch": v for k, v in scores.items()} | {f"clean_{k}_nopatch": v for k, v in clean.items()})
        adv, clean = ([s for s, _ in nopatch[k]] for k in ("adversarial", "clean"))
        adv_curves, clean_curves = (stack_curves([c for _, c in nopatch[k]]) for k in ("adversarial", "clean"))
        metrics.update({f"{k}_nopatch": v for k, v in task.summarise(adv, adv_curves).items()})
        extra["clean_metrics_nopatch"] = task.summarise(clean, clean_curves)
    info = {k: float(np.mean([r[k] for r in records])) for k in INFO if records and k in records[0]}
    info.update({k: float(np.median([r[k] for r in records])) for k in MEDIAN_INFO if records and k in records[0]})
    if records and "mask_tp" in records[0]:
        info.update(mask_scores(*([r[k] for r in records] for k in ("mask_tp", "mask_fp", "mask_fn"))))
    summary = {"id": cell.id, "cell": cell.spec(), "backend": ATTACKS[cell.attack].backend, "n_images": len(records),
               "attack_seconds": round(seconds, 3), "metrics": metrics, "info": info,
               "cell_seconds": round(time.perf_counter() - started, 3),  # all of it but storing the cell
               "code": code or code_state(), **extra}
    arrays = {k: np.concatenate([a[k] for a in adversarial]) for k in adversarial[0]} if adversarial else None
    store.write_cell(cell.id, summary, records, stack_curves(curves), adversarial=arrays, gallery=gallery)
    return summary


def _train_views(task: Any, crafter: torch.nn.Module, batches: list[Any], threat: Any) -> Callable[[], Iterator]:
    """What a universal attack's ``fit`` iterates over (once per epoch): (dense, u0, target, names)."""
    def views() -> Iterator:
        for b in batches:
            space = task.attack_space(b, threat)
            yield task.attacked_model(crafter, space, b), space.initial(), b.target, b.names
    return views


def fit_universal(cell: Cell, crafter: torch.nn.Module, task: Any, suite: Suite, store: RunStore, cfg: RunConfig,
                  dataset: Any, model: torch.nn.Module, device: torch.device) -> Tensor | dict[str, Tensor]:
    """Fit (or load the cached) universal perturbation or patch of a cell, or its generator (AdvGAN), on a
    training split, on batches for the benchmarked ``model`` (its resolution and loader)."""
    cached = store.load_universal(cell.id)
    if isinstance(cached, dict):
        return {k: v.to(device) for k, v in cached.items()}
    if cached is not None:
        return cached.to(device)
    fit_name = cell.params.get("fit_dataset", dataset.name)
    if fit_name == dataset.name and not has_train_split(fit_name):
        raise ValueError(f"universal attack {cell.attack!r} on {dataset.name}: folder datasets have no train split; "
                         f"give params.fit_dataset, a different training set")
    train = load_dataset(fit_name, "train", cfg.data_root)
    n = min(int(cell.params.get("fit_images", 128)), len(train))
    batches = make_batches(task, model, [train[i] for i in range(n)], n, suite.batch_size, device)
    seed = seed_everything(suite.seed, cell.id, "fit")
    attack = ATTACKS[cell.attack]
    print(f"[bench] fitting universal {cell.attack} on {n} {fit_name} train images", file=sys.stderr)
    task.prepare(crafter, train)  # retrieval: the train split's labels index its own gallery
    start = time.perf_counter()
    try:
        pert = attack.fit(_train_views(task, crafter, batches, cell.threat), cell.threat, task, **attack_params(cell))
    finally:
        task.prepare(crafter, dataset)
    store.write_universal(cell.id, pert, {"attack": cell.attack, "kind": attack.universal_kind, "cell": cell.spec(),
                                          "eps": cell.threat.space_eps, "modality": cell.threat.space_modality,
                                          "fit_dataset": fit_name, "fit_images": n, "seed": seed,
                                          "fit_seconds": round(time.perf_counter() - start, 1)})
    return pert


def patch_galleries(suite: Suite, store: RunStore, model: torch.nn.Module, task: Any, name: str,
                    figures: Path | None) -> None:
    """Per patch defense, a figure of its adaptive per-image rgbd patch cell on the first images (the
    stored adversarial inputs, the true and the located patch, the map without and with the defense),
    saved with the run and, as ``<name>-<defense>.png``, in ``figures`` next to the leaderboard."""
    if task.name != "saliency":
        return
    for cell in suite.cells:
        if cell.attack != "patch" or cell.eval != "adaptive" or cell.defense is None or cell.threat.modality != "rgbd":
            continue
        arrays = store.adversarial(cell.id)
        if not arrays:
            continue
        k = min(GALLERY_IMAGES, len(arrays["names"]))
        device = next(model.parameters()).device
        rgb = torch.from_numpy(arrays["rgb"][:k]).permute(0, 3, 1, 2).float().div(255).to(device)
        depth = torch.from_numpy(arrays["depth"][:k].astype(np.float32)).div(65535)[:, None].to(device)
        scored = defended_models(cell, model, model, task)[0]
        with torch.no_grad():
            before, after = torch.sigmoid(model(rgb, depth)), torch.sigmoid(scored(rgb, depth))
        if scored.defense_mask is None:
            continue
        images = [rgb.permute(0, 2, 3, 1), depth[:, 0], torch.from_numpy(arrays["mask"][:k]).float(),
                  scored.defense_mask[:, 0], before[:, 0], after[:, 0]]
        path = store.root / "figures" / f"{cell.defense['name']}.png"
        plots.patch_defense_gallery(*(x.cpu().numpy() for x in images), path,
                                    title=f"{name}: {cell.attack} {cell.threat.modality}, adaptive, {cell.defense_label}")
        if figures is not None:
            figures.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, figures / f"{name}-{cell.defense['name']}.png")


def crafting_groups(cells: list[Cell]) -> list[list[Cell]]:
    """``cells`` grouped by their crafting (an attack's undefended and oblivious cells share it, see
    :func:`run_cell`), groups in order of their crafting id: the units of work an executor hands out."""
    groups: dict[str, list[Cell]] = {}
    for c in sorted(cells, key=lambda c: c.crafting.id):
        groups.setdefault(c.crafting.id, []).append(c)
    return list(groups.values())


@dataclass(frozen=True)
class CellJob:
    """What a worker needs to run cells of one (model, dataset) run; plain data, sent to Ray workers."""

    cfg: RunConfig
    suite: Suite  # bound to the dataset
    dataset: str
    store: Path  # the run folder: shared by every worker
    code: dict[str, Any]  # the driver's code state, stored with each cell
    cwd: str  # the driver's working directory, where the config's relative paths start


class CellRunner:
    """Runs cells of a :class:`CellJob`: the model, the dataset's batches and the transfer surrogates are
    loaded once (by the driver for the local loop, once per Ray worker) and serve every cell handed to it."""

    def __init__(self, job: CellJob, model: torch.nn.Module | None = None, task: Any = None, dataset: Any = None):
        """``model``, ``task`` and ``dataset``: the driver's, prepared; else loaded here as the driver loads them."""
        cfg = job.cfg
        self.job, self.device = job, torch.device(cfg.device)
        if model is None:
            model = resolve_model(cfg.model, cfg.ckpt, cfg.model_args).model.to(self.device).eval().requires_grad_(False)
            dataset = load_dataset(job.dataset, "test", cfg.data_root, cfg.invert_depth)
            task = TASKS[model.task]()
            task.prepare(model, dataset)
        self.model, self.task, self.dataset = model, task, dataset
        n = len(dataset) if job.suite.limit is None else min(job.suite.limit, len(dataset))
        self.samples = [dataset[i] for i in range(n)]
        self.batches = make_batches(self.task, model, self.samples, n, job.suite.batch_size, self.device)
        self.fingerprint = model_fingerprint(model)
        self.store = RunStore(job.store)
        self.surrogates: dict[str, ResolvedModel] = {}
        self.networks: dict[str, tuple[torch.nn.Module, str]] = {}  # attacks' trained networks
        self.crafted: dict[tuple[str, int], Crafted] = {}  # undefended crafting, shared with the oblivious cells

    def surrogate(self, name: str) -> ResolvedModel:
        """A transfer cell's surrogate, loaded once; ``a+b``: the ensemble of a and b (attacks/ensemble.py)."""
        if name not in self.surrogates and len(ensemble_members(name)) > 1:
            members = [self.surrogate(m) for m in ensemble_members(name)]
            self.surrogates[name] = ResolvedModel(
                SurrogateEnsemble([m.model for m in members]), SEPARATOR.join(m.name for m in members),
                SEPARATOR.join(m.checkpoint for m in members),
                SEPARATOR.join(m.checkpoint_path for m in members), sha256_json([m.checkpoint_sha256 for m in members]))
        elif name not in self.surrogates:
            sur = resolve_model(name, (self.job.cfg.surrogate_ckpts or {}).get(name))
            sur.model.to(self.device).eval().requires_grad_(False)
            self.task.prepare(sur.model, self.dataset)
            self.surrogates[name] = sur
        return self.surrogates[name]

    def network(self, attack: Any, name: str) -> tuple[torch.nn.Module, str]:
        """An attack's trained network ``name`` (pinned, or trained once) and its sha256, loaded once."""
        if name not in self.networks:
            weights = variant_checkpoint(name)
            self.networks[name] = (attack.network(name, load_state_dict_file(weights.path)).to(self.device),
                                   weights.sha256)
        return self.networks[name]

    def run(self, cells: list[Cell]) -> int:
        """Run and store ``cells`` (one crafting group); return how many."""
        job, model, task, n = self.job, self.model, self.task, len(self.samples)
        for cell in cells:
            crafter, extra = model, {}
            if cell.surrogate is not None:
                sur = self.surrogate(cell.surrogate)
                crafter, extra = sur.model, {"surrogate_model": sur.name, "surrogate_checkpoint": sur.checkpoint,
                                             "surrogate_checkpoint_sha256": sur.checkpoint_sha256}
            attack, fitted = ATTACKS[cell.attack], {}
            if hasattr(attack, "fit"):
                fit_on = defended_models(cell, model, crafter, task)[1]
                fitted["universal"] = fit_universal(cell.crafting, fit_on, task, job.suite, self.store, job.cfg,
                                                    self.dataset, model, self.device)
            if hasattr(attack, "trained_networks"):  # an attack's own trained network (natural adversaries' GAN)
                name = attack.trained_networks[task.name]
                fitted["network"], sha256 = self.network(attack, name)
                extra = {**extra, "attack_network": name, "attack_network_sha256": sha256}
            batches = (self.batches if cell.images is None or cell.images >= n
                       else make_batches(task, model, self.samples, cell.images, job.suite.batch_size, self.device))
            run_cell(cell, model, task, batches, job.suite, self.fingerprint, self.store, crafter, fitted, extra,
                     job.code, self.crafted)
        return len(cells)


def check_cells(suite: Suite, task: Any, datasets: tuple[str, ...]) -> None:
    """Every cell run on ``datasets`` has an attack that works on the task (an attack without ``tasks``
    works on all of them)."""
    for cell in suite.cells:
        if cell.datasets is not None and not set(cell.datasets) & set(datasets):
            continue
        tasks = getattr(ATTACKS[cell.attack], "tasks", (task.name,))
        if task.name not in tasks:
            raise ValueError(f"suite {suite.name!r}: attack {cell.attack!r} works on {list(tasks)} models, "
                             f"not on {task.name}")


def run(cfg: RunConfig) -> list[Path]:
    """Run (or resume) a suite on one model, on each of its datasets (or ``cfg.dataset``); update the
    leaderboard; return the run folders."""
    resolved: ResolvedModel = resolve_model(cfg.model, cfg.ckpt, cfg.model_args)
    device = torch.device(cfg.device)
    model = resolved.model.to(device).eval().requires_grad_(False)
    task = TASKS[model.task]()
    suite = load_suite(cfg.suite or getattr(model, "default_suite", DEFAULT_SUITES[task.name]))
    datasets = (cfg.dataset,) if cfg.dataset else readable_datasets(suite, task, model, cfg)
    check_cells(suite, task, datasets)
    return [run_dataset(cfg, resolved, model, task, suite, name, device) for name in datasets]


def readable_datasets(suite: Suite, task: Any, model: torch.nn.Module, cfg: RunConfig) -> tuple[str, ...]:
    """The suite's datasets, or of a suite with several, those the model can be scored on (a suite may
    cover several model families: the regression suite); an error if it can read none."""
    if len(suite.datasets) == 1:
        return suite.datasets
    kept = tuple(name for name in suite.datasets
                 if task.reads(model, load_dataset(name, "test", cfg.data_root, cfg.invert_depth)))
    if not kept:
        raise ValueError(f"suite {suite.name!r}: {type(model).__name__} reads none of its datasets {list(suite.datasets)}")
    if len(kept) < len(suite.datasets):
        print(f"[bench] suite {suite.name}: skipping datasets {type(model).__name__} does not read: "
              f"{', '.join(d for d in suite.datasets if d not in kept)}", file=sys.stderr)
    return kept


def run_dataset(cfg: RunConfig, resolved: ResolvedModel, model: torch.nn.Module, task: Any, suite: Suite,
                dataset_name: str, device: torch.device) -> Path:
    """Run (or resume) ``suite`` on ``dataset_name``; update the leaderboard; return the run folder."""
    dataset = load_dataset(dataset_name, "test", cfg.data_root, cfg.invert_depth)
    if dataset.task != task.name:
        raise ValueError(f"dataset {dataset_name!r} is a {dataset.task} dataset; model {cfg.model!r} is a "
                         f"{task.name} model")
    task.prepare(model, dataset)
    cells = [c for c in suite.cells if c.datasets is None or dataset_name in c.datasets]
    if len(cells) < len(suite.cells):
        skipped = ", ".join(c.attack for c in suite.cells if c not in cells)
        print(f"[bench] {dataset_name}: skipping cells meant for other datasets: {skipped}", file=sys.stderr)
    if not hasattr(model, "adaptive_view"):
        builtin = [c for c in cells if c.defense is None and c.eval == "adaptive"]
        if builtin:
            print(f"[bench] {resolved.name} has no built-in defense: skipping {len(builtin)} adaptive cells without "
                  f"a defense (they equal the plain white-box cells)", file=sys.stderr)
            cells = [c for c in cells if c not in builtin]
    own = [c for c in cells if c.surrogate is not None and includes(c.surrogate, cfg.model)]
    if own:
        print(f"[bench] skipping {len(own)} transfer cells whose surrogate ensemble includes {resolved.name} "
              f"itself (not transfer; the diagonal's white-box cell is the single surrogate)", file=sys.stderr)
        cells = [c for c in cells if c not in own]
    suite = replace(suite, cells=[task.bind(c, dataset) for c in cells])

    n = len(dataset) if suite.limit is None else min(suite.limit, len(dataset))
    dataset_sha = dataset.manifest_sha256()
    config = {"model": resolved.name, "model_args": cfg.model_args or {}, "checkpoint_sha256": resolved.checkpoint_sha256,
              "dataset": dataset_name, "dataset_sha256": dataset_sha, "n_images": n,
              "batch_size": suite.batch_size, "seed": suite.seed, "input_size": model.input_size,
              "invert_depth": cfg.invert_depth,
              **({"surrogate_ckpts": cfg.surrogate_ckpts} if cfg.surrogate_ckpts else {})}
    run_id = f"{resolved.name}-{dataset_name}-{suite.name}-{sha256_json(config)[:8]}"
    store = RunStore(cfg.results_dir / run_id)
    store.write_manifest({**config, "run": run_id, "suite": suite.name, "config_sha256": sha256_json(config),
                          "checkpoint": resolved.checkpoint, "checkpoint_path": resolved.checkpoint_path,
                          "git": git_state(), "libraries": library_versions(), "device": device_info(device),
                          "cells": [c.spec() | {"id": c.id} for c in suite.cells]})

    code = code_state()
    stale = [c for c in suite.cells if store.is_done(c.id) and store.summary(c.id).get("code") != code]
    if stale and not cfg.reuse_cells:
        print(f"[bench] {len(stale)} finished cells were computed by other code (commit, uncommitted changes or "
              f"library versions): recomputing them (--reuse-cells keeps them)", file=sys.stderr)
    todo = [c for c in suite.cells if not store.is_done(c.id) or (c in stale and not cfg.reuse_cells)]
    done = len(suite.cells) - len(todo)
    print(f"[bench] {run_id}: {len(suite.cells)} cells, {done} already done, {n} images", file=sys.stderr)
    if todo:
        job = CellJob(cfg, suite, dataset_name, store.root.absolute(), code, str(Path.cwd()))
        local = partial(CellRunner, job, model, task, dataset)
        with tqdm(total=len(todo), desc=f"bench {resolved.name}", unit="cell") as bar:
            for finished in executor_for(cfg).run(job, crafting_groups(todo), local):
                bar.update(finished)

    summaries = [store.summary(c.id) for c in suite.cells]
    cell_records = {c.id: store.records(c.id) for c in suite.cells}  # read once
    for cell, summary in zip(suite.cells, summaries):  # bootstrap intervals over the cell's images
        records = cell_records[cell.id]
        summary["intervals"] = {m: mean_ci([r[m] for r in records], stable_seed(suite.seed, cell.id, m))
                                for m in task.intervals if records and m in records[0]}
    # each cell's clean reference: the clean cell behind the same defense (the one on the most images)
    cleans: dict[str, Cell] = {}
    for c in (c for c in suite.cells if c.attack == "none"):
        kept = cleans.get(c.defense_label)
        if kept is None or (kept.images or n) < (c.images or n):
            cleans[c.defense_label] = c
    clean_scores = {c.id: (cell_records[c.id], store.curves(c.id)) for c in cleans.values()}
    for cell, summary in zip(suite.cells, summaries):
        clean = cleans.get(cell.defense_label)
        k = min(cell.images or n, n)  # a cell on the first k images: their clean scores
        if clean is None or (clean.images or n) < k:
            continue
        records, curves = clean_scores[clean.id]
        hits = task.successes(cell_records[cell.id], records[:k])
        summary["metrics"]["ASR"] = float(np.mean(hits)) if hits else float("nan")
        summary["intervals"]["ASR"] = mean_ci(hits, stable_seed(suite.seed, cell.id, "ASR"))
        summary["clean_metrics"] = task.summarise(records[:k], {c: v[:k] for c, v in curves.items()})
    rows = leaderboard.rows(summaries, model=resolved.name, checkpoint=resolved.checkpoint, dataset=dataset_name,
                            model_args=cfg.model_args, seed=suite.seed, batch_size=suite.batch_size)
    figures = cfg.leaderboard_dir / f"{task.name}-{suite.leaderboard}-figures" if suite.leaderboard else None
    patch_galleries(suite, store, model, task, resolved.name, figures)  # before the table that links them
    table = leaderboard.update(cfg.leaderboard_dir, task.name, rows, suite.leaderboard)
    headline.update(cfg.leaderboard_dir, headline.run_rows(store.root))
    plots.robustness_curves(rows[rows.defense == "none"], store.root / "robustness.png", title=f"{resolved.name} on {dataset_name}",
                            metric=task.metrics[0])
    print(f"[bench] results: {store.root}\n[bench] leaderboard: {table}", file=sys.stderr)
    return store.root
