"""The poisoning grid (benchmark/poisoning.py) and its leaderboard (benchmark/poisoning_report.py): a short
grid on 64 captioned shapes (2 seeds x the clean model and BadNets without defense, with SafeCLIP and with
CleanCLIP) writes its rows and the Markdown's mean and spread, scores the models it keeps, resumes, and
CleanCLIP fine-tunes the stored base; the CSV path on a tiny CSV and class-folder set written here; bad
input fails before anything is written; compare on the poisoning table."""
import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import benchmark.poisoning as poisoning
from benchmark.cli import main
from benchmark.compare import compare, load_tables
from benchmark.data.shapes import CLASSES, CaptionedShapes
from benchmark.leaderboard import POISONING_KEY, read_table
from benchmark.metrics.poisoning import backdoor_success
from benchmark.poisoning import PoisonConfig, PoisonRecipe, run_poisoning
from benchmark.poisoning_report import spread
from benchmark.provenance import sha256_file
from benchmark.training.clip import shape_images
from benchmark.training.contrastive import train_contrastive
from models.clip import clip_tiny

RECIPE = PoisonRecipe(pairs=64, epochs=4, batch_size=32, held_out=32, clean_pairs=32)  # SafeCLIP splits at epoch 4


def config(tmp, **kw) -> PoisonConfig:
    return PoisonConfig(**{"attacks": ("badnets",), "defenses": ("none", "safeclip", "cleanclip"), "seeds": (0, 1),
                           "rate": 0.125, "recipe": RECIPE, "results_dir": tmp / "results",
                           "leaderboard_dir": tmp / "leaderboards", **kw})


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grid")
    cfg = config(tmp)
    return cfg, run_poisoning(cfg)


def table(cfg) -> pd.DataFrame:
    return read_table(cfg.leaderboard_dir / "poisoning.csv")


def summary(run, cell: str) -> dict:
    return json.loads((run / "cells" / cell / "summary.json").read_text())


def counting(trained: list):
    """train_contrastive, noting (objective, pairs, seed) of each training in ``trained``."""
    def counted(wrapper, pairs, objective, recipe, *args, **kwargs):
        trained.append((objective.name, len(pairs), recipe.seed))
        return train_contrastive(wrapper, pairs, objective, recipe, *args, **kwargs)
    return counted


def test_a_short_grid_writes_a_row_per_cell_and_the_markdown_mean_and_spread_over_seeds(grid):
    cfg, run = grid
    rows = table(cfg)
    assert list(rows.columns[:len(POISONING_KEY)]) == POISONING_KEY
    assert len(rows) == 8 and not rows.duplicated(POISONING_KEY).any()
    clean, attacked = rows[rows.attack == "none"], rows[rows.attack == "badnets"]
    assert set(clean.defense) == {"none"} and set(clean.rate) == {0} and set(clean.target) == {"-"}
    assert sorted(attacked.defense) == ["cleanclip"] * 2 + ["none"] * 2 + ["safeclip"] * 2
    assert (attacked.rate == 0.125).all() and (attacked.target == "star").all() and (attacked.poisoned == 8).all()
    assert (rows.train_pairs == 64).all() and rows.commit.str.len().ge(12).all()
    for m in ("top1", "top5"):
        assert rows[m].between(0, 1).all()
    assert attacked.backdoor_success.between(0, 1).all() and attacked.backdoor_baseline.between(0, 1).all()
    assert clean.backdoor_success.isna().all()
    assert attacked[attacked.defense == "safeclip"].safe_poisoned.between(0, 1).all()

    md = (cfg.leaderboard_dir / "poisoning.md").read_text()
    g = attacked[attacked.defense == "none"]
    assert (f"| badnets | 0.125 | star | none | 2 | {spread(g.top1)} | {spread(g.backdoor_success)} | "
            f"{spread(g.backdoor_baseline)} | - |") in md
    assert spread(pd.Series([0.5, 0.7])) == "0.600 ± 0.141 (0.500-0.700)" and spread(pd.Series([0.5])) == "0.500"
    assert md.index("| none | 0 | - | none | 2 |") < md.index("| badnets | 0.125 | star | none |") \
        < md.index("| badnets | 0.125 | star | safeclip |") < md.index("| badnets | 0.125 | star | cleanclip |")
    assert (cfg.leaderboard_dir / "poisoning-safeclip.png").is_file() and (run / "figures" / "safeclip.png").is_file()


def test_cells_record_their_training_and_safeclip_its_splits(grid):
    cfg, run = grid
    s = summary(run, "badnets-safeclip-s0")
    assert s["cell"] == {"attack": "badnets", "defense": "safeclip", "seed": 0} and s["recipe"]["pairs"] == 64
    assert s["attack_params"]["rate"] == 0.125 and s["defense_params"]["unimodal_warmup"] == 2
    assert s["training"]["epochs"] == 6 and s["training"]["seed"] == 0 and s["code"]["commit"]  # 1.5 x 4
    assert [h["phase"] for h in s["history"]] == ["unimodal warm-up", "unimodal warm-up", "clip warm-up"] + ["split"] * 3
    assert not any(k.startswith("similarity_") for h in s["history"] for k in h)
    split = [json.loads(line) for line in (run / "cells" / "badnets-safeclip-s0" / "records.jsonl").open()][-1]
    assert len(split["similarity_poisoned"]) == 8 and len(split["similarity_clean"]) == 56
    row = table(cfg).query("defense == 'safeclip' and seed == 0").iloc[0]
    assert row.safe_poisoned == pytest.approx(split["safe_poisoned"] / 8)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["target"] == "star" and len(manifest["cells"]) == 8 and manifest["train_sha256"]


def test_the_stored_models_are_the_ones_scored_and_the_clean_model_gives_the_baseline(grid):
    cfg, run = grid
    test = CaptionedShapes("test")
    x, _, y = shape_images(test)
    trigger = poisoning.build_poisoning("badnets", target="star", rate=0.125, seed=0).apply_trigger(x)

    def scores(name: str) -> tuple[float, float]:
        wrapper = clip_tiny()
        wrapper.load_checkpoint(run / "models" / f"{name}-s0.pt")
        wrapper.eval().set_classes(CLASSES)
        with torch.no_grad():
            return (wrapper(x).argmax(1) == y).float().mean().item(), \
                backdoor_success(wrapper(trigger), y, CLASSES.index("star"))

    rows = table(cfg).query("seed == 0 and attack == 'badnets'").set_index("defense")
    assert [rows.loc["none", "top1"], rows.loc["none", "backdoor_success"]] == pytest.approx(scores("badnets"), abs=1e-6)
    assert table(cfg).query("seed == 0 and attack == 'none'").top1.item() == pytest.approx(scores("none")[0], abs=1e-6)
    assert rows.backdoor_baseline.tolist() == pytest.approx([scores("none")[1]] * 3, abs=1e-6)
    base = summary(run, "badnets-cleanclip-s0")["base"]
    assert base == {"model": "badnets-s0.pt", "sha256": sha256_file(run / "models" / "badnets-s0.pt")}


def test_a_rerun_skips_finished_cells_and_cleanclip_finetunes_the_stored_base(grid, monkeypatch):
    cfg, run = grid
    before = table(cfg)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(poisoning, "train_contrastive", no_training)
    assert run_poisoning(cfg) == run
    pd.testing.assert_frame_equal(table(cfg), before)

    old = summary(run, "badnets-cleanclip-s1")
    for path in (run / "cells" / "badnets-cleanclip-s1").iterdir():
        path.unlink()
    (run / "cells" / "badnets-cleanclip-s1").rmdir()
    trained = []
    monkeypatch.setattr(poisoning, "train_contrastive", counting(trained))
    run_poisoning(cfg)
    assert trained == [("cleanclip", 32, 1)]  # the base model came from the run folder, not a new pre-training
    new = summary(run, "badnets-cleanclip-s1")
    assert new["metrics"] == pytest.approx(old["metrics"]) and new["base"] == old["base"]  # seeded: the same numbers
    assert len(table(cfg)) == 8


def test_reused_cells_and_models_must_come_from_the_same_attack_parameters(grid, monkeypatch):
    cfg, run = grid
    cell, sidecar = run / "cells" / "badnets-none-s1" / "summary.json", run / "models" / "badnets-s1.json"
    for path in (cell, sidecar):  # as if another code's BadNets (a 5 px patch) had trained them
        record = json.loads(path.read_text())
        record["attack_params"]["patch"] = 5
        path.write_text(json.dumps(record))
    trained = []
    monkeypatch.setattr(poisoning, "train_contrastive", counting(trained))
    run_poisoning(replace(cfg, reuse_cells=True))
    assert trained == [("none", 64, 1)]  # BadNets' pre-training of seed 1, again; every other cell reused
    assert [json.loads(p.read_text())["attack_params"]["patch"] for p in (cell, sidecar)] == [4, 4]


def test_work_order_puts_clean_models_first_and_cleanclip_after_the_models_it_fine_tunes():
    cells = [poisoning.PoisonCell(a, d, 0) for a in ("badnets", "none") for d in ("cleanclip", "roclip", "none", "safeclip")]
    assert [(c.attack, c.defense) for c in poisoning.work_order(cells)] == [
        ("none", "cleanclip"), ("none", "roclip"), ("none", "none"), ("none", "safeclip"), ("badnets", "safeclip"),
        ("badnets", "none"), ("badnets", "roclip"), ("badnets", "cleanclip")]


def test_ray_workers_share_the_pretrained_models_and_give_the_local_loops_numbers(tmp_path):
    pytest.importorskip("ray")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a worker: the same float reductions, so the same bits
    try:
        local = run_poisoning(config(tmp_path / "local", seeds=(0,)))
    finally:
        torch.set_num_threads(threads)
    ray_run = run_poisoning(config(tmp_path / "ray", seeds=(0,), workers=2))
    for cell in ("none-none-s0", "badnets-none-s0", "badnets-safeclip-s0", "badnets-cleanclip-s0"):
        assert summary(ray_run, cell)["metrics"] == summary(local, cell)["metrics"]
    # the clean model (every cell's baseline, needed by both workers at once) and BadNets' (CleanCLIP's base)
    assert sorted(p.name for p in (ray_run / "models").glob("*.pt")) == ["badnets-s0.pt", "none-s0.pt"]
    for name in ("none-s0.pt", "badnets-s0.pt"):
        assert sha256_file(ray_run / "models" / name) == sha256_file(local / "models" / name)
    assert summary(ray_run, "badnets-cleanclip-s0")["base"]["sha256"] == sha256_file(ray_run / "models" / "badnets-s0.pt")


def write_own_data(tmp, n_pairs: int = 48, n_eval: int = 32, sep: str = "\t", blank: int | None = None,
                   missing: int | None = None):
    """A tab-separated CSV (columns path, caption; image paths relative to its folder) of shapes train
    images saved as PNGs, and a class-folder evaluation set of shapes test images."""
    data, folder = tmp / "data", tmp / "eval"
    (data / "images").mkdir(parents=True)
    rows = []
    for i in range(n_pairs):
        item = CaptionedShapes("train", n=n_pairs)[i]
        Image.fromarray(item.rgb).save(data / "images" / f"{i}.png")
        rows.append({"path": f"images/{i}.png", "caption": "  " if i == blank else item.caption})
    if missing is not None:
        (data / "images" / f"{missing}.png").unlink()
    pd.DataFrame(rows).to_csv(data / "pairs.tsv", sep=sep, index=False)
    for i in range(n_eval):
        item = CaptionedShapes("test")[i]
        (folder / CLASSES[item.label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(item.rgb).save(folder / CLASSES[item.label] / f"{i}.png")
    return data / "pairs.tsv", folder


def poison_args(tmp, *extra: str) -> list[str]:
    return ["poison", "--pairs", "48", "--epochs", "1", "--batch-size", "24", "--defenses", "none", "--seeds", "1",
            "--results", str(tmp / "results"), "--leaderboards", str(tmp / "leaderboards"), *extra]


def test_own_data_from_a_csv_and_a_class_folder_set(tmp_path):
    csv, folder = write_own_data(tmp_path)
    args = ["--data", str(csv), "--eval-data", str(folder), "--image-col", "path", "--caption-col", "caption",
            "--target", "star", "--attacks", "badnets,targeted", "--rate", "0.25"]
    assert main(poison_args(tmp_path, *args)) == 0
    rows = read_table(tmp_path / "leaderboards" / "poisoning.csv").set_index("attack")
    assert sorted(rows.index) == ["badnets", "none", "targeted"] and (rows.train_pairs == 48).all()
    assert rows.dataset.str.startswith("pairs.tsv@").all() and rows.eval_dataset.str.startswith("eval@").all()
    assert rows.loc["badnets", "poisoned"] == 12 and rows.loc["targeted", "poisoned"] == 12
    assert 0 <= rows.loc["targeted", "targeted_success"] <= 1 and 0 <= rows.loc["badnets", "backdoor_success"] <= 1
    run = next((tmp_path / "results" / "poisoning").iterdir())
    s = summary(run, "targeted-none-s0")
    assert s["attack_params"]["captions"]["templates"][0] == "a photo of a {}."  # the zero-shot prompts name it
    assert math.isclose(s["metrics"]["top1"], rows.loc["targeted", "top1"], abs_tol=1e-6)


@pytest.mark.parametrize("case", ["missing image", "empty caption", "rate above 1", "negative rate", "nan rate",
                                  "unknown target", "unknown target on the shapes", "unknown attack"])
def test_bad_input_is_an_error_naming_it_and_nothing_is_written(case, tmp_path, capsys):
    csv, folder = write_own_data(tmp_path, missing=5 if case == "missing image" else None,
                                 blank=7 if case == "empty caption" else None)
    own = ["--data", str(csv), "--eval-data", str(folder), "--image-col", "path", "--caption-col", "caption",
           "--attacks", "badnets"]
    args, named = {
        "missing image": (own + ["--target", "star"], f"row 6: image not found: {csv.parent / 'images' / '5.png'}"),
        "empty caption": (own + ["--target", "star"], "pairs.tsv, row 8: empty caption (column 'caption')"),
        "rate above 1": (["--rate", "1.5"], "got 1.5"),
        "negative rate": (["--rate", "-0.1"], "got -0.1"),
        "nan rate": (["--rate", "nan"], "got nan"),
        "unknown target": (own + ["--target", "dragon"], "target class 'dragon' is not in the evaluation set eval@"),
        "unknown target on the shapes": (["--target", "dragon", "--attacks", "wanet"], "'dragon'"),
        "unknown attack": (["--attacks", "badnets,sleeper"], "'sleeper'"),
    }[case]
    assert main(poison_args(tmp_path, *args)) == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "results").exists() and not (tmp_path / "leaderboards").exists()


def test_compare_finds_no_regression_between_identical_tables_and_flags_a_worse_success(grid):
    cfg, _ = grid
    base = load_tables(None, cfg.leaderboard_dir)
    assert set(base) == {"poisoning"}
    report, regressed = compare(base, load_tables(None, cfg.leaderboard_dir))
    assert not regressed and "8 common rows, 0 changed" in report and "added" not in report

    worse = base["poisoning"].copy()
    row = (worse.defense == "safeclip") & (worse.seed == 1)
    worse.loc[row, "backdoor_success"] += 0.2
    report, regressed = compare(base, {"poisoning": worse})
    assert regressed and "backdoor_success +0.2000 WORSE" in report and "defense=safeclip" in report
    better = base["poisoning"].copy()
    better.loc[row, "backdoor_success"] -= 0.1
    better.loc[row, "top1"] += 0.1
    report, regressed = compare(base, {"poisoning": better})
    assert not regressed and "1 changed" in report
    lower = base["poisoning"].copy()
    lower.loc[row, "top1"] -= 0.1
    report, regressed = compare(base, {"poisoning": lower})
    assert regressed and "top1 -0.1000 WORSE" in report
    other_seed = base["poisoning"].assign(seed=base["poisoning"].seed + 2)
    report, _ = compare(base, {"poisoning": other_seed})
    assert "0 common rows" in report and report.count("added: ") == 8


def test_seeds_option_takes_a_count_or_a_list():
    from benchmark.cli import _seeds

    assert _seeds("3") == (0, 1, 2) and _seeds("0,4") == (0, 4) and _seeds("5,") == (5,)
    with pytest.raises(SystemExit, match="--seeds"):
        _seeds("x")
    with pytest.raises(SystemExit, match="the one seed 0 is --seeds 0,"):
        _seeds("0")
    assert np.array_equal(poisoning.split_names("badnets, blended wanet"), ["badnets", "blended", "wanet"])
