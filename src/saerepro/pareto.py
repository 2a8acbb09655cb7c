"""Pareto frontiers and the paper's "half the L0" comparison.

The paper's headline claim is that gated SAEs are a Pareto improvement over baseline (ReLU)
SAEs on the sparsity (L0, lower is better) vs fidelity (loss recovered, higher is better)
trade-off, and that at equal loss recovered they need roughly half the L0. This module makes
both claims computable:

* :func:`pareto_frontier` — the non-dominated points of one point set;
* :func:`interpolate_on_frontier` — the L0 a frontier needs to reach a given loss recovered,
  interpolating log L0 linearly in loss recovered between adjacent frontier points, NaN outside
  the frontier's range (never extrapolated);
* :func:`half_l0` — for each (model, layer, site) and level, the L0 gated and baseline need and
  the ratio baseline_L0 / gated_L0 (2 = "half the L0").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_LEVELS",
    "GROUP_COLUMNS",
    "half_l0",
    "interpolate_on_frontier",
    "pareto_frontier",
    "pareto_frontiers",
]

#: Loss-recovered levels at which :func:`half_l0` compares architectures by default.
DEFAULT_LEVELS: tuple[float, ...] = (0.7, 0.8, 0.9, 0.95)

#: Columns identifying one SAE family (one hook point) whose frontiers are compared.
GROUP_COLUMNS: tuple[str, ...] = ("model", "layer", "site")


def _require(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: table lacks column(s) {missing}; it has {list(df.columns)}")


def pareto_frontier(
    df: pd.DataFrame,
    x: str,
    y: str,
    minimize_x: bool = True,
    maximize_y: bool = True,
) -> pd.DataFrame:
    """Rows of ``df`` on the Pareto frontier of (x, y), sorted by ``x`` ascending.

    A point is on the frontier iff no other point is at least as good in both coordinates and
    strictly better in one. Ties are resolved so the frontier is *strictly* monotone (both
    coordinates strictly improve along it), which makes interpolation along it well defined:

    * points with equal x: only the one with the best y is kept;
    * points with equal y: only the one with the best x is kept;
    * exact duplicates (same x and y): only the first in ``df``'s row order is kept.

    Raises ``ValueError`` if x or y contains NaN or ±inf (a frontier through undefined values
    is meaningless: clean the table first). Returns an empty frame for an empty input. The
    original index and all columns are preserved.
    """
    _require(df, [x, y], "pareto_frontier")
    if df.empty:
        return df.iloc[0:0].copy()
    xs = df[x].to_numpy(dtype=float)
    ys = df[y].to_numpy(dtype=float)
    bad = ~(np.isfinite(xs) & np.isfinite(ys))
    if bad.any():
        raise ValueError(f"pareto_frontier: {int(bad.sum())} row(s) have non-finite {x!r} or {y!r}")
    kx = xs if minimize_x else -xs  # minimise kx
    ky = -ys if maximize_y else ys  # minimise ky
    # Sort by (kx, ky, original position): lexsort takes keys last-primary.
    order = np.lexsort((np.arange(len(df)), ky, kx))
    keep = []
    best = np.inf
    for i in order:
        if ky[i] < best:  # strictly better y than everything with smaller-or-equal kx
            keep.append(i)
            best = ky[i]
    out = df.iloc[keep]
    return out.iloc[np.argsort(out[x].to_numpy(dtype=float), kind="stable")].copy()


def pareto_frontiers(
    df: pd.DataFrame,
    x: str,
    y: str,
    by: Sequence[str],
    minimize_x: bool = True,
    maximize_y: bool = True,
) -> pd.DataFrame:
    """:func:`pareto_frontier` applied within each group of ``by`` columns, concatenated."""
    by = list(by)
    _require(df, [x, y, *by], "pareto_frontiers")
    if df.empty:
        return df.iloc[0:0].copy()
    parts = [
        pareto_frontier(g, x, y, minimize_x=minimize_x, maximize_y=maximize_y)
        for _, g in df.groupby(by, sort=True, dropna=False)
    ]
    return pd.concat(parts) if parts else df.iloc[0:0].copy()


def interpolate_on_frontier(
    frontier: pd.DataFrame,
    levels: Sequence[float],
    x: str = "l0",
    y: str = "loss_recovered",
) -> np.ndarray:
    """L0 needed to reach each loss-recovered ``level`` along a (min x, max y) frontier.

    ``frontier`` may be any point set: its Pareto frontier is taken first (after dropping points
    with x ≤ 0, where log L0 is undefined, e.g. an SAE with every latent dead). Along the frontier
    y strictly increases with x. For a level ℓ with y_i ≤ ℓ ≤ y_{i+1}::

        log x(ℓ) = log x_i + (ℓ − y_i) / (y_{i+1} − y_i) · (log x_{i+1} − log x_i)

    A level equal to a frontier point's y returns that point's x. Levels below the smallest or
    above the largest frontier y return NaN (never extrapolated); so does every level if the
    frontier is empty. A single-point frontier gives its x only for exactly its own y.
    """
    _require(frontier, [x, y], "interpolate_on_frontier")
    pts = frontier[frontier[x].astype(float) > 0]
    fr = pareto_frontier(pts, x, y, minimize_x=True, maximize_y=True)
    lv = np.asarray(levels, dtype=float)
    out = np.full(lv.shape, np.nan)
    if fr.empty:
        return out
    fx = np.log(fr[x].to_numpy(dtype=float))
    fy = fr[y].to_numpy(dtype=float)
    inside = (lv >= fy[0]) & (lv <= fy[-1])
    # np.interp needs increasing xp: fy is strictly increasing along the frontier.
    out[inside] = np.exp(np.interp(lv[inside], fy, fx))
    return out


def half_l0(
    df: pd.DataFrame,
    levels: Sequence[float] = DEFAULT_LEVELS,
    *,
    gated: str = "gated",
    baseline: str = "baseline",
    group_cols: Sequence[str] = GROUP_COLUMNS,
    arch_col: str = "architecture",
    x: str = "l0",
    y: str = "loss_recovered",
) -> pd.DataFrame:
    """The L0 gated and baseline SAEs need to reach each loss-recovered level, and their ratio.

    For each group of ``group_cols`` (default model, layer, site) that has rows of either
    architecture, and each level in ``levels``, returns one row with columns
    ``[*group_cols, "level", "l0_gated", "l0_baseline", "ratio", "note"]`` where
    ``l0_<arch>`` = :func:`interpolate_on_frontier` on that architecture's points in the group
    (every seed/coefficient is a point), ``ratio`` = l0_baseline / l0_gated (> 1: gated needs less
    L0; 2 = "half the L0"), NaN where either side is NaN, and ``note`` says why
    ("" if the ratio is defined, else "outside gated frontier", "outside gated and baseline
    frontiers", "no baseline SAEs", ...).
    """
    group_cols = list(group_cols)
    _require(df, [*group_cols, arch_col, x, y], "half_l0")
    lv = [float(v) for v in levels]
    if not lv:
        raise ValueError("half_l0: no loss-recovered levels given")
    cols = [*group_cols, "level", "l0_gated", "l0_baseline", "ratio", "note"]
    sub = df[df[arch_col].isin([gated, baseline])]
    rows = []
    for key, g in sub.groupby(group_cols, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        res = {}
        for label, arch in (("gated", gated), ("baseline", baseline)):
            pts = g[g[arch_col] == arch]
            res[label] = None if pts.empty else interpolate_on_frontier(pts, lv, x=x, y=y)
        for i, level in enumerate(lv):
            vals = {k: (np.nan if v is None else float(v[i])) for k, v in res.items()}
            missing = [k for k, v in res.items() if v is None]
            outside = [k for k, v in res.items() if v is not None and not np.isfinite(v[i])]
            notes = [f"no {k} SAEs" for k in missing]
            if outside:
                notes.append("outside " + " and ".join(outside) + (" frontiers" if len(outside) > 1 else " frontier"))
            lg, lb = vals["gated"], vals["baseline"]
            ratio = lb / lg if np.isfinite(lg) and np.isfinite(lb) else np.nan
            rows.append((*key, level, lg, lb, ratio, "; ".join(notes)))
    return pd.DataFrame(rows, columns=cols)
