"""Defended cells end to end on a briefly trained tiny JL-DCF: adaptive vs oblivious, the oblivious
cells scoring the undefended cell's inputs, EOT recorded, the budget, the defenses report."""
import json

import pandas as pd
import pytest

from benchmark.runner import RunConfig, run

SUITE = """
dataset: synthetic
batch_size: 8
seed: 0
limit: 8
leaderboard: defenses
defenses: &defenses
  - {name: median, window: 3, modality: rgbd}
  - {name: bits, bits: 16, modality: depth}
  - {name: resize-pad, shrink: 0.2}
cells:
  - {attack: none, defense: [none, *defenses]}
  - {attack: pgd, eps: 8/255, modality: rgbd, steps: 10, defense: [none, *defenses], eval: [oblivious, adaptive]}
  - {attack: patch, norm: patch, eps: 0.04, modality: rgbd, steps: 3, eval: [oblivious, adaptive],
     defense: [none, {name: lgs, modality: rgbd}, {name: depth-consistency}]}
"""


@pytest.fixture(scope="module")
def defended_run(pinned_tiny, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("defenses")
    (tmp / "defenses.yaml").write_text(SUITE)
    [run_dir] = run(RunConfig(model="jldcf-tiny", ckpt=str(pinned_tiny), suite=str(tmp / "defenses.yaml"),
                              results_dir=tmp / "results", leaderboard_dir=tmp / "leaderboards"))
    table = pd.read_csv(tmp / "leaderboards" / "saliency-defenses.csv")
    return run_dir, tmp, table


def _row(table, defense_prefix, evaluation, attack="pgd"):
    rows = table[table.defense.str.startswith(defense_prefix) & (table["eval"] == evaluation) & (table.attack == attack)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def _records(run_dir, row_id):
    return [json.loads(line) for line in (run_dir / "cells" / row_id / "records.jsonl").read_text().splitlines()]


def test_adaptive_pgd_is_at_least_as_strong_as_oblivious_on_median_filtering(defended_run):
    _, _, table = defended_run
    oblivious, adaptive = _row(table, "median", "oblivious"), _row(table, "median", "adaptive")
    clean = _row(table, "median", "-", attack="none")
    assert adaptive.S <= oblivious.S + 0.005, (adaptive.S, oblivious.S)
    assert adaptive.S < clean.S - 0.05  # and it does attack


def test_oblivious_cells_score_the_inputs_the_undefended_cell_was_attacked_with(defended_run):
    run_dir, _, table = defended_run
    cells = {c["id"]: c for c in json.loads((run_dir / "manifest.json").read_text())["cells"]}
    by_label = {}
    for cid, c in cells.items():
        if c["attack"] == "pgd":
            by_label[((c.get("defense") or {}).get("name", "none"), c.get("eval"))] = _records(run_dir, cid)
    plain, same, adaptive = by_label[("none", None)], by_label[("bits", "oblivious")], by_label[("bits", "adaptive")]
    assert [r["seed"] for r in same] == [r["seed"] for r in plain] != [r["seed"] for r in adaptive]
    assert [r["linf_depth"] for r in same] == [r["linf_depth"] for r in plain]
    # 16-bit depth quantisation barely changes an input: the oblivious score is the undefended one
    assert abs(_row(table, "bits", "oblivious").S - _row(table, "none", "-").S) < 0.01
    for records in by_label.values():  # every crafted input within the budget
        assert max(r["linf_rgb"] for r in records) <= 8 / 255 + 1e-6


def test_randomized_defense_records_its_eot_draws_and_defense_time(defended_run):
    _, _, table = defended_run
    adaptive = _row(table, "resize-pad", "adaptive")
    assert adaptive.params == "eot=4" and _row(table, "resize-pad", "oblivious").params == "-"
    assert adaptive.defense_ms > 0 and pd.isna(_row(table, "none", "-").get("defense_ms", float("nan")))


def test_defenses_report_shows_both_numbers_the_gap_and_a_plot(defended_run):
    _, tmp, _ = defended_run
    md = (tmp / "leaderboards" / "saliency-defenses.md").read_text()
    assert "## Across models: mean / min" in md and "| defense | setting | clean | clean drop |" in md
    assert "median(modality=rgbd,window=3) | pgd-10 linf 8/255 rgbd" in md
    assert (tmp / "leaderboards" / "saliency-defenses.png").stat().st_size > 1000
    assert not (tmp / "leaderboards" / "saliency.csv").exists()  # the suite's own table only


def test_a_patch_defense_is_scored_on_where_it_located_the_patch(defended_run):
    run_dir, _, table = defended_run
    cells = json.loads((run_dir / "manifest.json").read_text())["cells"]
    patch = {(c.get("defense") or {}).get("name", "none"): c["id"] for c in cells
             if c["attack"] == "patch" and c.get("eval") != "adaptive"}
    records = _records(run_dir, patch["lgs"])
    areas = [r["mask_tp"] + r["mask_fn"] for r in records]  # every true patch pixel is found or missed
    assert len(set(areas)) == 1 and areas[0] > 0
    assert "mask_tp" not in _records(run_dir, patch["none"])[0]
    for name in ("lgs", "depth-consistency"):
        row = _row(table, name, "oblivious", attack="patch")
        assert 0 < row.SmIoU <= 1 and 0 < row.NmIoU <= 1 and 0 <= row.mask_precision <= 1, row
    tp, fp, fn = (sum(r[k] for r in records) for k in ("mask_tp", "mask_fp", "mask_fn"))
    assert _row(table, "lgs", "oblivious", attack="patch").SmIoU == pytest.approx(tp / (tp + fp + fn))


def test_patch_defenses_report_localisation_the_best_defense_and_a_gallery(defended_run):
    run_dir, tmp, _ = defended_run
    md = (tmp / "leaderboards" / "saliency-defenses.md").read_text()
    assert "## Patch localisation: mean / min over models" in md and "## Best patch defense per attack" in md
    assert "| lgs(modality=rgbd,overlap=5,smoothing=2.3,threshold=0.1,window=15) | patch-3 patch 0.04 rgbd | adaptive | 1 |" in md
    for name in ("lgs", "depth-consistency"):  # the adaptive rgbd patch through each defense, linked
        assert (run_dir / "figures" / f"{name}.png").stat().st_size > 1000
        assert f"[{name}](saliency-defenses-figures/jldcf-tiny-{name}.png)" in md
        assert (tmp / "leaderboards" / "saliency-defenses-figures" / f"jldcf-tiny-{name}.png").is_file()
