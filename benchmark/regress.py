"""`make regress BASE=<rev> [HEAD=<rev>] [SUITE=regression]`: run one suite at two revisions of the code
and compare their leaderboards, so that a regression check never depends on tables made on another
machine. Each revision runs in its own git worktree (the working tree itself for HEAD unset), with the
same Python environment, the same device, the same suite file (this checkout's) and the same weights:
this checkout's pinned reference weights, passed to both as checkpoints; in deterministic mode where the
revision has it (``run --deterministic``). Exit 1 on a regression."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from benchmark.compare import compare, load_tables
from benchmark.provenance import REPO
from benchmark.results import atomic_write_text
from benchmark.suite import suite_path
from benchmark.zoo import variant_checkpoint
from models import TINY_VARIANT

MODELS = ("jldcf", "bbsnet", "d3net", "clip-tiny", "rgbd-clip")  # every model family


@contextmanager
def checkout(rev: str | None) -> Iterator[Path]:
    """A folder holding the code at ``rev`` (a temporary git worktree), or this working tree for None."""
    if rev is None:
        yield REPO
        return
    with tempfile.TemporaryDirectory(prefix="regress-") as tmp:
        tree = Path(tmp) / "tree"
        git = ["git", "-C", str(REPO)]
        try:
            subprocess.run([*git, "worktree", "add", "--detach", "--quiet", str(tree), rev], check=True,
                           capture_output=True, text=True)
        except subprocess.CalledProcessError as e:
            raise ValueError(f"not a git revision: {rev!r} ({e.stderr.strip()})") from e
        try:
            yield tree
        finally:
            subprocess.run([*git, "worktree", "remove", "--force", str(tree)], check=False, capture_output=True)


def bench(tree: Path, out: Path, models: tuple[str, ...], suite: Path, device: str) -> None:
    """`python -m benchmark run` of ``suite`` on every model, with the code in ``tree``, this checkout's
    pinned weights, and results and leaderboards under ``out``."""
    shutil.rmtree(out / "leaderboards", ignore_errors=True)  # this comparison's rows only; results resume
    deterministic = ["--deterministic"] if "--deterministic" in (tree / "benchmark" / "cli.py").read_text() else []
    for name in models:
        variant = TINY_VARIANT.get(name, name)
        cmd = [sys.executable, "-m", "benchmark", "run", "--model", variant,
               "--ckpt", str(variant_checkpoint(variant).path.resolve()), "--suite", str(suite), "--device", device,
               *deterministic, "--results", str(out / "results"), "--leaderboards", str(out / "leaderboards")]
        print(f"[regress] {tree.name if tree != REPO else 'working tree'}: {' '.join(cmd[1:])}", file=sys.stderr)
        env = {**os.environ, "PYTHONPATH": str(tree)}  # the revision's code, not the installed checkout's
        subprocess.run(cmd, cwd=tree, env=env, check=True)


def regress(base: str, head: str | None, models: tuple[str, ...] = MODELS, suite: str = "regression",
            device: str = "cpu", out: Path = Path("results/regress"),
            tolerances: dict[str, float] | None = None) -> tuple[str, bool]:
    """Run ``suite`` at ``base`` and ``head`` (None: the working tree) into ``out/{base,head}`` and
    compare; the report is also written to ``out/compare.md``. Returns (report, regressed)."""
    suite_file = suite_path(suite)
    if not suite_file.is_file():
        raise FileNotFoundError(f"suite not found: {suite_file}")
    sides = {}
    for side, rev in (("base", base), ("head", head)):
        sides[side] = out.resolve() / side
        with checkout(rev) as tree:
            bench(tree, sides[side], models, suite_file.resolve(), device)
    report, regressed = compare(load_tables(None, sides["base"] / "leaderboards"),
                                load_tables(None, sides["head"] / "leaderboards"), tolerances)
    title = f"# Regression check: {suite_file.stem} at {base} vs {head or 'the working tree'} on {device}\n\n"
    atomic_write_text(out / "compare.md", title + "```\n" + report + "\n```\n")
    return report, regressed
