"""End to end on the pinned tiny JL-DCF: run, resume, leaderboard, plot, provenance, intervals."""
import json
import os
import stat

import pandas as pd
import pytest

from benchmark import leaderboard, runner
from benchmark.runner import RunConfig, run
from benchmark.suite import load_suite


def _config(ckpt, tmp_path):
    return RunConfig(model="jldcf-tiny", ckpt=str(ckpt), suite="smoke", results_dir=tmp_path / "results",
                     leaderboard_dir=tmp_path / "leaderboards")


@pytest.fixture(scope="module")
def smoke_run(pinned_tiny, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    [run_dir] = run(_config(pinned_tiny, tmp))
    return run_dir, tmp


def test_run_writes_records_manifest_leaderboard_and_plot(smoke_run):
    run_dir, tmp = smoke_run
    suite = load_suite("smoke")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for key in ("git", "config_sha256", "libraries", "device", "seed", "checkpoint_sha256", "dataset_sha256"):
        assert manifest[key] not in (None, "", {}), key
    assert manifest["libraries"]["torchattacks"] and len(manifest["checkpoint_sha256"]) == 64
    for cell in suite.cells:
        lines = (run_dir / "cells" / cell.id / "records.jsonl").read_text().splitlines()
        assert len(lines) == suite.limit and "S" in json.loads(lines[0]) and "linf_rgb" in json.loads(lines[0])
    table = pd.read_csv(tmp / "leaderboards" / "saliency.csv")
    assert len(table) == len(suite.cells)
    assert (tmp / "leaderboards" / "saliency.md").read_text().startswith("# Leaderboard")
    assert (run_dir / "robustness.png").stat().st_size > 1000


def test_written_files_and_cells_get_the_umask_mode_not_mkstemps_private_one(smoke_run):
    run_dir, tmp = smoke_run
    mask = os.umask(0)
    os.umask(mask)
    cell = next((run_dir / "cells").iterdir())
    assert stat.S_IMODE(cell.stat().st_mode) == 0o777 & ~mask
    for path in (tmp / "leaderboards" / "saliency.csv", tmp / "leaderboards" / "saliency.md", run_dir / "manifest.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path


def test_attacks_lower_the_metric_within_budget(smoke_run):
    run_dir, tmp = smoke_run
    table = pd.read_csv(tmp / "leaderboards" / "saliency.csv")
    clean = table[table.attack == "none"].S.item()
    pgd = table[(table.attack == "pgd") & (table.modality == "rgbd")].S.item()
    assert pgd < clean - 0.05, (clean, pgd)
    assert (table.drop_S[table.attack != "none"] > 0).all()
    # attack success: none on the clean cell itself, some under PGD on both modalities
    asr = table.set_index(["attack", "modality"]).ASR
    assert asr["none"].item() == 0 and 0 < asr["pgd", "rgbd"] <= 1, asr
    for cell in load_suite("smoke").cells:
        for line in (run_dir / "cells" / cell.id / "records.jsonl").read_text().splitlines():
            r = json.loads(line)
            assert r["linf_rgb"] <= cell.threat.eps + 1e-6 and r["linf_depth"] <= cell.threat.depth_eps + 1e-6


def test_rows_carry_bootstrap_intervals_around_their_scores(smoke_run):
    run_dir, tmp = smoke_run
    table = pd.read_csv(tmp / "leaderboards" / "saliency.csv")
    for m in ("S", "MAE"):
        assert (table[f"{m}_lo"] <= table[m] + 1e-9).all() and (table[m] <= table[f"{m}_hi"] + 1e-9).all(), m
    pgd = table[(table.attack == "pgd") & (table.modality == "rgbd")].iloc[0]
    assert pgd.S_hi - pgd.S_lo > 0.01 and pgd.ASR_lo <= pgd.ASR <= pgd.ASR_hi  # 8 images: a wide interval
    md = (tmp / "leaderboards" / "saliency.md").read_text()
    assert f"{pgd.S:.3f} ({pgd.S_lo:.3f}-{pgd.S_hi:.3f})" in md and "95% bootstrap interval" in md


def test_killed_run_resumes_and_skips_finished_cells(pinned_tiny, tmp_path, monkeypatch):
    real = runner.run_cell
    calls = []

    def dies_after_two(cell, *args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(cell.id)
        return real(cell, *args, **kwargs)

    monkeypatch.setattr(runner, "run_cell", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        run(_config(pinned_tiny, tmp_path))
    cells_dir = next((tmp_path / "results").iterdir()) / "cells"
    assert sorted(p.name for p in cells_dir.iterdir()) == sorted(calls)  # no half-written cell left

    resumed = []
    monkeypatch.setattr(runner, "run_cell", lambda cell, *a, **k: resumed.append(cell.id) or real(cell, *a, **k))
    run(_config(pinned_tiny, tmp_path))
    all_ids = [c.id for c in load_suite("smoke").cells]
    assert sorted(resumed) == sorted(set(all_ids) - set(calls))
    resumed.clear()
    run(_config(pinned_tiny, tmp_path))
    assert resumed == []


def test_cells_computed_by_other_code_are_recomputed_unless_reused(pinned_tiny, tmp_path, monkeypatch):
    """A finished cell is reused only for the same code (commit, uncommitted changes, libraries): a
    leaderboard row always says which code computed it."""
    suite = tmp_path / "two.yaml"
    suite.write_text("dataset: synthetic\nbatch_size: 4\nlimit: 4\ncells:\n  - {attack: none}\n"
                     "  - {attack: fgsm, eps: 8/255}\n")
    cfg = RunConfig(**{**vars(_config(pinned_tiny, tmp_path)), "suite": str(suite)})
    run(cfg)
    computed = []
    real = runner.run_cell
    monkeypatch.setattr(runner, "run_cell", lambda cell, *a, **k: computed.append(cell.id) or real(cell, *a, **k))
    run(cfg)
    assert computed == []  # same code: nothing recomputed
    here = runner.code_state()
    other = {**here, "commit": "0" * 40, "dirty": False}
    other.pop("diff_sha256", None)
    monkeypatch.setattr(runner, "code_state", lambda: other)
    run(RunConfig(**{**vars(cfg), "reuse_cells": True}))
    assert computed == []  # explicitly reused: the rows keep the commit that computed them
    table = leaderboard.read_table(tmp_path / "leaderboards" / "saliency.csv")
    assert set(table.commit) == {leaderboard.commit_label(here)}
    run(cfg)
    assert sorted(computed) == sorted(c.id for c in load_suite(str(suite)).cells)
    table = leaderboard.read_table(tmp_path / "leaderboards" / "saliency.csv")
    assert set(table.commit) == {"000000000000"} and len(table) == len(computed)  # digits only, still text


def test_cells_are_reproducible(smoke_run, pinned_tiny, tmp_path):
    run_dir, tmp = smoke_run
    [again] = run(_config(pinned_tiny, tmp_path))
    cell = next(c for c in load_suite("smoke").cells if c.attack == "pgd")
    a = (run_dir / "cells" / cell.id / "records.jsonl").read_text()
    b = (again / "cells" / cell.id / "records.jsonl").read_text()
    assert a == b


def test_an_attack_that_changes_the_surrogate_is_an_error(toy_model, toy_batch, tmp_path, monkeypatch):
    """A transfer cell's surrogate gets the same integrity check as the target."""
    import copy

    import torch

    from attacks import ATTACKS, ThreatModel
    from benchmark.checks import ModelTampered, model_fingerprint
    from benchmark.results import RunStore
    from benchmark.suite import Cell, Suite
    from benchmark.tasks import SaliencyTask

    surrogate = copy.deepcopy(toy_model)

    class Tampering:
        backend, norms = "test", ("linf",)

        def __call__(self, dense, u0, target, threat, task, **params):
            with torch.no_grad():
                surrogate.net[0].weight.add_(1e-3)
            return u0.clone()

    monkeypatch.setitem(ATTACKS, "tamper", Tampering())
    cell = Cell("tamper", ThreatModel(eps=4 / 255), surrogate="toy")
    suite = Suite("t", ("synthetic",), 4, 0, [cell])
    with pytest.raises(ModelTampered, match="surrogate"):
        runner.run_cell(cell, toy_model, SaliencyTask(), [toy_batch], suite, model_fingerprint(toy_model),
                        RunStore(tmp_path), crafter=surrogate)
