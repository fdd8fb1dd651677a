"""Performance benchmarks, each printing ratios measured in one run: ``python -m benchmark.perf [zoo] [pgd]
[overhead] [allocator] [ray]`` (``make perf``).

``pgd``: the time of one gradient step of PGD through torchattacks and through ART on the pinned
jldcf-tiny (16 synthetic test images at 64 px, rgbd, eps 8/255), against the floor: one forward and
one input-only backward of the same batch through the same attacked-model view. Target: ours within
1.05x of the floor.

``overhead``: the share of the cells' time that is not attack compute (building batches' views, budget
and integrity checks, scoring with PySODMetrics, the defended forward pass), from the runner's own
per-cell record (``cell_seconds`` against ``attack_seconds``) on a small suite. Target: <= 10%.

``allocator``: one forward and input backward of each tiny saliency model with glibc's default malloc
thresholds against ``keep_freed_memory`` (which ``python -m benchmark`` and the tests set), each in fresh
processes.

``ray``: one grid on jldcf-tiny (13 cells, 64 images) by 2 Ray workers of one torch thread each
(``--workers 2``) against the local loop on one thread (the same arithmetic: the tables must be
identical) and on torch's default threads, wall time from empty results folders (Ray's start and the
workers' loading included). Target: >= 1.7x against the one-thread loop on 2 cores.

``zoo``: our ZOO (attacks/zoo.py) against ART's ``ZooAttack`` (both Chen et al. 2017, arXiv:1708.03999)
at the same query budget per image, on a small CNN trained here in seconds on scikit-learn's bundled
digits (8x8 grey, no download), upsampled to 16x16. Queries are the rows that pass through the model's
forward, counted by a wrapper for both attacks. Success: the attacked image is misclassified within the
L2 ball of radius EPS. L2, because ART's ZOO is a C&W-style L2 attack: it minimises
c * max(Z_y - max_j!=y Z_j, 0) + ||delta||_2^2 with no budget, so its output is judged by its L2 norm (its
success at any distortion is printed too). The product issue's targets: our success rate >= ART's and
our queries/second >= 20x ART's.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attacks.threat import ThreatModel
from attacks.zoo import ZOO
from benchmark.tasks import ClassificationTask

SEED = 0
SIZE = 16  # digits upsampled from 8x8
TRAIN_IMAGES = 1400  # of 1797; the rest is the test split
N_IMAGES = 100  # correctly classified test images attacked
EPS = 2.0  # L2 radius in [0,1] pixel units over 16x16 (RMS change 0.125 per pixel)
BUDGET = 1000  # queries per image
COORDS = 64  # coordinates per step: our B and ART's nb_parallel
# Our lr = rel_step * EPS per coordinate and step; ART's learning_rate and initial_const. Both chosen by a
# small sweep on these images (ours: rel_step 0.05-0.25, B 16-128; ART: learning_rate 0.01-0.5,
# initial_const 1e-3-100, nb_parallel 16-128), each for its success within EPS.
REL_STEP = 0.05
ART_LEARNING_RATE = 0.05
ART_INITIAL_CONST = 0.1
# ART's queries (art/attacks/evasion/zoo.py, art 1.20.1): each iteration predicts 2 * nb_parallel
# perturbed copies (`_optimizer`) plus the new iterate (`_loss`); `generate` then predicts x and x_adv once
# more for its success log. batch_size=1 as ART recommends; with use_resize=False (there is no 32x32 stage
# below 16x16) a larger batch_size crashes in `_reset_adam`.
ART_QUERIES_PER_ITERATION = 2 * COORDS + 1
ART_FINAL_QUERIES = 2


class DigitsCNN(nn.Module):
    """Two conv-ReLU-maxpool blocks and a linear layer: 16x16 grey -> 10 logits."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * width * (SIZE // 4) ** 2, 10))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class QueryCounter(nn.Module):
    """Passes inputs to ``model`` and counts the rows (queries) it sees."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.queries = 0

    def forward(self, x: Tensor) -> Tensor:
        self.queries += len(x)
        return self.model(x)


def seed_all() -> None:
    torch.manual_seed(SEED)
    np.random.seed(SEED)


def digits() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(x_train, y_train, x_test, y_test): 16x16 images in [0,1], shuffled with the fixed seed."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False).clamp(0, 1)
    y = torch.tensor(data.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SEED))
    x, y = x[order], y[order]
    return x[:TRAIN_IMAGES], y[:TRAIN_IMAGES], x[TRAIN_IMAGES:], y[TRAIN_IMAGES:]


def train_cnn(x: Tensor, y: Tensor, epochs: int = 8) -> DigitsCNN:
    seed_all()
    model = DigitsCNN()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for batch in torch.randperm(len(x)).split(64):
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return model.eval().requires_grad_(False)


def run_ours(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    # a classifier's attack space is its input itself; the modality only names the attacked channels
    threat = ThreatModel(norm="l2", eps=EPS, modality="rgb", queries=BUDGET, rel_step=REL_STEP)
    return ZOO()(model, x, y, threat, ClassificationTask(), coords=COORDS).u


def run_art(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    from art.attacks.evasion import ZooAttack
    from art.estimators.classification import PyTorchClassifier

    classifier = PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                   nb_classes=10, clip_values=(0.0, 1.0))
    attack = ZooAttack(classifier, learning_rate=ART_LEARNING_RATE, initial_const=ART_INITIAL_CONST,
                       max_iter=(BUDGET - ART_FINAL_QUERIES) // ART_QUERIES_PER_ITERATION,
                       binary_search_steps=1, abort_early=False, use_resize=False, use_importance=False,
                       nb_parallel=COORDS, batch_size=1, verbose=False)
    x_adv = attack.generate(x=x.numpy(), y=F.one_hot(y, 10).numpy().astype(np.float32))
    return torch.from_numpy(x_adv)


def measure(name: str, attack: Callable[[nn.Module, Tensor, Tensor], Tensor], model: nn.Module,
            x: Tensor, y: Tensor, min_seconds: float = 2.0) -> dict[str, float | str]:
    """Run ``attack`` through a query counter, again (same seed) until ``min_seconds`` have passed, and
    take the median time of the runs, as ``timeit`` does for short statements; score the output with the
    bare model (not counted)."""
    times: list[float] = []
    while sum(times) < min_seconds:
        counter = QueryCounter(model)
        seed_all()
        start = time.perf_counter()
        x_adv = attack(counter, x, y)
        times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    with torch.no_grad():
        wrong = model(x_adv).argmax(1) != y
    distance = (x_adv - x).flatten(1).norm(dim=1)
    return {"attack": name, "success": (wrong & (distance <= EPS * (1 + 1e-5))).float().mean().item(),
            "success_any_l2": wrong.float().mean().item(), "queries_per_image": counter.queries / len(x),
            "queries_per_second": counter.queries / seconds, "seconds": seconds, "runs": len(times)}


def forward_rows_per_second(model: nn.Module, x: Tensor, seconds: float = 0.5) -> float:
    """The model alone on the batch ``x`` over and over: the scale of what any attack's queries/second can be."""
    rows, start = 0, time.perf_counter()
    with torch.no_grad():
        while time.perf_counter() - start < seconds:
            model(x)
            rows += len(x)
    return rows / (time.perf_counter() - start)


def bench_zoo() -> None:
    start = time.perf_counter()
    x_train, y_train, x_test, y_test = digits()
    model = train_cnn(x_train, y_train)
    with torch.no_grad():
        correct = model(x_test).argmax(1) == y_test
    x, y = x_test[correct][:N_IMAGES], y_test[correct][:N_IMAGES]
    print(f"digits {SIZE}x{SIZE} CNN: test accuracy {correct.float().mean().item():.3f}, trained in "
          f"{time.perf_counter() - start:.1f} s; {len(x)} correctly classified test images; L2 eps {EPS}; "
          f"budget {BUDGET} queries/image; torch threads {torch.get_num_threads()}")
    # Both attacks query the same model. Its weights in channels_last are PyTorch's faster CPU convolution
    # layout (about 2x here); our ZOO runs at the model's batched speed, ART's at its per-iteration numpy
    # overhead, so the ratio is printed for both layouts.
    for layout in (torch.contiguous_format, torch.channels_last):
        model = model.to(memory_format=layout)
        print(f"\nmodel weights in {str(layout).removeprefix('torch.')}")
        rows = [measure("ART ZooAttack", run_art, model, x, y), measure("ours ZOO", run_ours, model, x, y)]
        print(f"{'attack':<15}{'success':>9}{'any-L2':>8}{'queries/img':>13}{'queries/s':>11}{'wall s':>8}"
              f"{'runs':>6}")
        for r in rows:
            print(f"{r['attack']:<15}{r['success']:>9.3f}{r['success_any_l2']:>8.3f}"
                  f"{r['queries_per_image']:>13.1f}{r['queries_per_second']:>11.0f}{r['seconds']:>8.2f}"
                  f"{r['runs']:>6}")
        art, ours = rows
        success_ratio = ours["success"] / art["success"] if art["success"] else float("inf")
        speed_ratio = ours["queries_per_second"] / art["queries_per_second"]
        print(f"ours/ART: success rate x{success_ratio:.2f} (target >= 1), queries/s x{speed_ratio:.1f} "
              f"(target >= 20)")
        one = forward_rows_per_second(model, x[:1])
        batched = forward_rows_per_second(model, x.repeat(512 // len(x) + 1, 1, 1, 1)[:512])
        print(f"model alone on these images: {one:.0f} rows/s one row per call, {batched:.0f} rows/s in "
              f"batches of 512 (x{batched / one:.1f})")


def median_seconds(fn: Callable[[], object], repeats: int = 5) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench_pgd(steps: int = 10, images: int = 16) -> None:
    from attacks import ATTACKS
    from benchmark.data import SyntheticRGBD, make_batch
    from benchmark.tasks import SaliencyTask
    from benchmark.zoo import resolve_model

    task = SaliencyTask()
    model = resolve_model("jldcf-tiny").model.eval().requires_grad_(False)
    ds = SyntheticRGBD("test")
    batch = make_batch([ds[i] for i in range(images)], model.input_size)
    threat = ThreatModel(eps=8 / 255, modality="rgbd", steps=steps)
    space = task.attack_space(batch, threat)
    dense = task.attacked_model(model, space, batch)
    u0 = space.initial()
    view, labels = task.torchattacks_model(dense), task.torchattacks_labels(batch.target)

    def floor() -> None:  # one forward and one input-only backward, the loss torchattacks uses
        u = u0.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(view(u), labels), u)

    def attack(name: str) -> Callable[[], object]:
        return lambda: ATTACKS[name](dense, u0, batch.target, threat, task)

    floor_s = median_seconds(floor, repeats=3 * steps)
    print(f"\nPGD on jldcf-tiny (pinned), {images} images at {model.input_size} px, rgbd, eps 8/255, {steps} steps; "
          f"torch threads {torch.get_num_threads()}")
    print(f"floor (forward + input backward): {1000 * floor_s:.1f} ms per step")
    for name, label in (("pgd", "torchattacks PGD"), ("art-pgd", "ART ProjectedGradientDescent")):
        per_step = median_seconds(attack(name), repeats=3) / steps
        counted = QueryCounter(dense)
        ATTACKS[name](counted, u0, batch.target, threat, task)
        passes = counted.queries / len(u0)
        print(f"{label:<30} {1000 * per_step:7.1f} ms per step  x{per_step / floor_s:.2f} the floor, "
              f"{passes:.0f} forward passes for {steps} steps" + ("  (target <= 1.05)" if name == "pgd" else ""))
    # ART's PGD: after the steps, its success-rate log line calls compute_success, which predicts x and x_adv
    # (2 more forward passes) even when the log level hides the message (Python evaluates the arguments)
    # ART's SquareAttack: each iteration predicts the batch, then the loss of the current and of the new
    # point (ART does not keep the current loss); the query counter answers the first two from memory
    # (attacks/queries.py), so each query of each image is one forward pass of it, as in Square's paper
    queries = 50
    square = ThreatModel(eps=8 / 255, modality="rgbd", queries=queries)
    counted = QueryCounter(dense)
    with torch.no_grad():
        forward_s = median_seconds(lambda: dense(u0), repeats=5)
    seconds = median_seconds(lambda: ATTACKS["art-square"](counted, u0, batch.target, square, task), repeats=1)
    passes = counted.queries / len(u0) / 2  # median_seconds runs it twice (warm-up, then timed)
    print(f"ART SquareAttack, {queries} queries: {seconds:.1f} s for {passes:.0f} forward passes of the batch, "
          f"x{seconds / (passes * forward_s):.2f} the time of those forward passes alone")


OVERHEAD_SUITE = """
dataset: synthetic
batch_size: 16
seed: 0
limit: 32
cells:
  - {attack: none}
  - {attack: fgsm, eps: 8/255, modality: rgbd}
  - {attack: pgd, eps: 8/255, modality: rgbd, steps: 20}
  - {attack: art-pgd, eps: 8/255, modality: rgbd, steps: 20}
  - {attack: art-square, eps: 8/255, modality: rgbd, queries: 100}
"""


def bench_overhead() -> None:
    import json
    import tempfile
    from pathlib import Path

    from benchmark.runner import RunConfig, run

    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp) / "overhead.yaml"
        suite.write_text(OVERHEAD_SUITE)
        [root] = run(RunConfig(model="jldcf", suite=str(suite), results_dir=Path(tmp) / "results",
                               leaderboard_dir=Path(tmp) / "leaderboards"))
        cells = [json.loads(p.read_text()) for p in sorted((root / "cells").glob("*/summary.json"))]
    print(f"\nper-cell time on jldcf-tiny (pinned), 32 images; torch threads {torch.get_num_threads()}")
    print(f"{'cell':<32}{'attack s':>9}{'cell s':>8}{'not attack':>12}")
    for c in sorted(cells, key=lambda c: -c["cell_seconds"]):
        name = f"{c['cell']['attack']} {c['cell']['modality']} {c['cell']['steps']}"
        print(f"{name:<32}{c['attack_seconds']:>9.2f}{c['cell_seconds']:>8.2f}"
              f"{1 - c['attack_seconds'] / c['cell_seconds']:>11.1%}")
    attack, total = sum(c["attack_seconds"] for c in cells), sum(c["cell_seconds"] for c in cells)
    print(f"all cells: {1 - attack / total:.1%} of {total:.1f} s is not attack compute (target <= 10%)")


RAY_SUITE = """
dataset: synthetic
batch_size: 8
seed: 0
limit: 64
cells:
  - {attack: none}
  - {attack: fgsm, eps: 8/255, modality: [rgb, depth, rgbd]}
  - {attack: pgd, eps: [4/255, 8/255], modality: [rgb, depth, rgbd], steps: 10}
  - {attack: none, defense: {name: median, window: 3, modality: rgbd}}
  - {attack: pgd, eps: 8/255, modality: rgbd, steps: 10, defense: {name: median, window: 3, modality: rgbd},
     eval: [oblivious, adaptive]}
"""


def bench_ray(workers: int = 2) -> None:
    """One grid on jldcf-tiny by the local loop and by ``workers`` Ray workers of one torch thread each,
    from empty results folders: wall time including Ray's start and the workers' loading. Against the local
    loop on one thread too, the same arithmetic, so the tables must be identical; against the local loop on
    torch's default threads, the speed-up a user sees (torch's own threads already use the cores well)."""
    import tempfile
    from pathlib import Path

    import pandas as pd

    from benchmark.runner import RunConfig, run

    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp) / "ray.yaml"
        suite.write_text(RAY_SUITE)
        seconds, tables = {}, {}
        for name, n, t in (("local-1", 0, 1), (f"local-{threads}", 0, threads), ("ray", workers, threads)):
            torch.set_num_threads(t)
            t0 = time.perf_counter()
            run(RunConfig(model="jldcf", suite=str(suite), workers=n, results_dir=Path(tmp) / name / "results",
                          leaderboard_dir=Path(tmp) / name / "leaderboards"))
            seconds[name] = time.perf_counter() - t0
            tables[name] = pd.read_csv(Path(tmp) / name / "leaderboards" / "saliency.csv").drop(
                columns=["commit", "defense_ms"])  # which code and how long the defense took: not results
    numbers = tables["ray"].select_dtypes("number").columns
    print(f"\n{len(tables['ray'])} cells on jldcf-tiny, 64 images; {workers} Ray workers of 1 torch thread each: "
          f"{seconds['ray']:.1f} s (Ray's start and the workers' loading included)")
    for name in ("local-1", f"local-{threads}"):
        diff = (tables[name][numbers] - tables["ray"][numbers]).abs().max().max()
        same = "identical" if diff == 0 and tables[name].equals(tables["ray"]) else f"max |difference| {diff:.2g}"
        print(f"local loop, {name.split('-')[1]} torch thread(s): {seconds[name]:.1f} s, Ray x{seconds[name] / seconds['ray']:.2f}; "
              f"tables {same}")
    print("target: x1.7 against the local loop on one thread, identical tables")


ALLOCATOR_CHILD = """
import sys, time, torch
from benchmark.allocator import keep_freed_memory
from benchmark.data import SyntheticRGBD, make_batch
from benchmark.zoo import resolve_model
if sys.argv[1] == "kept":
    keep_freed_memory()
for name in ("jldcf-tiny", "bbsnet-tiny", "d3net-tiny"):
    model = resolve_model(name).model.eval().requires_grad_(False)
    ds = SyntheticRGBD("test")
    batch = make_batch([ds[i] for i in range(16)], model.input_size)
    def step():
        rgb = batch.rgb.clone().requires_grad_(True)
        torch.autograd.grad(model(rgb, batch.depth).sum(), rgb)
    step()
    times = []
    for _ in range(10):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    print(name, sorted(times)[len(times) // 2])
"""


def bench_allocator(rounds: int = 3) -> None:
    """Forward + input backward of 16 images on each tiny saliency model, in fresh processes with glibc's
    default thresholds and with ``keep_freed_memory`` (benchmark/allocator.py), alternated ``rounds``
    times; the median of 10 steps per process, the best process per setting."""
    import subprocess
    import sys

    best: dict[tuple[str, str], float] = {}
    for _ in range(rounds):
        for setting in ("default", "kept"):
            out = subprocess.run([sys.executable, "-c", ALLOCATOR_CHILD, setting], capture_output=True,
                                 text=True, check=True).stdout
            for line in out.splitlines():
                name, seconds = line.split()
                best[name, setting] = min(best.get((name, setting), float("inf")), float(seconds))
    print(f"\nglibc thresholds (benchmark/allocator.py): forward + input backward, 16 images, best of {rounds} "
          f"processes")
    for name in ("jldcf-tiny", "bbsnet-tiny", "d3net-tiny"):
        default, kept = best[name, "default"], best[name, "kept"]
        print(f"{name:<12} default {1000 * default:6.1f} ms   kept {1000 * kept:6.1f} ms   x{kept / default:.2f}")


BENCHMARKS = {"zoo": bench_zoo, "pgd": bench_pgd, "overhead": bench_overhead, "allocator": bench_allocator,
              "ray": bench_ray}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.perf", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}")
    names = parser.parse_args(argv).names or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    for name in names:
        BENCHMARKS[name]()
    return 0


if __name__ == "__main__":
    from benchmark.allocator import keep_freed_memory

    keep_freed_memory()  # as `python -m benchmark` does
    raise SystemExit(main())
