"""Versioned leaderboard tables: ``leaderboards/<task>.csv`` plus a Markdown rendering.

One row per KEY: everything that changes a number (the model and its constructor arguments, the
checkpoint, the dataset and the images scored, the attack and its whole threat model and params, the
surrogate and its checkpoint, the suite's seed and batch size). A run upserts its rows and leaves the
others. Each row also says which code computed it (``commit``: the git commit, ``+dirty`` for
uncommitted changes). Files are written atomically and committed: git history is their version
(``python -m benchmark compare`` diffs two commits). Transfer cells (crafted on a surrogate) also
render as a surrogate x target matrix with a heat map.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from filelock import FileLock

from attacks.ensemble import ensemble_members, includes
from benchmark import defense_report, plots
from benchmark.metrics import HIGHER_IS_BETTER, METRICS
from benchmark.metrics.masked import DEFINITION as MASKED_DEFINITION
from benchmark.results import atomic_write_text
from benchmark.suite import defense_label, fmt_eps

KEY = ["model", "checkpoint", "model_args", "dataset", "n_images", "defense", "eval", "attack", "modality", "norm", "eps",
       "eps_depth", "steps", "rel_step", "queries", "surrogate", "surrogate_checkpoint", "params", "seed", "batch_size"]
UNKNOWN = "?"
# Values of key columns a table written before they existed is read with: no query budget, no surrogate,
# no defense (none existed), the others unknown ("?": such a row is replaced by a new row that matches it on the
# columns it has).
KEY_DEFAULTS: dict[str, Any] = {"queries": np.nan, "surrogate": "-", "defense": "none", "eval": "-", "params": UNKNOWN, "model_args": UNKNOWN,
                                "n_images": UNKNOWN, "rel_step": UNKNOWN, "surrogate_checkpoint": UNKNOWN,
                                "seed": UNKNOWN, "batch_size": UNKNOWN}
# Tables keyed otherwise: the poisoning grid's (``benchmark/poisoning.py``), one row per pre-trained model and seed
POISONING_KEY = ["model", "model_args", "recipe", "train_pairs", "dataset", "eval_dataset", "attack", "rate", "target",
                 "defense", "seed"]
TABLE_KEYS = {"poisoning": POISONING_KEY}


HEADERS = {
    "saliency": "`drop_S` = clean S-measure minus attacked (positive = worse). Patch cells: " + MASKED_DEFINITION
                + " `drop_*_nopatch` is against the clean prediction scored on the same pixels. `ASR`: share of the images"
                " whose clean map overlaps the GT by at least half (IoU >= 0.5, maps binarised at 0.5) that the"
                " attack takes below half.",
    "classification": "top-k: accuracy (on `*-captions` and other retrieval datasets: recall@k); under attack, "
                      "robust accuracy. `ASR`: share of the clean-correct images the attack makes wrong. "
                      "`drop_top1` = clean top-1 minus attacked.",
}

INTERVALS = ("In brackets (CSV: `<metric>_lo`, `_hi`): the 95% bootstrap interval over the images "
             "(benchmark/metrics/bootstrap.py), how much the score depends on which images were drawn.")

TEXT_COLUMNS = ("model", "checkpoint", "model_args", "dataset", "defense", "eval", "attack", "modality", "norm", "surrogate",
                "surrogate_checkpoint", "params", "backend", "commit", "recipe", "eval_dataset", "target")


def read_table(source: Any) -> pd.DataFrame:
    """A leaderboard CSV (a path or a buffer), text columns as text: a commit of digits only stays text."""
    return pd.read_csv(source, dtype={c: str for c in TEXT_COLUMNS})


def table_key(name: str) -> list[str]:
    """The key of the table ``name`` (a CSV's stem): its own where it has one, else KEY."""
    return TABLE_KEYS.get(name, KEY)


def params_label(p: dict[str, Any]) -> str:
    """Parameters as a row shows them: ``k=v;...`` sorted by name, ``-`` for none."""
    return ";".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in sorted(p.items())) or "-"


def commit_label(code: dict[str, Any] | None) -> str:
    """A cell's code provenance as a row shows it: 12 hex characters of the commit, ``+dirty`` when the
    tree had uncommitted changes, ``?`` when unknown (outside git)."""
    if not code or not code.get("commit"):
        return UNKNOWN
    return code["commit"][:12] + ("+dirty" if code.get("dirty") else "")


def rows(summaries: list[dict[str, Any]], model: str, checkpoint: str, dataset: str,
         model_args: dict[str, Any] | None = None, seed: int | None = None,
         batch_size: int | None = None) -> pd.DataFrame:
    """Leaderboard rows of one run, with each metric's drop from the clean cell (positive = worse)."""
    out = []
    for s in summaries:
        c, info = s["cell"], s.get("info", {})
        out.append({"model": model, "checkpoint": checkpoint, "model_args": params_label(model_args or {}),
                    "dataset": dataset, "n_images": s["n_images"], "defense": defense_label(c.get("defense")),
                    "eval": c.get("eval") or "-", "attack": c["attack"],
                    "modality": "-" if c["attack"] == "none" else c["modality"], "norm": c["norm"],
                    "eps": round(c["eps"], 6), "eps_depth": round(c["eps_depth"], 6), "steps": c["steps"],
                    "rel_step": round(c["rel_step"], 6), "queries": c.get("queries", np.nan),
                    "surrogate": s.get("surrogate_model", "-"),
                    "surrogate_checkpoint": s.get("surrogate_checkpoint", "-"),
                    "params": params_label(c["params"]), "seed": seed, "batch_size": batch_size,
                    "backend": s["backend"], "commit": commit_label(s.get("code")),
                    # crafting time per image (a universal attack's or generator's fitting not counted)
                    "attack_ms": round(1000 * s["attack_seconds"] / s["n_images"], 3) if "attack_seconds" in s else np.nan,
                    **{("queries_used" if k == "queries" else k): v for k, v in info.items()}, **s["metrics"],
                    **{f"{m}_{end}": v for m, ci in s.get("intervals", {}).items() for end, v in zip(("lo", "hi"), ci)}})
    df = pd.DataFrame(out)
    clean = df[df.attack == "none"]
    if len(clean):
        for m in (m for m in df.columns if m in HIGHER_IS_BETTER):
            # the clean reference of a cell run on fewer images is the clean score of those images; of a
            # patch-excluded score, the clean prediction with the same pixels excluded
            base = m.removesuffix("_nopatch")
            ref = [s.get("clean_metrics_nopatch", {}).get(base, np.nan) if m != base
                   else s.get("clean_metrics", {}).get(base, np.nan if s["cell"].get("defense") else clean.iloc[0][base])
                   for s in summaries]
            sign = 1 if HIGHER_IS_BETTER[m] else -1
            df[f"drop_{m}"] = sign * (np.array(ref) - df[m])
    return df


def key_strings(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Key columns as strings for matching rows: numbers as the CSV writes floats (6 decimals, so an int
    column and its float reading agree), NaN as "nan" (pandas keeps NaN through ``astype(str)``, and
    NaN never equals NaN)."""
    def text(v: Any) -> str:
        if isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
            return "nan" if np.isnan(v) else f"{float(v):.6f}"
        return str(v)
    return df[columns].astype(object).map(text)


def with_key_columns(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every KEY column, filling those an older table lacks with their defaults."""
    return df.assign(**{k: v for k, v in KEY_DEFAULTS.items() if k not in df.columns})


def _fmt_row(column: str, r: pd.Series) -> str:
    """A cell of the Markdown table: a metric with its bootstrap interval as ``0.902 (0.884-0.919)``."""
    low, high = r.get(f"{column}_lo", np.nan), r.get(f"{column}_hi", np.nan)
    if isinstance(low, float) and not (np.isnan(low) or np.isnan(high)) and not np.isnan(r[column]):
        return f"{r[column]:.3f} ({low:.3f}-{high:.3f})"
    return _fmt(column, r[column])


def _fmt(column: str, v: Any) -> str:
    if column in ("eps", "eps_depth"):
        return fmt_eps(v)
    if isinstance(v, float):
        return "-" if np.isnan(v) else f"{v:.0f}" if column in ("queries", "queries_used", "patch_side") else f"{v:.3f}"
    return str(v)


def to_markdown(df: pd.DataFrame, metrics: tuple[str, ...]) -> str:
    """One table per (model, checkpoint, model arguments, dataset); optional columns appear where a row
    uses them, the code's commit in the heading when one commit computed every row; a metric with a
    bootstrap interval (``<metric>_lo``, ``_hi``) shows it in brackets."""
    lines = []
    for (model, ckpt, args, dataset), g in df.groupby(["model", "checkpoint", "model_args", "dataset"], sort=True):
        commits = g.commit.fillna(UNKNOWN).unique() if "commit" in g else [UNKNOWN]
        built = f" with {args}" if args not in ("-", UNKNOWN) else ""
        at = "" if len(commits) > 1 else (", commit unknown (computed before rows recorded it)"
                                          if commits[0] == UNKNOWN else f", computed at `{commits[0]}`")
        lines.append(f"## {model} ({ckpt}){built} on {dataset}{at}\n")
        optional = [c for c in ("defense", "eval", "params", "surrogate") if c in g and (~g[c].isin(["-", "none"])).any()]
        optional += [c for c in ("rel_step", "seed", "batch_size") if c in g and g[c].astype(str).nunique() > 1]
        optional += ["commit"] if len(commits) > 1 else []
        extra = [c for c in ("queries", "queries_used", "l0", "patch_side", "patch_area", "found_norm",
                             "latent_distance", "pixel_l2", "pixel_linf", "S_nopatch")
                 if c in g and g[c].notna().any()]
        extra = (["n_images"] if "n_images" in g and g.n_images.nunique() > 1 else []) + extra
        extra += ["attack_ms"] if "attack_ms" in g and g.attack_ms.notna().all() else []  # not on rows from before it
        shown = [m for m in metrics if m in g and g[m].notna().any()]  # e.g. ITM only for models with a matching head
        depth_budget = ["eps_depth"] if "eps_depth" in g and (g.eps_depth != g.eps).any() else []
        cols = [c for c in ("attack", *optional, "modality", "norm", "eps", *depth_budget, "steps", *extra, *shown,
                            f"drop_{metrics[0]}") if c in g]
        lines.append("| " + " | ".join(cols) + " |")
        lines.append("|" + "---|" * len(cols))
        for _, r in g.iterrows():
            lines.append("| " + " | ".join(_fmt_row(c, r) for c in cols) + " |")
        lines.append("")
    return "\n".join(lines)


def transfer_matrix(table: pd.DataFrame, metric: str = "S") -> dict[str, pd.DataFrame]:
    """For every transferred (attack, threat) setting: the metric as a surrogate x target matrix."""
    moved = table[(table.surrogate != "-") & (table.defense == "none")]
    plain_clean = table[(table.attack == "none") & (table.defense == "none")]
    out = {}
    for setting, g in moved.groupby(["dataset", "n_images", "attack", "modality", "norm", "eps", "steps"], sort=True):
        dataset, n, attack, modality, norm, eps, steps = setting
        name = f"{attack} {norm} eps {fmt_eps(eps)} {modality}, {steps} steps, on {dataset}"
        matrix = g.pivot_table(index="surrogate", columns="model", values=metric, aggfunc="first")
        # the clean score of the same images, without a defense
        clean = plain_clean[(plain_clean.dataset == dataset) & (plain_clean.n_images == n)].groupby("model")[metric].first()
        out[name] = pd.concat([matrix, clean.reindex(matrix.columns).to_frame("clean").T])
    return out


def _write_transfer(directory: Path, table_name: str, task: str, table: pd.DataFrame) -> None:
    metric = METRICS[task][0]
    matrices = transfer_matrix(table, metric)
    if not matrices:
        return
    lines = [f"# Transfer: {task}\n", f"{metric} of each target (column) under adversarial inputs crafted on "
             "each surrogate (row); the diagonal is the white-box attack, the last row the clean score.\n"]
    for name, m in matrices.items():
        lines += [f"## {name}\n", "| surrogate \\ target | " + " | ".join(m.columns) + " |",
                  "|" + "---|" * (len(m.columns) + 1)]
        lines += ["| " + " | ".join([str(sur), *(_fmt(metric, v) for v in r)]) + " |" for sur, r in m.iterrows()]
        lines.append("")
    lines += _leave_one_out(matrices, metric)
    atomic_write_text(directory / f"{table_name}-transfer.md", "\n".join(lines))
    plots.transfer_heatmaps(matrices, directory / f"{table_name}-transfer.png", metric)


def _leave_one_out(matrices: dict[str, pd.DataFrame], metric: str) -> list[str]:
    """Per target: each ensemble of other models (attacks/ensemble.py) against the single surrogates among
    its members: the strongest of them and their mean."""
    lines = []
    stronger = min if HIGHER_IS_BETTER.get(metric, True) else max
    for name, m in matrices.items():
        rows = []
        for target in m.columns:
            for ens in (s for s in m.index if len(ensemble_members(s)) > 1):
                members = ensemble_members(ens)
                singles = m.loc[[s for s in members if s in m.index], target].dropna()
                if includes(ens, target) or np.isnan(m.loc[ens, target]) or singles.empty:
                    continue
                best = stronger(singles.index, key=lambda s: singles[s])
                rows.append(f"| {target} | {ens} | {_fmt(metric, m.loc[ens, target])} | {best} "
                            f"({_fmt(metric, singles[best])}) | {_fmt(metric, singles.mean())} | "
                            f"{_fmt(metric, m.loc['clean', target])} |")
        if rows:
            lines += [f"## Leave-one-out ensembles: {name}\n",
                      f"{metric} of each target under inputs crafted on an ensemble of other models (their logits "
                      "averaged), against the same models as single surrogates.\n",
                      f"| target | ensemble | {metric} | strongest single member | mean over members | clean |",
                      "|" + "---|" * 6, *rows, ""]
    return lines


def _replaced(old: pd.DataFrame, new: pd.DataFrame, key: list[str]) -> list[bool]:
    """Per old row: whether a new row has its ``key``, an unknown ("?") old value matching anything."""
    new_keys = key_strings(new, key).values
    out = []
    for row in key_strings(old, key).values:
        known = row != UNKNOWN
        out.append(bool((new_keys[:, known] == row[known]).all(1).any()))
    return out


def update(directory: Path, task: str, new: pd.DataFrame, table_suffix: str | None = None) -> Path:
    """Upsert ``new`` into ``<directory>/<task>.csv`` (``<task>-<table_suffix>.csv``: a suite's own table)
    and re-render its Markdown; return the CSV path. Runs writing the same table take turns: each holds
    the table's lock from reading it to writing it, so no run's rows are lost to another's write."""
    name = task if table_suffix is None else f"{task}-{table_suffix}"
    with table_lock(directory, name):
        return _update(directory, task, name, new)


def table_lock(directory: Path, name: str) -> FileLock:
    """The lock a writer of table ``name`` holds from reading it to writing it (``.<name>.lock``, not committed)."""
    directory.mkdir(parents=True, exist_ok=True)
    return FileLock(directory / f".{name}.lock")


def _update(directory: Path, task: str, name: str, new: pd.DataFrame) -> Path:
    path = directory / f"{name}.csv"
    table = upsert(path, new)
    table = (table.assign(_attacked=table.attack != "none")
             .sort_values(["model", "checkpoint", "dataset", "_attacked", *KEY[4:]], key=_sort_key)
             .drop(columns="_attacked").reset_index(drop=True)
             .round(6))  # as the CSV stores them, so the Markdown renders the same from fresh or re-read rows
    atomic_write_text(path, table.to_csv(index=False, float_format="%.6f"))
    header = (f"# Leaderboard: {name}\n\nGenerated by `python -m benchmark run`; do not edit. {HEADERS[task]} "
              f"eps in [0,1] pixel units; for l0 and patch, the fraction of the image. `commit`: the code that "
              f"computed the row (`+dirty`: with uncommitted changes). {INTERVALS}\n\n")
    if (table.defense != "none").any() or (table["eval"] != "-").any():  # a defenses table: its own report
        plain = table[(table.defense == "none") & (table["eval"] == "-")]
        body = (defense_report.render(table, task, METRICS[task][0], directory / f"{name}.png")
                + "\n# Undefended cells\n\n" + to_markdown(plain, METRICS[task]))
    else:
        body = to_markdown(table, METRICS[task])
    atomic_write_text(directory / f"{name}.md", header + body)
    _write_transfer(directory, name, task, table)
    return path


def upsert(path: Path, new: pd.DataFrame, key: list[str] = KEY) -> pd.DataFrame:
    """The table at ``path`` (if any) with ``new`` upserted: its rows whose ``key`` a new row has replaced."""
    if not path.is_file():
        return new
    old = read_table(path)
    old = with_key_columns(old) if key is KEY else old
    return pd.concat([old[[not r for r in _replaced(old, new, key)]], new], ignore_index=True)


def _sort_key(column: pd.Series) -> pd.Series:
    """Sort key columns that may mix numbers and "?" (rows of an older table) as strings."""
    return column.astype(str) if column.dtype == object else column
