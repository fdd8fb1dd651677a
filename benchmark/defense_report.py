"""The defenses leaderboard (``<task>-defenses.md``, rendered from its CSV): for every defense, its
clean score and its robust score under each attack, oblivious and adaptive side by side; across
models, the mean and the min; gradient-masking flags; a plot of robust against clean score.

Per (model, defense, attack setting), with m the task's first metric (S, top-1):

    gap       = m(oblivious) - m(adaptive)          what an oblivious evaluation overstates
    robust    = the worse of m(oblivious) and m(adaptive): the strongest attack run (an adaptive attack
                through a poor BPDA approximation, e.g. the identity through JPEG, can be the weaker one)
    recovery  = (m(robust) - m(adv)) / (m(clean) - m(adv))
                with m(adv), m(clean) the undefended model's: the share of the attack's damage the
                defense undoes against the strongest attacker run (1: all, 0: none, < 0: it hurts)

A model group is a model, its checkpoint and arguments, the dataset and the number of images scored,
so cells run on a subset (``images: 8``) are compared with the undefended model on the same subset.

Patch defenses (APDE-style, Revisiting Adversarial Patch Defenses on Object Detectors, ICCV 2025) add,
per patch setting, the defense best on the mean and the one best on the min robust score over models,
and how well their masks locate the true patch (SmIoU, NmIoU, precision, recall), mean and min over models.

Across models, the mean and the min (as APDE-style reports do: a defense that helps one model and not
another must not look good on average). Flags (Carlini et al. 2019, "On Evaluating Adversarial
Robustness"; AutoAttack's checks) are computed on the adaptive cells the suite includes and are
warnings, not errors:

- ``iterative<=single``: PGD no stronger than FGSM at the same budget;
- ``more-steps-weaker``: PGD with more steps weaker than with fewer;
- ``unbounded>undefended``: PGD at eps >= 0.5 (L-inf) leaves m more than ``UNBOUNDED_MARGIN`` above the
  same attack on the model without the defense (an adversarially trained model: on its base). The floor an unbounded
  attack reaches depends on the model and the attack's loss (our BCE PGD takes the tiny models' S to
  ~0.4, an all-background map, not to 0), so the undefended model is the reference, not a constant;
- ``oblivious>adaptive``: bounded PGD on the undefended model, passed through the defense, does more
  damage than PGD through the defense: the adaptive attack's gradient (BPDA, EOT) is poor;
- ``black-box>white-box``: a query attack stronger than PGD at the same budget;
- ``transfer>white-box``: inputs crafted on another model stronger than adaptive PGD.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark import plots
from benchmark.metrics import HIGHER_IS_BETTER
from benchmark.suite import fmt_eps
from defenses import DEFENSES

TOLERANCE = 0.01  # a flag needs the unexpected order by more than this
UNBOUNDED_MARGIN = 0.05
BLACK_BOX = ("art-square", "square", "zoo", "art-zoo", "art-hsj")
# variants fine-tuned as a defense: adversarially (benchmark/training/adversarial.py), on masked images (cutout.py)
TRAINED_SUFFIXES = ("-at", "-tecoa", "-cutout")
SETTING = ["attack", "norm", "eps", "eps_depth", "modality", "steps", "surrogate"]
GROUP = ["model", "checkpoint", "model_args", "dataset", "n_images"]
LOCALISATION = ["SmIoU", "NmIoU", "mask_precision", "mask_recall"]


def base_model(model: str) -> str:
    """The model a defensively fine-tuned variant was fine-tuned from (itself for any other model)."""
    return next((model.removesuffix(s) for s in TRAINED_SUFFIXES if model.endswith(s)), model)


def defense_rows(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per (model group, defense, attack setting): clean, undefended adv, oblivious, adaptive,
    robust, gap, recovery, the attack success rate of the robust run (``ASR``: the attack success after
    the defense), defense ms per image. A model's built-in defense (D3Net's) is the defense
    ``none (built-in)``: its oblivious number is the plain white-box cell."""
    sign = 1 if HIGHER_IS_BETTER[metric] else -1
    out = []
    for key, g in table.groupby(GROUP, sort=True):
        plain = g[(g.defense == "none") & (g["eval"] == "-")]
        clean0 = plain[plain.attack == "none"][metric]
        if clean0.empty:
            continue
        clean0 = clean0.iloc[0]
        undefended = {tuple(r[SETTING]): r[metric] for _, r in plain[plain.attack != "none"].iterrows()}
        for defense, d in g.groupby("defense", sort=True):
            builtin = defense == "none"
            if builtin and not (d["eval"] == "adaptive").any():
                continue
            clean = clean0 if builtin else d[d.attack == "none"][metric].mean()
            attacked = d[d.attack != "none"]
            for setting, s in attacked.groupby(SETTING, sort=True):
                adv = undefended.get(tuple(setting), np.nan)
                obl = s[s["eval"] == ("-" if builtin else "oblivious")][metric].mean()
                adp = s[s["eval"] == "adaptive"][metric].mean()
                if builtin and np.isnan(adp):
                    continue
                ms = s["defense_ms"].mean() if "defense_ms" in s else np.nan
                robust = adp if np.isnan(obl) else sign * min(sign * obl, sign * adp)
                robust_eval = "adaptive" if robust == adp else ("-" if builtin else "oblivious")
                run = s[s["eval"] == robust_eval]
                asr = run["ASR"].mean() if "ASR" in s else np.nan
                interval = tuple(run[f"{metric}_{end}"].mean() if f"{metric}_{end}" in s else np.nan for end in ("lo", "hi"))
                out.append({**dict(zip(GROUP, key)), "defense": "none (built-in)" if builtin else defense,
                            **dict(zip(SETTING, setting)), "clean": clean, "clean_drop": sign * (clean0 - clean),
                            "undefended": adv, "oblivious": obl, "adaptive": adp, "robust": robust,
                            "robust_lo": interval[0], "robust_hi": interval[1], "gap": sign * (obl - adp),
                            "recovery": (robust - adv) / (clean0 - adv) if clean0 != adv else np.nan, "ASR": asr,
                            "ms": ms})
    return pd.DataFrame(out)


def trained_rows(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Each defensively fine-tuned variant (``<base>-at``, ``<base>-tecoa``, ``<base>-cutout``; no input defense) against its base, per
    setting both were scored on (the clean cell included)."""
    plain = table[(table.defense == "none") & (table["eval"] == "-")]
    out = []
    for (model, dataset, n), g in plain.groupby(["model", "dataset", "n_images"], sort=True):
        base = plain[(plain.model == base_model(model)) & (plain.dataset == dataset) & (plain.n_images == n)]
        if base_model(model) == model or base.empty:
            continue
        for setting, s in g.groupby(SETTING, sort=True):
            b = base[(base[SETTING] == pd.Series(dict(zip(SETTING, setting)))).all(axis=1)]
            if len(b):
                out.append({"model": model, "base": base.model.iloc[0], "dataset": dataset, "n_images": n,
                            **dict(zip(SETTING, setting)),
                            "base_score": b[metric].mean(), "trained": s[metric].mean()})
    return pd.DataFrame(out)


def widest_modality(rows: pd.DataFrame) -> str:
    """The modality the flags and the headline use: rgbd where attacked, else a classifier's query."""
    attacked = rows[rows.attack != "none"].modality
    return "rgbd" if (attacked == "rgbd").any() or attacked.empty else attacked.mode().iloc[0]


def masking_flags(table: pd.DataFrame, metric: str) -> dict[tuple, list[str]]:
    """(model group..., defense) -> the masking flags its adaptive (undefended: plain) cells raise."""
    sign = 1 if HIGHER_IS_BETTER[metric] else -1
    plain = table[(table.defense == "none") & (table["eval"] == "-") & (table.surrogate == "-") & (table.norm == "linf")]
    flags: dict[tuple, list[str]] = {}
    for key, g in table.groupby([*GROUP, "defense"], sort=True):
        white_box = g[(g.surrogate == "-") & (g.norm == "linf")]
        own = white_box[white_box["eval"] == ("-" if key[-1] == "none" else "adaptive")]
        crafted = white_box[white_box["eval"] == "oblivious"]
        group = dict(zip(GROUP, key))
        # the same attacks without the defense: the plain cells; for a trained variant's own cells, its base's
        without = plain[(plain.model == (group["model"] if key[-1] != "none" else base_model(group["model"])))
                        & (plain.dataset == group["dataset"]) & (plain.n_images == group["n_images"])]
        full = widest_modality(own)

        def score(rows: pd.DataFrame, attack: str, eps: float, steps: int | None = None) -> float:
            rows = rows[(rows.attack == attack) & (rows.modality == full) & np.isclose(rows.eps, eps)]
            rows = rows[rows.steps == (rows.steps.max() if steps is None else steps)]  # default: the most steps
            return sign * rows[metric].mean() if len(rows) else np.nan

        def worse(a: float, b: float, by: float = TOLERANCE) -> bool:  # a is weaker than b (scores higher)
            return bool(a > b + by)

        raised = []
        pgd = own[(own.attack == "pgd") & (own.modality == full)]
        bounded = sorted(pgd.eps[pgd.eps < 0.5].unique())
        if any(worse(score(own, "pgd", e), score(own, "fgsm", e)) for e in bounded):
            raised.append("iterative<=single")
        for e in bounded:
            steps = sorted(pgd[np.isclose(pgd.eps, e)].steps.unique())
            if any(worse(score(own, "pgd", e, b), score(own, "pgd", e, a)) for a, b in zip(steps, steps[1:])):
                raised.append("more-steps-weaker")
                break
        unbounded = pgd[pgd.eps >= 0.5][["eps", "steps"]].drop_duplicates()
        if any(worse(score(own, "pgd", r.eps, r.steps), score(without, "pgd", r.eps, r.steps), UNBOUNDED_MARGIN)
               for r in unbounded.itertuples()):
            raised.append("unbounded>undefended")
        if any(worse(score(own, "pgd", e), score(crafted, "pgd", e)) for e in bounded):
            raised.append("oblivious>adaptive")
        for attack in BLACK_BOX:
            if any(worse(score(own, "pgd", e), score(own, attack, e)) for e in bounded):
                raised.append("black-box>white-box")
                break
        moved = g[(g.surrogate != "-") & (g.modality == full) & (g.norm == "linf")]
        if any(worse(score(own, "pgd", r.eps), sign * r[metric]) for _, r in moved.iterrows()):
            raised.append("transfer>white-box")
        flags[key] = raised
    return flags


def _f(v: float, digits: int = 3) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def _interval(r: pd.Series) -> str:
    """`` (lo-hi)``: the robust run's 95% bootstrap interval over images, where the rows have one."""
    return "" if np.isnan(r.robust_lo) or np.isnan(r.robust_hi) else f" ({r.robust_lo:.3f}-{r.robust_hi:.3f})"


def _setting(r: pd.Series) -> str:
    via = f" from {r.surrogate}" if r.surrogate != "-" else ""
    steps = f"-{int(r.steps)}" if r.steps > 1 else ""
    return f"{r.attack}{steps} {r.norm} {fmt_eps(r.eps)} {r.modality}{via}"


def headline(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of the headline setting: white-box PGD on rgbd (a classifier: its query) at the bounded
    budget most defenses have, with the most steps; in a table without PGD (patch defenses), the
    per-image patch on rgbd likewise."""
    white_box = rows[(rows.modality == widest_modality(rows)) & (rows.surrogate == "-")]
    top = white_box[(white_box.attack == "pgd") & (white_box.eps < 0.5)]
    if top.empty:
        top = white_box[white_box.attack == "patch"]
    if top.empty:
        return top
    best = top.groupby(["eps", "steps"]).defense.nunique().sort_index(ascending=[True, False]).idxmax()
    return top[(top.eps == best[0]) & (top.steps == best[1])]


def localisation_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Per (model group, defense, patch setting, eval): how well the defense's mask matches the true patch
    mask (SmIoU, NmIoU, precision, recall; ``benchmark/metrics/patch.py``), from patch cells behind a patch
    defense."""
    if "SmIoU" not in table:
        return pd.DataFrame()
    located = table[(table.norm == "patch") & table.SmIoU.notna() & (table.defense != "none")]
    return located[[*GROUP, "defense", "eval", *SETTING, *LOCALISATION]]


def _best_patch_defenses(rows: pd.DataFrame) -> list[str]:
    """Per patch setting: the defense with the best mean robust score over models, and the best min."""
    patch = rows[(rows.norm == "patch") & (rows.model.map(base_model) == rows.model)]
    if patch.empty:
        return []
    lines = ["## Best patch defense per attack (robust score over models)\n", "| setting | best on mean | best on min |",
             "|---|---|---|"]
    for _, g in patch.groupby(SETTING, sort=True):
        by = g.groupby("defense").robust.agg(["mean", "min"])
        mean, low = by["mean"].idxmax(), by["min"].idxmax()
        lines.append(f"| {_setting(g.iloc[0])} | {mean} ({_f(by['mean'][mean])}) | {low} ({_f(by['min'][low])}) |")
    return [*lines, ""]


def _localisation(located: pd.DataFrame) -> list[str]:
    """The mean / min over models of each mask score, per defense, patch setting and eval."""
    if located.empty:
        return []
    lines = ["## Patch localisation: mean / min over models\n",
             "Soft masks binarised at 0.5; SmIoU = sum TP / sum (TP + FP + FN) over the images, NmIoU = the mean of "
             "the per-image IoU (an image whose predicted and true masks are both empty counts 1).\n",
             "| defense | setting | eval | models | SmIoU | NmIoU | precision | recall |", "|" + "---|" * 8]
    for (defense, ev, *_), g in located.groupby(["defense", "eval", *SETTING], sort=True):
        scores = " | ".join(f"{_f(g[c].mean())} / {_f(g[c].min())}" for c in LOCALISATION)
        lines.append(f"| {defense} | {_setting(g.iloc[0])} | {ev} | {g.model.nunique()} | {scores} |")
    return [*lines, ""]


def render(table: pd.DataFrame, task: str, metric: str, plot: Path) -> str:
    """The Markdown report; also writes ``plot`` (robust against clean score per defense)."""
    rows = defense_rows(table, metric)
    flags = masking_flags(table, metric)
    lines = [f"`{metric}` throughout. **adaptive**: the attack sees model o defense (exact gradients, BPDA through "
             "non-differentiable steps, EOT over randomized ones); **oblivious**: inputs crafted on the undefended "
             "model; **robust** (the headline) is the worse of the two, the strongest attack run. `gap` = oblivious - "
             "adaptive (what an oblivious evaluation overstates; < 0: the adaptive attack is the weaker, see flag "
             "`oblivious>adaptive`); `recovery` = (robust - undefended adv) / (undefended clean - undefended adv); "
             "in brackets, the robust run's 95% bootstrap interval over the images; "
             "`ASR`: the attack success rate of the robust run, after the defense (the share of the images the defended "
             "model gets right clean that the attack breaks; across models: mean / max); `ms`: the defense's time per "
             f"image. Flags (warnings, tolerance {TOLERANCE}) are defined in "
             "`benchmark/defense_report.py`.\n"]
    if rows.empty:
        return "\n".join(lines)
    top = headline(rows)
    if not top.empty:
        lines.append(f"![robust vs clean]({plot.name})\n")
        plots.defense_tradeoff(top, plot, metric, title=_setting(top.iloc[0]))
    lines.append("## Across models: mean / min\n")
    lines.append("Over the models without defensive fine-tuning (those are compared with their base below).\n")
    lines += ["| defense | setting | models | clean | robust | adaptive | oblivious | gap | recovery | ASR |", "|" + "---|" * 10]
    agg = rows[rows.model.map(base_model) == rows.model].groupby(["defense", *SETTING], sort=True)
    for (defense, *_), g in agg:
        r = g.iloc[0]
        lines.append(f"| {defense} | {_setting(r)} | {g.model.nunique()} | {_f(g.clean.mean())} / {_f(g.clean.min())} "
                     f"| **{_f(g.robust.mean())} / {_f(g.robust.min())}** | {_f(g.adaptive.mean())} | {_f(g.oblivious.mean())} "
                     f"| {_f(g.gap.mean())} | {_f(g.recovery.mean(), 2)} / {_f(g.recovery.min(), 2)} "
                     f"| {_f(g.ASR.mean(), 2)} / {_f(g.ASR.max(), 2)} |")
    lines.append("")
    lines += _best_patch_defenses(rows) + _localisation(localisation_rows(table))
    trained = trained_rows(table, metric)
    if not trained.empty:
        lines += ["## Defensively fine-tuned variants against their base\n",
                  "| model | base | dataset | images | setting | base | trained | change |", "|" + "---|" * 8]
        for _, r in trained.iterrows():
            setting = "clean" if r.attack == "none" else _setting(r)
            lines.append(f"| {r.model} | {r.base} | {r.dataset} | {r.n_images} | {setting} | {_f(r.base_score)} | **{_f(r.trained)}** "
                         f"| {r.trained - r.base_score:+.3f} |")
        lines.append("")
    for key, g in rows.groupby(GROUP, sort=True):
        model, ckpt, _, dataset, n = key
        commits = table[(table[GROUP] == pd.Series(dict(zip(GROUP, key)))).all(axis=1)].commit.unique()
        at = f", computed at `{commits[0]}`" if len(commits) == 1 else ""
        lines.append(f"## {model} ({ckpt}) on {dataset}, {n} images{at}\n")
        raised = {d: flags.get((*key, d), []) for d in sorted(set(table[(table.model == model)].defense))}
        flagged = [f"`{d}`: {', '.join(f)}" for d, f in raised.items() if f]
        lines.append("Masking flags: " + ("; ".join(flagged) if flagged else "none") + ".\n")
        figures = [f for f in sorted((plot.parent / f"{plot.stem}-figures").glob(f"{model}-*.png"))
                   if f.stem.removeprefix(f"{model}-") in DEFENSES]  # not jldcf-tiny-at's under jldcf-tiny
        if figures:
            lines.append("Adaptive patches through each defense (figures): " + ", ".join(
                f"[{f.stem.removeprefix(model + '-')}]({f.parent.name}/{f.name})" for f in figures) + ".\n")
        lines += ["| defense | setting | clean | clean drop | undefended | oblivious | adaptive | robust | gap | recovery | ASR | ms |",
                  "|" + "---|" * 12]
        for _, r in g.iterrows():
            lines.append(f"| {r.defense} | {_setting(r)} | {_f(r.clean)} | {_f(r.clean_drop)} | {_f(r.undefended)} "
                         f"| {_f(r.oblivious)} | {_f(r.adaptive)} | **{_f(r.robust)}**{_interval(r)} | {_f(r.gap)} | {_f(r.recovery, 2)} "
                         f"| {_f(r.ASR, 2)} | {_f(r.ms, 1)} |")
        lines.append("")
    return "\n".join(lines)
