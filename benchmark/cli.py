"""Command line: ``python -m benchmark {run,poison,train,compare,regress,list}``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """examples:
  python -m benchmark run --model jldcf                  # tiny JL-DCF, its pinned reference weights
  python -m benchmark run --model jldcf --ckpt JL-DCF.pth --dataset NJU2K --data /data/RGBD
  python -m benchmark poison --seeds 3                   # the poisoning grid on clip-tiny, 3 seeds
  python -m benchmark compare HEAD~1                     # leaderboards at HEAD~1 vs working tree
  python -m benchmark regress HEAD~1 --device cuda       # the regression suite run at HEAD~1 and here, compared
  python -m benchmark list attacks
"""


def _kv(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"{what}: expected KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k] = v
    return out


def use_device(device: str, deterministic: bool = False) -> None:
    """Check that ``device`` exists here (a one-line error otherwise); in deterministic mode, make torch
    pick deterministic kernels (``torch.use_deterministic_algorithms``, warning where an op has none) and
    cuBLAS a fixed workspace, as PyTorch's reproducibility notes ask."""
    import os

    import torch

    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when CUDA initialises: set it first
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    try:
        kind = torch.device(device).type
    except RuntimeError as e:
        raise SystemExit(f"error: --device {device}: {e}") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {device}: no CUDA device here (torch {torch.__version__}, "
                         f"CUDA build {torch.version.cuda or 'none'}); use --device cpu")


def cmd_run(a: argparse.Namespace) -> int:
    from benchmark.runner import RunConfig, run

    use_device(a.device, a.deterministic)

    run(RunConfig(model=a.model, ckpt=a.ckpt or None, suite=a.suite, dataset=a.dataset, data_root=a.data or None,
                  device=a.device, model_args=_kv(a.model_arg, "--model-arg"),
                  surrogate_ckpts=_kv(a.surrogate_ckpt, "--surrogate-ckpt"), invert_depth=a.invert_depth,
                  reuse_cells=a.reuse_cells, workers=a.workers, worker_cpus=a.worker_cpus,
                  results_dir=Path(a.results), leaderboard_dir=Path(a.leaderboards)))
    return 0


def cmd_summary(a: argparse.Namespace) -> int:
    import pandas as pd

    from benchmark import headline

    roots = [Path(r) for r in a.runs]
    bad = [r for r in roots if not (r / "manifest.json").is_file()]
    if bad:
        raise SystemExit(f"not a run folder (no manifest.json): {bad[0]}")
    rows = [headline.run_rows(r) for r in roots]
    for path in headline.update(Path(a.leaderboards), pd.concat(rows, ignore_index=True)):
        print(f"[summary] {path}", file=sys.stderr)
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    from benchmark.report import build

    print(f"[report] {build(Path(a.leaderboards), Path(a.results), Path(a.out) if a.out else None)}", file=sys.stderr)
    return 0


def _seeds(text: str) -> tuple[int, ...]:
    """``N``: seeds 0..N-1; a comma-separated list (``5,`` for the one seed 5): those seeds."""
    try:
        seeds = tuple(int(s) for s in text.split(",") if s) if "," in text else tuple(range(int(text)))
    except ValueError:
        raise SystemExit(f"--seeds: a count N or a comma-separated list of seeds, got {text!r}") from None
    if not seeds:
        raise SystemExit(f"--seeds {text}: a count of no seeds; the one seed 0 is --seeds 0, (a list) or --seeds 1")
    return seeds


def cmd_poison(a: argparse.Namespace) -> int:
    from benchmark.poisoning import PoisonConfig, PoisonRecipe, run_poisoning, split_names

    use_device(a.device)
    budget = {"pairs": a.pairs, "epochs": a.epochs, "batch_size": a.batch_size}
    options = {"attacks": split_names(a.attacks) if a.attacks else None, "rate": a.rate,
               "defenses": split_names(a.defenses) if a.defenses else None, "seeds": _seeds(a.seeds) if a.seeds else None}
    run_poisoning(PoisonConfig(
        model=a.model, model_args=_kv(a.model_arg, "--model-arg"), target=a.target,
        recipe=PoisonRecipe(**{k: v for k, v in budget.items() if v is not None}), data=a.data,
        image_col=a.image_col, caption_col=a.caption_col, eval_data=a.eval_data, device=a.device,
        reuse_cells=a.reuse_cells, workers=a.workers, results_dir=Path(a.results), leaderboard_dir=Path(a.leaderboards),
        **{k: v for k, v in options.items() if v is not None}))
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    from benchmark.pinned import missed_targets, pin, registry
    from benchmark.training import TRAINERS
    from benchmark.zoo import CACHE
    from models import TINY_VARIANT

    use_device(a.device)
    name = TINY_VARIANT.get(a.model, a.model)
    if name not in TRAINERS:
        raise SystemExit(f"no training recipe for {a.model!r}; trainable: {sorted(TRAINERS)}")
    recipe, trainer = TRAINERS[name]
    out = Path(a.out or CACHE / f"{name}-{recipe.id}.pt")
    scores = trainer(name, out, recipe, a.device)
    print(f"saved {out}; test scores: " + ", ".join(f"{k}={v:.3f}" for k, v in scores.items()))
    entry = registry().get(name)
    target = {k: float(v) for k, v in _kv(a.target, "--target").items()} or (entry.target if entry else {})
    missed = missed_targets(scores, target)
    if entry:
        print(f"pinned {name} ({entry.label()}): " + ", ".join(f"{k}={v:.3f}" for k, v in entry.test.items()))
    print(f"target {target or '(none)'}: " + ("MISSED " + "; ".join(missed) if missed else "reached"))
    if missed:
        return 1
    if a.pin:
        pin(name, out, recipe.id, scores, target if a.target else None, a.why)
    return 0


def cmd_compare(a: argparse.Namespace) -> int:
    from benchmark.compare import compare, load_tables

    tolerances = {k: float(v) for k, v in _kv(a.tol, "--tol").items()}
    directory = Path(a.leaderboards)
    report, regressed = compare(load_tables(a.base, directory), load_tables(a.head, directory), tolerances)
    print(report)
    return 1 if regressed else 0


def cmd_regress(a: argparse.Namespace) -> int:
    from benchmark.regress import MODELS, regress

    use_device(a.device)
    tolerances = {k: float(v) for k, v in _kv(a.tol, "--tol").items()}
    models = tuple(a.models.split()) if a.models else MODELS
    report, regressed = regress(a.base, a.head, models, a.suite, a.device, Path(a.out), tolerances)
    print(report)
    return 1 if regressed else 0


def cmd_list(a: argparse.Namespace) -> int:
    from attacks import ATTACKS
    from benchmark.data import DATASETS
    from benchmark.metrics import METRICS
    from benchmark.suite import list_suites
    from models import MODELS

    what = {
        "models": lambda: [f"{n}" for n in MODELS],
        "attacks": lambda: [f"{n:12s} {a.backend:12s} norms={','.join(a.norms)}" for n, a in ATTACKS.items()],
        "datasets": lambda: list(DATASETS),
        "suites": list_suites,
        "metrics": lambda: [f"{t}: {', '.join(m)}" for t, m in METRICS.items()],
    }
    for kind in [a.what] if a.what else list(what):
        print(f"{kind}:")
        for line in what[kind]():
            print(f"  {line}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark", description="Adversarial robustness benchmark for "
                                "RGB-D saliency models and CLIP-like models.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a suite on one model and update the leaderboard")
    r.add_argument("--model", required=True, help="registry name (see `list models`); without --ckpt, "
                   "jldcf/bbsnet/d3net mean their tiny variants, with their pinned reference weights")
    r.add_argument("--ckpt", help="checkpoint file (official release layout for jldcf/bbsnet; a folder of "
                   "RgbNet.pth/RgbdNet.pth/DepthNet.pth for d3net)")
    r.add_argument("--suite", help="suite name in benchmark/suites or a YAML path (default: the model task's, "
                   "'default' for saliency, 'clip' for classification)")
    r.add_argument("--dataset", help="dataset name (default: the suite's); see `list datasets`")
    r.add_argument("--data", help="folder holding <DATASET>/{RGB,depth,GT}")
    r.add_argument("--invert-depth", action="store_true", help="the folder dataset stores depth near = dark: "
                   "read it as max - d (part of the run's config hash)")
    r.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    r.add_argument("--deterministic", action="store_true", help="deterministic kernels (torch."
                   "use_deterministic_algorithms, cuBLAS workspace), as regression runs use")
    r.add_argument("--model-arg", action="append", default=[], metavar="K=V", help="model constructor argument, "
                   "e.g. backbone=resnet50")
    r.add_argument("--surrogate-ckpt", action="append", default=[], metavar="NAME=CKPT",
                   help="checkpoint of a transfer cell's surrogate model (default: its tiny variant's pinned weights)")
    r.add_argument("--reuse-cells", action="store_true", help="resume with finished cells computed by other code "
                   "(another commit, uncommitted changes or library versions); by default they are recomputed. "
                   "Their leaderboard rows keep the commit that computed them")
    r.add_argument("--workers", type=int, default=0, help="run the cells on N Ray workers (a local Ray instance, "
                   "or the cluster at RAY_ADDRESS; the results folder must be at the same path on every node); "
                   "default 0: in this process")
    r.add_argument("--worker-cpus", type=int, default=1, help="CPUs (torch threads) per Ray worker")
    r.add_argument("--results", default="results", help="raw results folder")
    r.add_argument("--leaderboards", default="leaderboards", help="leaderboard folder")
    r.set_defaults(func=cmd_run)

    po = sub.add_parser("poison", help="pre-train CLIP on poisoned image-caption pairs with and without the "
                        "training-time defenses; update leaderboards/poisoning.csv|md")
    po.add_argument("--model", default="clip-tiny", help="an open_clip CLIP model: clip-tiny, or clip with "
                    "--model-arg arch=RN50 (trained from scratch)")
    po.add_argument("--model-arg", action="append", default=[], metavar="K=V", help="model constructor argument")
    po.add_argument("--attacks", help="comma-separated (default: badnets,targeted; also blended, wanet, "
                    "label-consistent)")
    po.add_argument("--defenses", help="comma-separated (default: none,safeclip,roclip,cleanclip)")
    po.add_argument("--seeds", help="a count N (seeds 0..N-1) or a comma-separated list (default: 1)")
    po.add_argument("--rate", type=float, help="poisoned pairs as a fraction of the train pairs (default 0.03)")
    po.add_argument("--target", help="target class (default: star on the shapes; required with --data)")
    po.add_argument("--pairs", type=int, help="train pairs: the first N (default 6000)")
    po.add_argument("--epochs", type=int, help="pre-training epochs (default 16)")
    po.add_argument("--batch-size", type=int, help="pre-training batch (default 128)")
    po.add_argument("--data", help="image-caption CSV in open_clip's layout (image paths relative to its folder); "
                    "default: the embedded captioned shapes")
    po.add_argument("--image-col", default="filepath", help="the CSV's image path column")
    po.add_argument("--caption-col", default="title", help="the CSV's caption column")
    po.add_argument("--eval-data", help="with --data: class-folder evaluation set <folder>/<class>/<image> "
                    "(targeted poisoning's target images come from it)")
    po.add_argument("--device", default="cpu")
    po.add_argument("--reuse-cells", action="store_true", help="resume with cells and models computed by other code")
    po.add_argument("--workers", type=int, default=0, help="train the cells on N Ray workers, one torch thread each "
                    "(a local Ray instance, or the cluster at RAY_ADDRESS); default 0: in this process")
    po.add_argument("--results", default="results", help="raw results folder (run folders under poisoning/)")
    po.add_argument("--leaderboards", default="leaderboards", help="leaderboard folder")
    po.set_defaults(func=cmd_poison)

    t = sub.add_parser("train", help="train a small variant on its embedded train split")
    t.add_argument("--model", required=True, help="jldcf, bbsnet, d3net (or their -tiny names), clip-tiny, rgbd-clip")
    t.add_argument("--out", help="checkpoint path (default: the cache used by `run`)")
    t.add_argument("--device", default="cpu")
    t.add_argument("--pin", action="store_true", help="if it reaches its target, replace the pinned reference "
                   "weights (models/weights/) with it")
    t.add_argument("--target", action="append", default=[], metavar="SCORE=BOUND",
                   help="what it must reach (default: its pinned entry's target), e.g. --target S=0.85")
    t.add_argument("--why", help="with --pin, for a variant pinned the first time: why its file is small enough for git")
    t.set_defaults(func=cmd_train)

    c = sub.add_parser("compare", help="diff leaderboards between two revisions; exit 1 on regression")
    c.add_argument("base", help="git revision, e.g. HEAD~1")
    c.add_argument("head", nargs="?", default=None, help="git revision (default: the working tree)")
    c.add_argument("--tol", action="append", default=[], metavar="METRIC=VALUE",
                   help="allowed worsening per metric (default 0.01 each), e.g. --tol S=0.02")
    c.add_argument("--leaderboards", default="leaderboards")
    c.set_defaults(func=cmd_compare)

    g = sub.add_parser("regress", help="run a suite at two revisions (same pinned weights, same device) and "
                       "compare them; exit 1 on regression")
    g.add_argument("base", help="git revision, e.g. HEAD~1 or origin/main")
    g.add_argument("head", nargs="?", default=None, help="git revision (default: the working tree)")
    g.add_argument("--suite", default="regression", help="suite name or YAML path (this checkout's file runs at both)")
    g.add_argument("--models", help="space-separated model names (default: one per family, benchmark/regress.py)")
    g.add_argument("--device", default="cpu")
    g.add_argument("--tol", action="append", default=[], metavar="METRIC=VALUE", help="as for compare")
    g.add_argument("--out", default="results/regress", help="run folders, leaderboards and compare.md")
    g.set_defaults(func=cmd_regress)

    sm = sub.add_parser("summary", help="rebuild the headline tables (<task>-summary) from run folders")
    sm.add_argument("runs", nargs="+", help="run folders, e.g. results/*-synthetic-*")
    sm.add_argument("--leaderboards", default="leaderboards", help="leaderboard folder")
    sm.set_defaults(func=cmd_summary)

    rp = sub.add_parser("report", help="write the self-contained HTML report (leaderboards/index.html)")
    rp.add_argument("--leaderboards", default="leaderboards", help="leaderboard folder")
    rp.add_argument("--results", default="results", help="raw results folder (curves and galleries)")
    rp.add_argument("--out", help="HTML file (default: <leaderboards>/index.html)")
    rp.set_defaults(func=cmd_report)

    ls = sub.add_parser("list", help="list registered models, attacks, datasets, suites, metrics")
    ls.add_argument("what", nargs="?", choices=["models", "attacks", "datasets", "suites", "metrics"])
    ls.set_defaults(func=cmd_list)

    a = p.parse_args(argv)
    try:
        return a.func(a)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
