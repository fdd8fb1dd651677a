"""Compare leaderboards between two commits (or a commit and the working tree).

Rows are joined on the leaderboard key; for every metric the change HEAD - BASE is printed (with the
base's 95% bootstrap interval where the table has one, so a reader sees what is noise), and the
comparison fails when a metric gets worse by more than its tolerance or becomes NaN. Added and removed
rows are listed, not errors.
"""
from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pandas as pd

from benchmark.leaderboard import KEY, key_strings, read_table, table_key, with_key_columns
from benchmark.metrics import HIGHER_IS_BETTER

DEFAULT_TOLERANCE = 0.01
LEADERBOARDS = Path("leaderboards")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def load_tables(rev: str | None, directory: Path = LEADERBOARDS) -> dict[str, pd.DataFrame]:
    """Every ``<directory>/*.csv`` at ``rev`` (None: the working tree)."""
    if rev is None:
        return {p.stem: read_table(p) for p in sorted(directory.glob("*.csv"))}
    try:
        _git("rev-parse", "--verify", f"{rev}^{{commit}}")
    except subprocess.CalledProcessError as e:
        raise ValueError(f"not a git revision: {rev!r}") from e
    names = _git("ls-tree", "--name-only", f"{rev}:{directory.as_posix()}").split() if _has_dir(rev, directory) else []
    return {Path(n).stem: read_table(io.StringIO(_git("show", f"{rev}:{(directory / n).as_posix()}")))
            for n in names if n.endswith(".csv")}


def _has_dir(rev: str, directory: Path) -> bool:
    try:
        _git("rev-parse", "--verify", f"{rev}:{directory.as_posix()}")
        return True
    except subprocess.CalledProcessError:
        return False


def _interval(r: pd.Series, m: str) -> str:
    """`` [base 95% CI lo-hi]`` where the base row has a bootstrap interval of ``m``."""
    low, high = r.get(f"{m}_lo_base", float("nan")), r.get(f"{m}_hi_base", float("nan"))
    return "" if pd.isna(low) or pd.isna(high) else f" [base 95% CI {low:.3f}-{high:.3f}]"


def compare(base: dict[str, pd.DataFrame], head: dict[str, pd.DataFrame],
            tolerances: dict[str, float] | None = None) -> tuple[str, bool]:
    """Return (report, regressed)."""
    tolerances = tolerances or {}
    out, regressed = [], False
    for name in sorted(set(base) | set(head)):
        columns = table_key(name)
        b = base.get(name, pd.DataFrame(columns=columns))
        h = head.get(name, pd.DataFrame(columns=columns))
        # Join on the key columns both sides have: a table from before a key column existed still joins.
        key = [k for k in columns if k in b.columns and k in h.columns]
        if columns is KEY:
            b, h = (with_key_columns(df) for df in (b, h))
        b, h = (df.assign(**key_strings(df, key)) for df in (b, h))
        named = ("model", "attack", "modality", "eps") if columns is KEY else key
        metrics = [m for m in HIGHER_IS_BETTER if m in b.columns and m in h.columns]
        joined = b.merge(h, on=key, how="outer", suffixes=("_base", "_head"), indicator=True)
        out.append(f"== {name}: {len(b)} rows at base, {len(h)} at head")
        for label, side in (("added", "right_only"), ("removed", "left_only")):
            for _, r in joined[joined._merge == side].iterrows():
                out.append(f"  {label}: " + " ".join(f"{k}={r[k]}" for k in key))
        both = joined[joined._merge == "both"]
        changed = 0
        for _, r in both.iterrows():
            deltas = []
            for m in metrics:
                before, after = r[f"{m}_base"], r[f"{m}_head"]
                if pd.isna(after) and not pd.isna(before):  # a score that stops being a number is a regression
                    regressed = True
                    deltas.append(f"{m} {before:.4f} -> NaN WORSE")
                    continue
                d = after - before
                worse = -d if HIGHER_IS_BETTER[m] else d
                tol = tolerances.get(m, DEFAULT_TOLERANCE)
                if pd.isna(d):
                    if not pd.isna(after):
                        deltas.append(f"{m} NaN -> {after:.4f}")
                elif worse > tol:
                    regressed = True
                    deltas.append(f"{m} {d:+.4f} WORSE (tol {tol}){_interval(r, m)}")
                elif abs(d) > 1e-9:
                    deltas.append(f"{m} {d:+.4f}{_interval(r, m)}")
            if deltas:
                changed += 1
                row = " ".join(f"{k}={r[k]}" for k in named)
                out.append(f"  {row}: " + ", ".join(deltas))
        out.append(f"  {len(both)} common rows, {changed} changed")
    out.append("RESULT: " + ("REGRESSION (a metric got worse beyond its tolerance)" if regressed else "ok"))
    return "\n".join(out), regressed
