"""Robustness curves (a metric against eps, one panel per modality, one line per attack) and transfer
heat maps (surrogate x target)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from attacks import MODALITIES  # noqa: E402


def robustness_curves(df: pd.DataFrame, out: Path, title: str, metric: str = "S") -> Path:
    """``metric`` against L-inf eps (x255) for every attack run at several budgets, one panel per
    attacked modality."""
    clean = df[df.attack == "none"]
    white_box = df.surrogate == "-" if "surrogate" in df else True
    attacked = df[(df.attack != "none") & (df.norm == "linf") & white_box]
    modalities = [m for m in MODALITIES if (attacked.modality == m).any()] or list(MODALITIES[:1])
    fig, axes = plt.subplots(1, len(modalities), figsize=(4.2 * len(modalities), 3.6), sharey=True, squeeze=False)
    axes = axes[0]
    palette = plt.get_cmap("tab20")
    colour = {a: palette(i % 20) for i, a in enumerate(sorted(attacked.attack.unique()))}
    for ax, modality in zip(axes, modalities):
        sub = attacked[attacked.modality == modality]
        for attack, g in sub.groupby("attack"):
            g = g.sort_values("eps")
            x = [0.0, *(g.eps * 255)] if len(clean) else list(g.eps * 255)
            y = [clean[metric].iloc[0], *g[metric]] if len(clean) else list(g[metric])
            ax.plot(x, y, marker="o", color=colour[attack], label=attack)
        if len(clean):
            ax.axhline(clean[metric].iloc[0], color="grey", ls="--", lw=0.8, label="clean")
        ax.set_title(f"modality: {modality}")
        ax.set_xlabel("eps (x 1/255, L-inf)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(metric)
    handles = [plt.Line2D([], [], color=c, marker="o", label=a) for a, c in colour.items()]
    handles.append(plt.Line2D([], [], color="grey", ls="--", lw=0.8, label="clean"))
    fig.legend(handles=handles, loc="center right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def transfer_heatmaps(matrices: dict[str, pd.DataFrame], out: Path, metric: str = "S") -> Path:
    """One heat map per transferred setting: rows = surrogate, columns = target, cell = ``metric``."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.6 * len(matrices), 4.0), squeeze=False)
    for ax, (name, m) in zip(axes[0], matrices.items()):
        im = ax.imshow(m.values.astype(float), cmap="viridis", vmin=0, vmax=1)
        ax.set_xticks(range(len(m.columns)), m.columns, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(m.index)), m.index, fontsize=8)
        for (i, j), v in np.ndenumerate(m.values.astype(float)):
            ax.text(j, i, "-" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if v < 0.6 else "black")
        ax.set_xlabel("target")
        ax.set_ylabel("surrogate")
        ax.set_title(name, fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046, label=metric)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def defense_tradeoff(rows: pd.DataFrame, out: Path, metric: str, title: str) -> Path:
    """Robust against clean ``metric`` per defense, one panel per model: the oblivious (hollow) and the
    adaptive (filled) score of each defense joined by a line, so a collapse under adaptive attack shows
    as a long drop."""
    models = sorted(rows.model.unique())
    fig, axes = plt.subplots(1, len(models), figsize=(4.4 * len(models), 4.0), sharey=True, squeeze=False)
    palette = plt.get_cmap("tab20")
    colour = {d: palette(i % 20) for i, d in enumerate(sorted(rows.defense.unique()))}
    for ax, model in zip(axes[0], models):
        for _, r in rows[rows.model == model].iterrows():
            c = colour[r.defense]
            ax.plot([r.clean, r.clean], [r.oblivious, r.adaptive], color=c, lw=1)
            ax.plot(r.clean, r.oblivious, marker="o", mfc="none", color=c)
            ax.plot(r.clean, r.adaptive, marker="o", color=c)
        ax.set_title(model, fontsize=9)
        ax.set_xlabel(f"clean {metric} with the defense")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"robust {metric}")
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=d.split("(")[0] + " " + d[d.find("(") :][:40])
               for d, c in colour.items()]
    handles += [plt.Line2D([], [], color="k", marker="o", mfc="none", ls="", label="oblivious"),
                plt.Line2D([], [], color="k", marker="o", ls="", label="adaptive")]
    fig.legend(handles=handles, loc="center right", fontsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.72, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def patch_defense_gallery(rgb: np.ndarray, depth: np.ndarray, true: np.ndarray, located: np.ndarray,
                          before: np.ndarray, after: np.ndarray, out: Path, title: str) -> Path:
    """One row per image: the adversarial RGB (H,W,3) and depth, the true patch mask, where the defense
    located the patch, and the model's map without and with the defense (all in [0,1])."""
    columns = [("adversarial RGB", rgb, None), ("adversarial depth", depth, "gray"), ("true patch", true, "gray"),
               ("located", located, "gray"), ("map, undefended", before, "gray"), ("map, defended", after, "gray")]
    fig, axes = plt.subplots(len(rgb), len(columns), figsize=(1.3 * len(columns), 1.3 * len(rgb) + 0.4), squeeze=False)
    for j, (name, images, cmap) in enumerate(columns):
        for i, ax in enumerate(axes[:, j]):
            ax.imshow(images[i], cmap=cmap, vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
        axes[0, j].set_title(name, fontsize=6)
    fig.suptitle(title, fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
