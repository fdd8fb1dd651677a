"""`make bench` on the tiny contrastive models' pinned weights, through the runner: clip-tiny zero-shot
and image -> text retrieval, rgbd-clip RGB -> depth and depth -> RGB retrieval with matching accuracy.
On each, the budgets hold on the attacked query modality only, and the attacks lower the scores (slow:
about 1.5 CPU minutes each)."""
import json

import numpy as np
import pandas as pd
import pytest

from benchmark.runner import RunConfig, run

PGD_EPS = 2 / 255
CLIP_SUITE = f"""
dataset: [shapes, shapes-captions]
batch_size: 64
seed: 0
limit: 128
cells:
  - {{attack: none}}
  - {{attack: pgd, eps: {PGD_EPS}, steps: 10}}
  - {{attack: square, eps: 4/255, queries: 300, images: 32}}
  - {{attack: deepfool, norm: l2, eps: 0.5, steps: 50, images: 32}}
  - {{attack: fgsm, eps: {PGD_EPS}, datasets: [shapes]}}
"""
RGBD_SUITE = f"""
dataset: [synthetic-rgb2depth, synthetic-depth2rgb]
batch_size: 64
seed: 0
cells:
  - {{attack: none}}
  - {{attack: pgd, eps: {PGD_EPS}, steps: 10}}
  - {{attack: zoo, norm: l2, eps: 0.5, queries: 500, images: 32, params: {{coords: 64}}}}
"""


def _bench(tmp_path, model, ckpt, suite):
    (tmp_path / "suite.yaml").write_text(suite)
    cfg = RunConfig(model=model, ckpt=str(ckpt), suite=str(tmp_path / "suite.yaml"),
                    results_dir=tmp_path / "results", leaderboard_dir=tmp_path / "lb")
    roots = run(cfg)
    return roots, pd.read_csv(tmp_path / "lb" / "classification.csv")


def _records(root, attack):
    for cell in (root / "cells").iterdir():
        if json.loads((cell / "summary.json").read_text())["cell"]["attack"] == attack:
            return [json.loads(line) for line in (cell / "records.jsonl").read_text().splitlines()]
    raise AssertionError(f"no {attack} cell in {root}")


def _assert_attacks_lower_the_scores(table, dataset, clean_at_least, metric="top1"):
    rows = table[table.dataset == dataset].set_index("attack")
    clean = rows.loc["none", metric]
    assert clean > clean_at_least, rows[metric]
    assert rows.loc["pgd", metric] < clean / 2 and rows.loc["pgd", "ASR"] > 0.5, rows[metric]
    attacked = rows.drop(index="none")
    assert (attacked[f"drop_{metric}"] > 0).all(), attacked[[metric, f"drop_{metric}"]]  # vs clean on the same images


@pytest.mark.slow
def test_clip_tiny_zero_shot_and_retrieval_under_attack(tmp_path, pinned_clip_tiny):
    roots, table = _bench(tmp_path, "clip-tiny", pinned_clip_tiny, CLIP_SUITE)
    assert [json.loads((r / "manifest.json").read_text())["dataset"] for r in roots] == ["shapes", "shapes-captions"]
    assert set(table.dataset) == {"shapes", "shapes-captions"} and "ITM" not in table  # no matching head
    assert "fgsm" in set(table[table.dataset == "shapes"].attack)
    assert "fgsm" not in set(table[table.dataset == "shapes-captions"].attack)  # the cell names only shapes
    _assert_attacks_lower_the_scores(table, "shapes", 0.5)  # chance 1/8; the full recipe 0.86, the fixture's ~0.7
    _assert_attacks_lower_the_scores(table, "shapes-captions", 0.15)  # R@1 over 238 captions; 0.34, the fixture's ~0.23
    records = _records(roots[0], "pgd")
    assert max(r["linf_rgb"] for r in records) <= PGD_EPS + 1e-6 and "linf_depth" not in records[0]
    found = table[(table.dataset == "shapes") & (table.attack == "deepfool")].found_norm.iloc[0]
    assert np.isfinite(found) and found <= 0.5


@pytest.mark.slow
def test_rgbd_clip_retrieval_both_ways_under_attack(tmp_path, pinned_rgbd_clip):
    roots, table = _bench(tmp_path, "rgbd-clip", pinned_rgbd_clip, RGBD_SUITE)
    assert set(table.dataset) == {"synthetic-rgb2depth", "synthetic-depth2rgb"}
    for root, query, other in zip(roots, ("rgb", "depth"), ("depth", "rgb")):
        dataset = json.loads((root / "manifest.json").read_text())["dataset"]
        assert dataset == f"synthetic-{query}2{other}"
        _assert_attacks_lower_the_scores(table, dataset, 0.6)  # R@1 over 64 pairs; measured 0.94, 0.97
        rows = table[table.dataset == dataset].set_index("attack")
        assert rows.loc["none", "ITM"] > 0.75 and rows.loc["pgd", "ITM"] < rows.loc["none", "ITM"], rows.ITM
        assert (rows.drop(index="none").modality == query).all()
        records = _records(root, "pgd")
        assert max(r[f"linf_{query}"] for r in records) <= PGD_EPS + 1e-6 and f"linf_{other}" not in records[0]
        zoo = _records(root, "zoo")
        assert max(r[f"l2_{query}"] for r in zoo) <= 0.5 + 1e-6 and max(r["queries"] for r in zoo) <= 500
