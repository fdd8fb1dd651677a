"""`make bench MODEL=clip CKPT=<file>` end to end: the trained clip-tiny's open_clip checkpoint is loaded the
open_clip way from its config and scored zero-shot on the embedded shapes; attacks lower top-1, rows reach
the classification leaderboard with top-k and ASR; a rerun resumes."""
import json

import pandas as pd
import pytest
import torch

from benchmark.runner import RunConfig, run
from models.clip import CONFIG_DIR, CLIPZeroShot

CLIP_TINY_CONFIG = CONFIG_DIR / "clip-tiny.json"

CONFIG = {"embed_dim": 32,
          "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
          "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}
SUITE = """
dataset: shapes
batch_size: 8
seed: 0
limit: 16
cells:
  - {attack: none, modality: rgb}
  - {attack: pgd, eps: [8/255], modality: rgb, steps: 5}
  - {attack: deepfool, norm: l2, eps: 0.5, modality: rgb, steps: 10, images: 8}
"""


@pytest.fixture
def clip_checkpoint(tmp_path):
    config = tmp_path / "bench-clip-small.json"
    config.write_text(json.dumps(CONFIG))
    torch.manual_seed(0)
    model = CLIPZeroShot(config=config)
    ckpt = tmp_path / "clip-small.pt"
    torch.save({"state_dict": model.model.state_dict()}, ckpt)
    return config, ckpt


def test_clip_with_a_checkpoint_runs_the_zero_shot_suite(tmp_path, pinned_clip_tiny):
    """The trained clip-tiny's open_clip checkpoint, loaded as `MODEL=clip CKPT=... --model-arg config=...`."""
    (tmp_path / "mini.yaml").write_text(SUITE)
    cfg = RunConfig(model="clip", ckpt=str(pinned_clip_tiny), suite=str(tmp_path / "mini.yaml"),
                    model_args={"config": str(CLIP_TINY_CONFIG)}, results_dir=tmp_path / "results",
                    leaderboard_dir=tmp_path / "lb")
    [root] = run(cfg)
    table = pd.read_csv(tmp_path / "lb" / "classification.csv")
    assert set(table.attack) == {"none", "pgd", "deepfool"}
    clean = table[table.attack == "none"].iloc[0]
    pgd = table[table.attack == "pgd"].iloc[0]
    assert clean.top1 >= 0.5 and pgd.top1 < clean.top1 - 0.25 and clean.ASR == 0 and pgd.ASR > 0.25, (clean, pgd)
    assert table[table.attack == "deepfool"].drop_top1.iloc[0] > 0  # against the clean score of its 8 images
    assert clean.top5 >= clean.top1 and clean.checkpoint.startswith(pinned_clip_tiny.name + "@")
    assert clean.model_args == f"config={CLIP_TINY_CONFIG}"
    assert table[table.attack == "deepfool"].n_images.iloc[0] == 8
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["dataset"] == "shapes" and manifest["n_images"] == 16
    records = [json.loads(line) for line in next((root / "cells").glob("*/records.jsonl")).read_text().splitlines()]
    assert {"rank", "top1", "linf_rgb", "seed"} <= set(records[0]) and "linf_depth" not in records[0]
    assert "top1" in (tmp_path / "lb" / "classification.md").read_text()
    mtime = (tmp_path / "lb" / "classification.csv").stat().st_mtime_ns
    run(cfg)  # resumes: every cell is done
    assert len(pd.read_csv(tmp_path / "lb" / "classification.csv")) == 3
    assert (tmp_path / "lb" / "classification.csv").stat().st_mtime_ns >= mtime


def test_a_saliency_suite_on_a_clip_model_is_a_clear_error(tmp_path, clip_checkpoint):
    config, ckpt = clip_checkpoint
    cfg = RunConfig(model="clip", ckpt=str(ckpt), suite="default", model_args={"config": str(config)},
                    results_dir=tmp_path / "results", leaderboard_dir=tmp_path / "lb")
    with pytest.raises(ValueError, match="is a saliency dataset"):
        run(cfg)
    with pytest.raises(ValueError, match="needs an open_clip architecture"):
        CLIPZeroShot()


PATCH_SUITE = """
dataset: shapes
batch_size: 16
seed: 0
limit: 16
leaderboard: patch-defenses
cells:
  - {attack: none, defense: [none, {name: patch-cleanser, per_axis: 4}]}
  - {attack: patch, norm: patch, eps: 0.04, steps: 5, params: {placement: random}}
  - {attack: patch, norm: patch, eps: 0.04, steps: 5, params: {placement: random}, defense: {name: patch-cleanser, per_axis: 4},
     eval: [oblivious, adaptive]}
"""


def test_patch_cleanser_reports_certified_accuracy_next_to_clean_and_robust(tmp_path, pinned_clip_tiny):
    (tmp_path / "patch.yaml").write_text(PATCH_SUITE)
    [root] = run(RunConfig(model="clip-tiny", ckpt=str(pinned_clip_tiny), suite=str(tmp_path / "patch.yaml"),
                           results_dir=tmp_path / "results", leaderboard_dir=tmp_path / "lb"))
    table = pd.read_csv(tmp_path / "lb" / "classification-patch-defenses.csv")
    cleansed = table[table.defense.str.startswith("patch-cleanser")]
    clean = cleansed[cleansed.attack == "none"].iloc[0]
    # a certified image is classified correctly (clip-tiny at 32 px certifies few: a mask hides a third of it)
    assert 0 <= clean.certified <= clean.top1 and clean.defense_ms > 0
    assert set(cleansed[cleansed.attack == "patch"]["eval"]) == {"oblivious", "adaptive"}
    [cell] = [c["id"] for c in json.loads((root / "manifest.json").read_text())["cells"]
              if c["attack"] == "none" and c.get("defense")]
    records = [json.loads(x) for x in (root / "cells" / cell / "records.jsonl").read_text().splitlines()]
    assert len(records) == 16 and all(r["top1"] == 1 for r in records if r["certified"] == 1)
