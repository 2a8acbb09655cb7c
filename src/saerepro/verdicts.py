"""The paper's claims as a verdict table: one row per (model, layer, site), one column per claim.

Each cell is *shown*, *not shown*, *reversed* (the data favour the opposite), *mixed* (significant
both ways at different L0), *no overlap* or *not run*, followed by the numbers it rests on, ± their
SE. A difference counts when it exceeds twice its SE; the SE of a difference of two SAEs is
√(SE₁² + SE₂²), conservative because both are evaluated on the same sequences (their errors are
positively correlated). Values between SAEs are interpolated linearly in log L0 (SEs too).

Claims (Rajamanoharan et al. 2024):

* **C1 shrinkage**: baseline SAEs shrink (γ_c < 1) and gated SAEs do not, at matched L0.
* **C2 Pareto improvement**: at equal L0 gated SAEs recover more loss than baseline SAEs.
* **C3 half the L0**: for equal loss recovered the baseline needs more L0 than gated (the paper: ~2×);
  the ratio's 95% interval from :func:`saerepro.tables.half_l0_ratio_ci`.
* **C4 frozen decoder in the aux term** (Fig. 8): gated ≥ ``gated_unfrozen_decoder`` at equal L0.
* **C5 more than a shrinkage fix** (Fig. 9): gated ≥ ``baseline_rescale_shift`` at equal L0.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from .pareto import DEFAULT_LEVELS, half_l0, pareto_frontier

CLAIMS: dict[str, str] = {
    "C1": "shrinkage (γ_c, baseline vs gated, matched L0)",
    "C2": "Pareto improvement (loss recovered, gated − baseline, matched L0)",
    "C3": "L0 ratio baseline / gated at matched loss recovered",
    "C4": "frozen decoder in aux (gated − gated_unfrozen_decoder)",
    "C5": "beyond rescale-shift (gated − baseline_rescale_shift)",
}

#: A difference is significant beyond this many standard errors.
Z = 2.0


def _curve(pts: pd.DataFrame, y: str, frontier: bool) -> pd.DataFrame:
    pts = pts[pts["l0"].astype(float) > 0]
    if frontier:
        pts = pareto_frontier(pts, "l0", y)
    return pts.sort_values("l0", kind="stable")


def _at(curve: pd.DataFrame, y: str, l0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lx = np.log(curve["l0"].to_numpy(dtype=float))
    val = np.interp(np.log(l0), lx, curve[y].to_numpy(dtype=float))
    se_col = f"{y}_se"
    se = np.interp(np.log(l0), lx, curve[se_col].to_numpy(dtype=float)) if se_col in curve else np.zeros_like(val)
    return val, se


def matched_l0(a: pd.DataFrame, b: pd.DataFrame, y: str, frontier: bool, n: int = 5) -> pd.DataFrame | None:
    """``y`` of architectures a and b at ``n`` log-spaced L0s inside both L0 ranges (or None).

    Columns l0, a, a_se, b, b_se, diff (a − b), diff_se. With ``frontier`` each side is its Pareto
    frontier (min L0, max y), else all its SAEs in order of L0.
    """
    ca, cb = _curve(a, y, frontier), _curve(b, y, frontier)
    if len(ca) < 2 or len(cb) < 2:
        return None
    lo = max(ca["l0"].min(), cb["l0"].min())
    hi = min(ca["l0"].max(), cb["l0"].max())
    if not lo < hi:
        return None
    l0 = np.geomspace(lo, hi, n)
    va, sa = _at(ca, y, l0)
    vb, sb = _at(cb, y, l0)
    return pd.DataFrame(
        {"l0": l0, "a": va, "a_se": sa, "b": vb, "b_se": sb, "diff": va - vb, "diff_se": np.hypot(sa, sb)}
    )


def sign_verdict(m: pd.DataFrame, z: float | None = None) -> str:
    """The verdict on differences ``m["diff"]`` ± ``m["diff_se"]`` (one or several matched points):
    each counts where |diff| > z·SE (z: :data:`Z`); *shown* / *reversed* when all points count with
    one sign, *… at some L0* when some do, *mixed* when both signs do, else *not shown*."""
    z = Z if z is None else z
    sig = np.sign(m["diff"]) * (np.abs(m["diff"]) > z * m["diff_se"])
    if (sig > 0).any() and (sig < 0).any():
        return "mixed"
    if (sig > 0).any():
        return "shown" if (sig > 0).all() else "shown at some L0"
    if (sig < 0).any():
        return "reversed" if (sig < 0).all() else "reversed at some L0"
    return "not shown"


def _mid(m: pd.DataFrame) -> pd.Series:
    return m.iloc[len(m) // 2]


def frontier_claim(df: pd.DataFrame, a: str, b: str) -> str:
    """C2/C4/C5: a's loss-recovered frontier above b's at matched L0 (a − b ± SE at the middle L0)."""
    pa, pb = df[df["architecture"] == a], df[df["architecture"] == b]
    if pa.empty or pb.empty:
        return "not run"
    m = matched_l0(pa, pb, "loss_recovered", frontier=True)
    if m is None:
        return "no overlap"
    r = _mid(m)
    return f"{sign_verdict(m)}: {r['diff']:+.3f} ± {r['diff_se']:.3f} at L0 {r['l0']:.0f}"


def shrinkage_claim(df: pd.DataFrame) -> str:
    """C1: baseline γ_c below 1 and below gated's, at matched L0 (both ± SE at the middle L0)."""
    g, b = df[df["architecture"] == "gated"], df[df["architecture"] == "baseline"]
    if g.empty or b.empty:
        return "not run"
    m = matched_l0(g, b, "gamma_c", frontier=False)
    if m is None:
        return "no overlap"
    r = _mid(m)
    base_shrinks = r["b"] + Z * r["b_se"] < 1
    if base_shrinks and r["diff"] > Z * r["diff_se"]:
        verdict = "shown"
    elif r["diff"] < -Z * r["diff_se"]:
        verdict = "reversed"
    else:
        verdict = "not shown"
    return (
        f"{verdict}: γ_c gated {r['a']:.3f} ± {r['a_se']:.3f}, baseline {r['b']:.3f} ± {r['b_se']:.3f} "
        f"at L0 {r['l0']:.0f}"
    )


def ratio_claim(df: pd.DataFrame, levels=DEFAULT_LEVELS) -> str:
    """C3: the half-L0 ratio and its 95% interval at the middle loss-recovered level where it is defined."""
    from .tables import half_l0_ratio_ci

    if not {"gated", "baseline"} <= set(df["architecture"]):
        return "not run"
    half = half_l0(df, levels)
    ci = half_l0_ratio_ci(df, levels)
    half = half.assign(ci_low=ci[:, 0], ci_high=ci[:, 1])
    ok = half[np.isfinite(half["ratio"].to_numpy(dtype=float))]
    if ok.empty:
        return "no overlap"
    r = ok.iloc[len(ok) // 2]
    lo, hi = r["ci_low"], r["ci_high"]
    if np.isfinite(lo) and lo > 1:
        verdict = "shown"
    elif np.isfinite(hi) and hi < 1:
        verdict = "reversed"
    else:
        verdict = "not shown"
    interval = f" [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else ""
    return f"{verdict}: {r['ratio']:.2f}{interval} at loss recovered {r['level']:g}"


#: Claim -> its verdict on one (model, layer, site) group of the seed-aggregated table. The
#: verdict table and the figures' notes (:mod:`saerepro.plotting`) both judge through this map.
JUDGES: dict[str, Callable[[pd.DataFrame], str]] = {
    "C1": shrinkage_claim,
    "C2": lambda g: frontier_claim(g, "gated", "baseline"),
    "C3": ratio_claim,
    "C4": lambda g: frontier_claim(g, "gated", "gated_unfrozen_decoder"),
    "C5": lambda g: frontier_claim(g, "gated", "baseline_rescale_shift"),
}
assert set(JUDGES) == set(CLAIMS)


def verdict(agg: pd.DataFrame, claim: str, model: str, layer: int, site: str) -> str | None:
    """The verdict on ``claim`` at (model, layer, site): its cell of :func:`verdict_table`, from the
    same rows; None where the table has no rows there."""
    g = agg[(agg["model"] == model) & (agg["layer"].astype(int) == int(layer)) & (agg["site"] == site)]
    return JUDGES[claim](g) if len(g) else None


def verdict_table(agg: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, layer, site) of the seed-aggregated table, a column per claim (C1–C5).

    C4 and C5 are judged only where their ablation was trained ("not run" elsewhere).
    """
    rows = []
    for (model, layer, site), g in agg.groupby(["model", "layer", "site"], sort=False):
        rows.append({"Model": model, "Layer": int(layer), "Site": site, **{c: j(g) for c, j in JUDGES.items()}})
    order = {"resid": 0, "mlp": 1, "attn": 2}
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    return (
        out.assign(_s=out["Site"].map(order))
        .sort_values(["Model", "Layer", "_s"])
        .drop(columns="_s")
        .reset_index(drop=True)
    )


def write_verdicts(df: pd.DataFrame, stem: str | Path) -> list[Path]:
    """``<stem>.csv`` and ``<stem>.md`` (with the claims' legend) from the long results table."""
    from .tables import aggregate_seeds, table_to_markdown

    table = verdict_table(aggregate_seeds(df))
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv, md = stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".md")
    table.to_csv(csv, index=False)
    legend = "\n".join(f"- **{k}**: {v}" for k, v in CLAIMS.items())
    md.write_text(
        "# The paper's claims, judged on this run\n\n"
        + table_to_markdown(table)
        + "\n"
        + legend
        + f"\n\nA difference counts beyond {Z:g} SE (paired, sequence-aware evaluation SEs; "
        "see docs/metrics.md). Numbers: the difference or values at the middle of the L0 range "
        "both architectures cover.\n"
    )
    return [csv, md]


__all__ = [
    "CLAIMS",
    "JUDGES",
    "frontier_claim",
    "matched_l0",
    "ratio_claim",
    "shrinkage_claim",
    "verdict",
    "verdict_table",
    "write_verdicts",
]
