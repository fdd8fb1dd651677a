"""The CI workflows and their make targets: both workflow files pass actionlint; `make regress` runs the
regression suite at two revisions on the pinned weights and reports no regression when the code is the
same; asking for CUDA where there is none is a one-line error."""
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from benchmark.suite import load_suite

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"


def test_workflows_pass_actionlint():
    actionlint = Path(sys.executable).parent / "actionlint"  # installed by the test extras
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert [f.name for f in files] == ["ci.yml", "gpu-regression.yml"]
    out = subprocess.run([str(actionlint), *map(str, files)], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ci_runs_the_readme_commands_and_the_gpu_job_runs_make_regress_on_cuda():
    ci = yaml.safe_load((WORKFLOWS / "ci.yml").read_text())
    assert [s.get("run") for s in ci["jobs"]["test"]["steps"]][-1] == "bash .ci/run"
    assert "make venv" in (REPO / ".ci" / "run").read_text() and "make test" in (REPO / ".ci" / "run").read_text()
    gpu = yaml.safe_load((WORKFLOWS / "gpu-regression.yml").read_text())
    job = gpu["jobs"]["regress"]
    assert "gpu" in job["runs-on"] and {"pull_request", "schedule"} <= set(gpu[True])  # YAML reads `on` as True
    runs = " ".join(s.get("run", "") for s in job["steps"])
    assert 'make regress BASE="$BASE" DEVICE=cuda' in runs and "GITHUB_STEP_SUMMARY" in runs
    assert any("upload-artifact" in s.get("uses", "") for s in job["steps"])


def test_the_regression_suite_covers_every_model_family_and_attack_backend():
    from attacks import ATTACKS

    suite = load_suite("regression")
    assert set(suite.datasets) == {"synthetic", "shapes", "synthetic-rgb2depth"}
    assert {ATTACKS[c.attack].backend for c in suite.cells if c.attack != "none"} == {"torchattacks", "art", "ours"}
    assert {"oblivious", "adaptive"} <= {c.eval for c in suite.cells if c.defense is not None}


MINI = """
dataset: [synthetic, shapes]
batch_size: 4
seed: 0
limit: 4
leaderboard: regression
cells:
  - {attack: none}
  - {attack: pgd, eps: 4/255, modality: rgbd, steps: 2, datasets: [synthetic]}
  - {attack: art-pgd, eps: 2/255, steps: 2, datasets: [shapes]}
"""


@pytest.mark.slow
def test_make_regress_at_head_against_this_tree_finds_no_regression(tmp_path):
    """`make regress BASE=HEAD` (a git worktree at HEAD) against the working tree on a small suite: the same
    pinned weights, so the same rows; in CI the working tree is HEAD, so no metric moves."""
    (tmp_path / "mini.yaml").write_text(MINI)
    py = sys.executable
    out = subprocess.run(["make", "-o", py, f"PY={py}", "regress", "BASE=HEAD", f"SUITE={tmp_path / 'mini.yaml'}",
                          "MODELS=jldcf clip-tiny", f"ARGS=--out {tmp_path / 'regress'}"],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "RESULT: ok" in out.stdout
    base, head = (pd.read_csv(tmp_path / "regress" / side / "leaderboards" / "saliency-regression.csv")
                  for side in ("base", "head"))
    assert len(base) == len(head) == 2 and base.checkpoint.str.startswith("jldcf-tiny.pt@").all()
    assert (tmp_path / "regress" / "head" / "leaderboards" / "classification-regression.csv").is_file()
    assert "Regression check" in (tmp_path / "regress" / "compare.md").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_cuda_without_a_gpu_is_a_one_line_error():
    out = subprocess.run([sys.executable, "-m", "benchmark", "run", "--model", "jldcf", "--device", "cuda"],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and "no CUDA device here" in out.stderr
