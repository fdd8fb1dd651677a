"""The defenses report on a hand-made table: gap, recovery and each masking flag against known values."""
import numpy as np
import pandas as pd
import pytest

from benchmark.defense_report import defense_rows, masking_flags, render, trained_rows


def _row(model, attack, S, defense="none", evaluation="-", eps=8 / 255, steps=20, surrogate="-"):
    clean = attack == "none"
    return dict(model=model, checkpoint="c", model_args="-", dataset="d", defense=defense, eval=evaluation,
                attack=attack, norm="linf", eps=0.0 if clean else eps, eps_depth=0.0 if clean else eps,
                modality="-" if clean else "rgbd", steps=1 if clean else steps, surrogate=surrogate, S=S, n_images=16,
                commit="abc", defense_ms=np.nan if defense == "none" else 2.0)


def _table(**adaptive):
    """Undefended m: clean 0.9, PGD-20 0.4, PGD at eps 1 0.35. jpeg: clean 0.88, the rest as given."""
    s = {"oblivious": 0.8, "pgd": 0.45, "fgsm": 0.6, "pgd10": 0.5, "unbounded": 0.38, "square": 0.7,
         "transfer": 0.7, **adaptive}
    return pd.DataFrame([
        _row("m", "none", 0.9), _row("m", "pgd", 0.4), _row("m", "fgsm", 0.5, steps=1),
        _row("m", "pgd", 0.35, eps=1.0, steps=10),
        _row("m", "none", 0.88, "jpeg"), _row("m", "pgd", s["oblivious"], "jpeg", "oblivious"),
        _row("m", "pgd", s["pgd"], "jpeg", "adaptive"), _row("m", "fgsm", s["fgsm"], "jpeg", "adaptive", steps=1),
        _row("m", "pgd", s["pgd10"], "jpeg", "adaptive", steps=10),
        _row("m", "pgd", s["unbounded"], "jpeg", "adaptive", eps=1.0, steps=10),
        _row("m", "art-square", s["square"], "jpeg", "adaptive"),
        _row("m", "pgd", s["transfer"], "jpeg", "oblivious", surrogate="other"),
        _row("m-at", "none", 0.85), _row("m-at", "pgd", 0.6)])


def test_gap_and_recovery_against_the_undefended_model():
    rows = defense_rows(_table(), "S")
    pgd = rows[(rows.attack == "pgd") & (rows.steps == 20) & (rows.surrogate == "-")].iloc[0]
    assert pgd.gap == pytest.approx(0.35) and pgd.recovery == pytest.approx(0.1) and pgd.clean_drop == pytest.approx(0.02)
    assert pgd.robust == pgd.adaptive == 0.45 and pgd.ms == 2.0


def test_robust_is_the_stronger_of_oblivious_and_adaptive():
    rows = defense_rows(_table(oblivious=0.42), "S")
    pgd = rows[(rows.attack == "pgd") & (rows.steps == 20) & (rows.surrogate == "-")].iloc[0]
    assert pgd.robust == 0.42 and pgd.recovery == pytest.approx(0.04)


@pytest.mark.parametrize("oblivious, asr", [(0.8, 0.75), (0.42, 0.25)])
def test_attack_success_after_the_defense_is_the_robust_runs(oblivious, asr):
    table = _table(oblivious=oblivious)
    table["ASR"] = np.where(table["eval"] == "oblivious", 0.25, 0.75)
    pgd = defense_rows(table, "S").query("attack == 'pgd' and steps == 20 and surrogate == '-'").iloc[0]
    assert pgd.ASR == asr  # adaptive is the robust run at 0.45 < 0.8; oblivious at 0.42 < 0.45


def test_a_sound_evaluation_raises_no_flag():
    assert masking_flags(_table(), "S")[("m", "c", "-", "d", 16, "jpeg")] == []


@pytest.mark.parametrize("adaptive, flag", [
    ({"fgsm": 0.3}, "iterative<=single"),
    ({"pgd10": 0.3}, "more-steps-weaker"),
    ({"unbounded": 0.45}, "unbounded>undefended"),
    ({"oblivious": 0.3}, "oblivious>adaptive"),
    ({"square": 0.3}, "black-box>white-box"),
    ({"transfer": 0.3}, "transfer>white-box"),
])
def test_each_masking_flag(adaptive, flag):
    assert masking_flags(_table(**adaptive), "S")[("m", "c", "-", "d", 16, "jpeg")] == [flag]


def test_an_adversarially_trained_model_is_held_to_its_base_at_unbounded_eps():
    weak = pd.concat([_table(), pd.DataFrame([_row("m-at", "pgd", 0.5, eps=1.0, steps=10)])])
    assert masking_flags(weak, "S")[("m-at", "c", "-", "d", 16, "none")] == ["unbounded>undefended"]
    assert masking_flags(_table(), "S")[("m", "c", "-", "d", 16, "none")] == []


def test_adversarially_trained_variant_is_compared_with_its_base(tmp_path):
    trained = trained_rows(_table(), "S")
    assert trained[["attack", "base_score", "trained"]].values.tolist() == [["none", 0.9, 0.85], ["pgd", 0.4, 0.6]]
    md = render(_table(fgsm=0.3), "saliency", "S", tmp_path / "d.png")
    assert "| m-at | m | d | 16 | pgd-20 linf 8/255 rgbd | 0.400 | **0.600** | +0.200 |" in md
    assert "| jpeg | pgd-20 linf 8/255 rgbd | 0.880 | 0.020 | 0.400 | 0.800 | 0.450 | **0.450** |" in md
    assert "Masking flags: `jpeg`: iterative<=single." in md and (tmp_path / "d.png").is_file()
