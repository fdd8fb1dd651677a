import subprocess

import pandas as pd

from benchmark.compare import compare, load_tables
from benchmark.leaderboard import KEY


def _row(attack="pgd", eps=8 / 255, S=0.5, MAE=0.2, **key):
    return {"model": "m", "checkpoint": "c", "model_args": "-", "dataset": "d", "n_images": 64, "defense": "none",
            "eval": "-", "attack": attack,
            "modality": "rgbd", "norm": "linf", "eps": eps, "eps_depth": eps, "steps": 10, "rel_step": 0.25,
            "queries": float("nan"), "surrogate": "-", "surrogate_checkpoint": "-", "params": "-", "seed": 0,
            "batch_size": 16, "commit": "abc", "S": S, "MAE": MAE, **key}


def test_compare_flags_regression_beyond_tolerance_and_lists_row_changes():
    base = {"saliency": pd.DataFrame([_row(), _row("fgsm")])}
    head = {"saliency": pd.DataFrame([_row(S=0.48), _row("bim")])}
    report, regressed = compare(base, head)
    assert regressed and "S -0.0200 WORSE" in report
    assert "added: " in report and "attack=bim" in report and "removed: " in report and "attack=fgsm" in report
    _, regressed = compare(base, head, {"S": 0.05})
    assert not regressed
    report, regressed = compare(base, {"saliency": pd.DataFrame([_row(MAE=0.25)])})
    assert regressed and "MAE +0.0500 WORSE" in report  # lower is better for MAE
    _, regressed = compare(base, {"saliency": pd.DataFrame([_row(S=0.9, MAE=0.1)])})
    assert not regressed


def test_report_shows_the_base_interval_next_to_each_change():
    base = {"saliency": pd.DataFrame([_row(S=0.5, S_lo=0.46, S_hi=0.54)])}
    report, regressed = compare(base, {"saliency": pd.DataFrame([_row(S=0.485, S_lo=0.44, S_hi=0.53)])}, {"S": 0.02})
    assert not regressed and "S -0.0150 [base 95% CI 0.460-0.540]" in report


def test_table_from_before_a_key_column_existed_still_joins():
    old = pd.DataFrame([_row()]).drop(columns=["queries", "surrogate", "params", "defense", "eval"])
    report, regressed = compare({"saliency": old}, {"saliency": pd.DataFrame([_row(S=0.45)])})
    assert regressed and "1 common rows" in report and "added" not in report


def test_load_tables_reads_git_revisions(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    git = lambda *a: subprocess.run(["git", *a], check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    git("config", "user.email", "t@t")
    git("config", "user.name", "t")
    (tmp_path / "leaderboards").mkdir()
    pd.DataFrame([_row()]).to_csv("leaderboards/saliency.csv", index=False)
    git("add", ".")
    git("commit", "-qm", "one")
    pd.DataFrame([_row(S=0.3)]).to_csv("leaderboards/saliency.csv", index=False)
    base, head = load_tables("HEAD"), load_tables(None)
    assert base["saliency"].S.tolist() == [0.5] and head["saliency"].S.tolist() == [0.3]
    assert set(KEY) <= set(base["saliency"].columns)
    report, regressed = compare(base, head)
    assert regressed


def test_upsert_into_a_table_from_before_the_params_column(tmp_path):
    """Each model's run replaces its own old rows, even after an earlier run rewrote the table."""
    from benchmark.leaderboard import update

    old = [dict(_row("vmifgsm"), model=m) for m in ("a", "b")] + [dict(_row(), model=m) for m in ("a", "b")]
    pd.DataFrame(old).drop(columns=["queries", "surrogate", "params"]).to_csv(tmp_path / "saliency.csv", index=False)
    for m in ("a", "b"):
        new = pd.DataFrame([dict(_row("vmifgsm", S=0.4), model=m, params="N=2"), dict(_row(S=0.45), model=m)])
        update(tmp_path, "saliency", new)
    table = pd.read_csv(tmp_path / "saliency.csv")
    assert len(table) == 4 and set(table.params) == {"N=2", "-"} and set(table.S) == {0.4, 0.45}


def test_a_metric_that_becomes_nan_is_a_regression():
    report, regressed = compare({"saliency": pd.DataFrame([_row()])}, {"saliency": pd.DataFrame([_row(S=float("nan"))])})
    assert regressed and "S 0.5000 -> NaN WORSE" in report
    _, regressed = compare({"saliency": pd.DataFrame([_row(S=float("nan"))])}, {"saliency": pd.DataFrame([_row()])})
    assert not regressed


def test_rows_differing_in_step_size_images_or_model_args_are_distinct(tmp_path):
    """A 16-image cell, another step size or another backbone neither overwrites the full row nor pairs with it."""
    from benchmark.leaderboard import update

    variants = [_row(), _row(S=0.6, n_images=16), _row(S=0.55, rel_step=0.1), _row(S=0.7, model_args="backbone=vgg16")]
    for v in variants:
        update(tmp_path, "saliency", pd.DataFrame([v]))
    table = pd.read_csv(tmp_path / "saliency.csv")
    assert sorted(table.S) == [0.5, 0.55, 0.6, 0.7]
    report, regressed = compare({"saliency": table}, {"saliency": table.copy()})
    assert "4 common rows, 0 changed" in report and not regressed
