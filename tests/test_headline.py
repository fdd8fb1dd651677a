"""The headline table (benchmark/headline.py) on a hand-made run folder: the standard cell, the worst case
per image over the cells within its threat, the ranking, the rebuild command."""
import pandas as pd
import pytest

from benchmark import headline
from benchmark.cli import main
from benchmark.results import RunStore

E = 8 / 255
MEDIAN = {"name": "median", "window": 3, "modality": "rgbd"}


def _cell(cid, attack, scores, modality="rgbd", eps=E, norm="linf", steps=20, **extra):
    spec = {"id": cid, "attack": attack, "modality": modality, "norm": norm, "eps": eps, "eps_depth": eps,
            "steps": steps, "rel_step": 0.25, "params": {}, **extra}
    return spec, scores


CELLS = [
    _cell("clean", "none", [0.9, 0.8, 0.7], eps=0.0, steps=1),
    _cell("pgd20", "pgd", [0.5, 0.6, 0.4]),  # the standard cell
    _cell("fgsm-rgb", "fgsm", [0.6, 0.3, 0.5], modality="rgb", steps=1),  # within the threat: counts
    _cell("transfer", "pgd", [0.7, 0.7, 0.2], surrogate="bbsnet-tiny"),  # counts, never the standard cell
    _cell("pgd16", "pgd", [0.1, 0.1, 0.1], eps=16 / 255),  # beyond the budget
    _cell("l2", "pgdl2", [0.0, 0.0, 0.0], norm="l2", eps=1.0, steps=10),  # another norm
    _cell("square", "art-square", [0.8, 0.05], steps=50, images=2),  # on the first two images only
    # behind a defense: oblivious and adaptive both count, the adaptive PGD-20 is its robust score
    _cell("d-clean", "none", [0.85, 0.75, 0.65], eps=0.0, steps=1, defense=MEDIAN),
    _cell("d-obl", "pgd", [0.6, 0.6, 0.6], defense=MEDIAN, eval="oblivious"),
    _cell("d-ada", "pgd", [0.55, 0.65, 0.45], defense=MEDIAN, eval="adaptive"),
]


@pytest.fixture
def run_folder(tmp_path):
    root = tmp_path / "results" / "jldcf-tiny-synthetic-toy-00000000"
    store = RunStore(root)
    store.write_manifest({"model": "jldcf-tiny", "checkpoint": "recipe-x@0000", "model_args": {},
                          "dataset": "synthetic", "suite": "toy", "seed": 0, "run": root.name,
                          "cells": [spec for spec, _ in CELLS]})
    for spec, scores in CELLS:
        records = [{"image": f"im{i}", "S": s} for i, s in enumerate(scores)]
        store.write_cell(spec["id"], {"code": {"commit": "abc1234", "dirty": False}}, records, {})
    return root


def test_robust_and_worst_case_per_image_within_the_standard_threat(run_folder):
    rows = headline.run_rows(run_folder).set_index("defense")
    none = rows.loc["none"]
    assert none.n_images == 3 and none.attacks == 3 + 1  # pgd20, fgsm-rgb, transfer, square
    assert none.clean == pytest.approx(0.8) and none.robust == pytest.approx(0.5)
    # per image: min(0.9, .5, .6, .7, .8) = .5; min(.8, .6, .3, .7, .05) = .05; min(.7, .4, .5, .2) = .2
    assert none.worst == pytest.approx((0.5 + 0.05 + 0.2) / 3)
    assert none.worst_low <= none.worst <= none.worst_high
    defended = rows.loc["median(modality=rgbd,window=3)"]
    assert defended.robust == pytest.approx(0.55) and defended.standard == "pgd adaptive"
    assert defended.worst == pytest.approx((0.55 + 0.6 + 0.45) / 3)


def test_summary_command_ranks_rows_by_the_worst_case(run_folder, tmp_path):
    assert main(["summary", str(run_folder), "--leaderboards", str(tmp_path / "lb")]) == 0
    table = pd.read_csv(tmp_path / "lb" / "saliency-summary.csv")
    assert list(table.defense) == ["median(modality=rgbd,window=3)", "none"]  # 0.533 before 0.25
    md = (tmp_path / "lb" / "saliency-summary.md").read_text()
    assert "| 1 | jldcf-tiny |" in md and "0.250 [" in md
    with pytest.raises(SystemExit, match="no manifest.json"):
        main(["summary", str(tmp_path), "--leaderboards", str(tmp_path / "lb")])
