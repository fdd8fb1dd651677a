"""Our own attacks through the runner: universal fitting and its artifact, transfer cells crafted on
a surrogate, L0 cells, and the leaderboard columns and transfer matrix they produce."""
import json

import pandas as pd
import pytest
import torch

from benchmark.runner import RunConfig, run

SUITE = """
dataset: synthetic
batch_size: 8
seed: 0
limit: 8
cells:
  - {attack: none}
  - {attack: uap, eps: [8/255], modality: [rgbd], steps: 1, params: {fit_images: 16, epochs: 4}}
  - {attack: jsma, norm: l0, eps: [0.01], modality: [rgb], steps: 2}
  - {attack: pgd, eps: [8/255], modality: [rgbd], steps: 2}
  - {attack: pgd, eps: [8/255], modality: [rgbd], steps: 2, surrogate: [jldcf-tiny, bbsnet, d3net, bbsnet+d3net, jldcf+d3net]}
  - {attack: zoo, eps: [8/255], modality: [rgbd], queries: 60, images: 4, params: {coords: 8}}
  - {attack: patch, norm: patch, eps: [0.04], modality: [rgb], steps: 2, params: {eot_samples: 1}}
"""


@pytest.fixture(scope="module")
def other_weights(pinned_tiny, tmp_path_factory):
    """The trained tiny model with every weight moved by noise of 30% of its tensor's spread: a surrogate
    of the same architecture that is not the target."""
    torch.manual_seed(1)
    sd = torch.load(pinned_tiny, weights_only=True)
    noisy = {k: v + 0.3 * v.std() * torch.randn_like(v) if v.is_floating_point() and v.numel() > 1 and "running" not in k
             else v for k, v in sd.items()}
    out = tmp_path_factory.mktemp("surrogate") / "jldcf-tiny-other.pt"
    torch.save(noisy, out)
    return out


@pytest.fixture(scope="module")
def own_run(pinned_tiny, other_weights, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("own")
    (tmp / "own.yaml").write_text(SUITE)
    cfg = RunConfig(model="jldcf-tiny", ckpt=str(pinned_tiny), suite=str(tmp / "own.yaml"),
                    surrogate_ckpts={"jldcf-tiny": str(other_weights)}, results_dir=tmp / "results",
                    leaderboard_dir=tmp / "leaderboards")
    [run_dir] = run(cfg)
    return run_dir, tmp


def test_universal_perturbation_is_fitted_once_and_saved(own_run):
    run_dir, _ = own_run
    (pt,) = (run_dir / "universal").glob("*.pt")
    meta = json.loads(pt.with_suffix(".json").read_text())
    assert meta["fit_dataset"] == "synthetic" and meta["fit_images"] == 16 and meta["kind"] == "perturbation"
    assert pt.with_name(pt.stem + "-rgb.png").is_file() and pt.with_name(pt.stem + "-depth.png").is_file()


def test_leaderboard_has_l0_surrogate_and_transfer_matrix(own_run):
    _, tmp = own_run
    table = pd.read_csv(tmp / "leaderboards" / "saliency.csv")
    clean = table[table.attack == "none"].S.item()
    jsma = table[table.attack == "jsma"].iloc[0]
    assert jsma.norm == "l0" and 0 < jsma.l0 <= 0.01 and jsma.S < clean
    moved = table[table.surrogate != "-"].set_index("surrogate")
    white_box = table[(table.attack == "pgd") & (table.surrogate == "-")].S.item()
    # the ensemble with jldcf itself is skipped: not transfer
    assert sorted(moved.index) == ["bbsnet-tiny", "bbsnet-tiny+d3net-tiny", "d3net-tiny", "jldcf-tiny"]
    assert moved.surrogate_checkpoint["jldcf-tiny"].startswith("jldcf-tiny-other")
    assert moved.surrogate_checkpoint["bbsnet-tiny+d3net-tiny"].count("+") == 1
    # crafted on other weights: it transfers (S drops) but less than the white-box attack on the target itself
    for surrogate in moved.index:
        assert white_box + 0.02 < moved.S[surrogate] < clean, (surrogate, white_box, moved.S[surrogate], clean)
    assert table[table.attack == "uap"].S.item() < clean
    md = (tmp / "leaderboards" / "saliency-transfer.md").read_text()
    assert "| jldcf-tiny |" in md and (tmp / "leaderboards" / "saliency-transfer.png").stat().st_size > 1000
    loo = md.split("## Leave-one-out ensembles")[1]
    strongest = "bbsnet-tiny" if moved.S["bbsnet-tiny"] < moved.S["d3net-tiny"] else "d3net-tiny"
    ensemble = moved.S["bbsnet-tiny+d3net-tiny"]
    assert f"| jldcf-tiny | bbsnet-tiny+d3net-tiny | {ensemble:.3f} | {strongest} " in loo


def test_surrogate_of_another_input_size_sees_its_own_resolution(toy_model):
    """A transfer surrogate (toy, 48 px) crafting on a 128 px batch: inputs and logits are resized."""
    import torch

    from attacks import ThreatModel
    from benchmark.data import SyntheticRGBD, make_batch
    from benchmark.tasks import SaliencyTask

    task = SaliencyTask()
    ds = SyntheticRGBD("test")
    batch = make_batch([ds[i] for i in range(2)], 128)
    space = task.attack_space(batch, ThreatModel(modality="rgbd"))
    u = space.initial().requires_grad_(True)
    logits = task.attacked_model(toy_model, space)(u)
    assert logits.shape == (2, 1, 128, 128)
    (g,) = torch.autograd.grad(task.loss(logits, batch.target).sum(), u)
    assert g.abs().sum() > 0


def test_cell_on_fewer_images_drops_from_the_clean_score_of_those_images(own_run):
    run_dir, tmp = own_run
    table = pd.read_csv(tmp / "leaderboards" / "saliency.csv")
    zoo = table[table.attack == "zoo"].iloc[0]
    assert zoo.n_images == 4 and zoo.queries == 60 and 1 < zoo.queries_used <= 60
    clean_cell = next(p for p in (run_dir / "cells").iterdir() if json.loads((p / "summary.json").read_text())["cell"]["attack"] == "none")
    first4 = [json.loads(line)["S"] for line in (clean_cell / "records.jsonl").read_text().splitlines()[:4]]
    assert abs(zoo.drop_S - (sum(first4) / 4 - zoo.S)) < 1e-6
    for line in (run_dir / "cells").glob("*/records.jsonl"):
        if "queries" in line.read_text():
            assert all(0 < json.loads(r)["queries"] <= 60 for r in line.read_text().splitlines())


def test_patch_rows_have_patch_excluded_scores_against_the_same_clean_pixels(own_run):
    run_dir, tmp = own_run
    table = pd.read_csv(tmp / "leaderboards" / "saliency.csv")
    patch = table[table.attack == "patch"].iloc[0]
    assert 0 < patch.S_nopatch < 1 and pd.notna(patch.drop_S_nopatch) and "wF_nopatch" not in table
    assert table[table.attack != "patch"].S_nopatch.isna().all()
    cell = next(p for p in (run_dir / "cells").iterdir()
                if json.loads((p / "summary.json").read_text())["cell"]["attack"] == "patch")
    clean_nopatch = json.loads((cell / "summary.json").read_text())["clean_metrics_nopatch"]["S"]
    assert abs(patch.drop_S_nopatch - (clean_nopatch - patch.S_nopatch)) < 1e-6
