"""`make report`: one static, self-contained HTML page of the leaderboards (``leaderboards/index.html``).

Everything is inside the file (CSS, a few lines of JavaScript that sort a table by a clicked column,
images as data URIs), so it opens from disk or a mail attachment with no network: the headline
tables, every leaderboard table per model, the figures next to them (robustness curves, transfer heat
maps, defense plots, patch-defense galleries, poisoning), each run's robustness curves and a gallery per
cell from the examples the runner keeps (``gallery.npz``: the first images of every cell as scored).
Tables and figures come from ``leaderboards/``; curves and galleries from the run folders in ``results/``
(not committed: the page shows what this machine has run).
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from benchmark.headline import SCORES, with_interval
from benchmark.leaderboard import read_table
from benchmark.metrics import METRICS
from benchmark.results import RunStore, atomic_write_text
from benchmark.suite import fmt_eps

GALLERY_ROWS = 2  # images per cell shown (of the runner's GALLERY_IMAGES)
GALLERY_HEIGHT = 96  # small stored images are enlarged (whole pixels) to about this height

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; white-space: nowrap; }
th { background: #eee; cursor: pointer; user-select: none; }
th[aria-sort=ascending]::after { content: " \\25B2"; }
th[aria-sort=descending]::after { content: " \\25BC"; }
td.text { text-align: left; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figcaption { font-size: 0.8em; max-width: 40em; }
img { image-rendering: pixelated; }
nav a { margin-right: 1em; }
"""

# Click a header: sort the rows by that column, numbers as numbers (a CI "0.41 [0.3, 0.5]" by its first
# number), ascending first, then descending.
SCRIPT = """
document.querySelectorAll("table.sortable th").forEach(th => th.addEventListener("click", () => {
  const table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
  const up = th.getAttribute("aria-sort") !== "ascending";
  table.querySelectorAll("th").forEach(h => h.removeAttribute("aria-sort"));
  th.setAttribute("aria-sort", up ? "ascending" : "descending");
  const key = tr => { const t = tr.cells[col].textContent.trim(), x = parseFloat(t);
                      return isNaN(x) ? t : x; };
  const rows = Array.from(body.rows).sort((a, b) => {
    const x = key(a), y = key(b);
    const c = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
    return up ? c : -c; });
  rows.forEach(r => body.appendChild(r));
}));
"""


def png_uri(image: Path) -> str:
    """A data URI of a PNG file (the figures)."""
    return "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode()


def jpeg_uri(image: np.ndarray) -> str:
    """A JPEG data URI of an 8-bit (H,W,3) array: the galleries' noisy photographs are 5x smaller than as PNG
    and the amplified differences survive quality 90."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def html_table(df: pd.DataFrame, table_id: str) -> str:
    """A sortable table; text columns left-aligned."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for r in df.itertuples(index=False):
        cells = []
        for v in r:
            text = v if isinstance(v, str) else "" if pd.isna(v) else f"{v:.3f}" if isinstance(v, float) else str(v)
            cells.append(f'<td{" class=text" if isinstance(v, str) else ""}>{html.escape(text)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def headline_section(directory: Path) -> str:
    parts = []
    for path in sorted(directory.glob("*-summary.csv")):
        df = pd.read_csv(path, keep_default_na=False)
        shown = df[["model", "checkpoint", "dataset", "defense", "suite", "n_images"]].copy()
        for s in SCORES:
            shown[s] = [with_interval(*v) for v in df[[s, f"{s}_low", f"{s}_high"]].itertuples(index=False)]
        shown["attacks"], shown["threat"] = df.attacks, df.threat
        shown.insert(0, "rank", range(1, len(df) + 1))
        parts.append(f"<h3>{html.escape(path.stem)}</h3>" + html_table(shown, path.stem))
    return "".join(parts) or "<p>No headline table yet: run a suite with the standard attack.</p>"


def table_columns(df: pd.DataFrame, task: str) -> list[str]:
    key = ["dataset", "checkpoint", "defense", "eval", "attack", "modality", "norm", "eps", "eps_depth", "steps",
           "surrogate", "n_images"]
    metrics = [m for m in (*METRICS[task][:4], "ASR") if m in df.columns]
    return [c for c in key if c in df.columns] + metrics + ["commit"]


def tables_section(directory: Path) -> str:
    parts = []
    for path in sorted(p for p in directory.glob("*.csv") if not p.stem.endswith("-summary")
                       and p.stem != "poisoning"):
        task = path.stem.split("-")[0]
        if task not in METRICS:
            continue
        df = read_table(path)
        parts.append(f'<h3 id="{path.stem}">{html.escape(path.stem)}</h3>')
        for model, rows in df.groupby("model", sort=True):
            shown = rows[table_columns(rows, task)].copy()
            for c in ("eps", "eps_depth"):
                if c in shown:
                    shown[c] = shown[c].map(lambda e: fmt_eps(float(e)) if isinstance(e, float) else str(e))
            parts.append(f"<details><summary>{html.escape(str(model))} ({len(rows)} rows)</summary>"
                         + html_table(shown, f"{path.stem}-{model}") + "</details>")
    return "".join(parts)


def figure(uri: str, caption: str) -> str:
    return f'<figure><img src="{uri}" alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>'


def figures_section(directory: Path) -> str:
    pngs = sorted(directory.glob("*.png")) + sorted(directory.glob("*-figures/*.png"))
    return "".join(figure(png_uri(p), str(p.relative_to(directory))) for p in pngs)


def _cell_title(spec: dict) -> str:
    if spec["attack"] == "none":
        title = "clean"
    else:
        eps = fmt_eps(spec["eps"]) if spec["norm"] in ("linf", "l2") else f"{spec['eps']:g}"
        title = f"{spec['attack']} {spec['modality']} {spec['norm']} {eps}"
        title += f" steps {spec['steps']}" if spec["steps"] > 1 else ""
        title += f" from {spec['surrogate']}" if spec.get("surrogate") else ""
    if spec.get("defense"):
        title += f" | {spec['defense']['name']} {spec.get('eval', '')}"
    return title


def _strip(images: list[np.ndarray]) -> np.ndarray:
    """8-bit images side by side (grey ones as RGB), each brought to about GALLERY_HEIGHT rows: small ones
    enlarged by whole pixels, large ones reduced (a page of every cell's examples stays a few MB)."""
    out = []
    for im in images:
        im = np.repeat(im[..., None], 3, 2) if im.ndim == 2 else im
        h, w = im.shape[:2]
        if h > GALLERY_HEIGHT:
            im = np.asarray(Image.fromarray(im).resize((w * GALLERY_HEIGHT // h, GALLERY_HEIGHT), Image.BOX))
        elif h < GALLERY_HEIGHT // 2:
            im = im.repeat(GALLERY_HEIGHT // h, 0).repeat(GALLERY_HEIGHT // h, 1)
        out += [im, np.full((im.shape[0], 2, 3), 255, np.uint8)]
    height = min(im.shape[0] for im in out)
    return np.concatenate([im[:height] for im in out[:-1]], 1)


def gallery_figure(clean: dict[str, np.ndarray], cell: dict[str, np.ndarray], mask: np.ndarray | None,
                   spec: dict) -> str:
    """One cell's first images: saliency, clean RGB | attacked RGB | 10x |difference| | attacked depth | GT |
    clean map | attacked map (| true patch mask); classification, clean | attacked | 10x |difference| with
    the predicted and true class."""
    rows, caption, image = [], _cell_title(spec), "query" if "query" in cell else "rgb"
    for i in range(min(GALLERY_ROWS, len(cell["names"]))):
        a, b = clean[image][i], cell[image][i]
        diff = np.clip(np.abs(b.astype(int) - a.astype(int)) * 10, 0, 255).astype(np.uint8)
        if image == "query":
            rows.append(_strip([a, b, diff]))
            caption += f"; {cell['names'][i]}: true {cell['label'][i]}, predicted {clean['pred'][i]} -> {cell['pred'][i]}"
        else:
            images = [a, b, diff, cell["depth"][i], cell["gt"][i], clean["pred"][i], cell["pred"][i]]
            if mask is not None:
                images.append(mask[i].astype(np.uint8) * 255)
            rows.append(_strip(images))
    columns = ("clean | attacked | 10x difference" if image == "query" else
               "clean RGB | attacked RGB | 10x difference | attacked depth | GT | clean map | attacked map"
               + (" | true patch mask" if mask is not None else ""))
    return figure(jpeg_uri(np.concatenate(rows, 0)), f"{caption} ({columns})")


def runs_section(results: Path) -> str:
    parts = []
    for root in sorted(p.parent for p in results.glob("*/manifest.json")):
        store = RunStore(root)
        manifest = store.manifest()
        cells = [c for c in manifest["cells"] if store.is_done(c["id"])]
        clean = next((store.gallery(c["id"]) for c in cells if c["attack"] == "none" and not c.get("defense")), {})
        items = []
        if (root / "robustness.png").is_file():
            items.append(figure(png_uri(root / "robustness.png"), "robustness curves"))
        if clean:
            for c in cells:
                g = store.gallery(c["id"])
                if g and list(g["names"]) == list(clean["names"][:len(g["names"])]):
                    mask = store.adversarial(c["id"]).get("mask")
                    items.append(gallery_figure(clean, g, mask, c))
        if items:
            parts.append(f"<details><summary>{html.escape(root.name)} ({manifest['model']} on "
                         f"{manifest['dataset']}, {len(cells)} cells)</summary>{''.join(items)}</details>")
    return "".join(parts) or "<p>No run folders with stored examples.</p>"


def build(leaderboards: Path, results: Path, out: Path | None = None) -> Path:
    """Write the report to ``out`` (default ``leaderboards/index.html``); return its path."""
    out = out or leaderboards / "index.html"
    sections = [("headline", "Headline", headline_section(leaderboards)),
                ("tables", "Leaderboards", tables_section(leaderboards)),
                ("figures", "Figures", figures_section(leaderboards)),
                ("runs", "Runs: robustness curves and galleries", runs_section(results))]
    nav = "".join(f'<a href="#{sid}">{title}</a>' for sid, title, _ in sections)
    body = "".join(f'<h2 id="{sid}">{title}</h2>{content}' for sid, title, content in sections)
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Robustness benchmark</title>'
            f"<style>{STYLE}</style></head><body><h1>Robustness benchmark</h1><nav>{nav}</nav>{body}"
            f"<script>{SCRIPT}</script></body></html>")
    atomic_write_text(out, page)
    return out
