"""The paper's sparsity coefficients and per-SAE statistics, and how they map onto saerepro's loss.

Rajamanoharan et al. (arXiv 2404.16014 v2) quote λ in their own units, per SAE, in Tables 1–8
(Gemma-7B and Pythia-2.8B, gated and baseline). ``config/paper/tables_1_8.csv`` holds those
tables transcribed (provenance and the rows that had to be reconstructed:
``config/paper/tables_1_8.md``); :func:`load_paper_tables` reads it. The config files in
``config/paper/`` hold λ in *ours* (:mod:`saerepro.sae.common`):

* ours: inputs x_o scaled so that E‖x_o‖² = d_in; L_o = ‖x_o − x̂_o‖² + λ_o ‖f_o‖₁
  (squared error summed over d_in, both terms averaged over the batch);
* the paper's, App. D.1.1: "In our infrastructure we calculate L2 loss and then divide by n. In the
  baseline experiments we further divide the reconstruction L2 loss by E||x||2." Written
  generally, with inputs x_p of E‖x_p‖² = M_p: L_p = ‖x_p − x̂_p‖² / N_p + λ_p ‖f_p‖₁, where
  N_p = n (= d_in) for gated and N_p = n · M_p for the Pythia-2.8B and Gemma-7B baselines.

With x_o = c·x_p, c = sqrt(d_in / M_p), and a unit-norm decoder, every SAE of one loss maps to an
SAE of the other with f_o = c·f_p (biases scaled by c), so ‖x_o − x̂_o‖² = c²‖x_p − x̂_p‖² and
‖f_o‖₁ = c‖f_p‖₁. Then L_o = c²·N_p·[‖x_p − x̂_p‖²/N_p + λ_o/(c·N_p)·‖f_p‖₁], which has the same
minimisers as L_p exactly when::

    λ_o = c · N_p · λ_p = sqrt(d_in / M_p) · N_p · λ_p                 (:func:`to_our_lambda`)

The same holds for the Gated loss (its aux term is another squared error; its L1 acts on
ReLU(π_gate), which also scales by c), so one formula covers every architecture.

**M_p is not in the text**, and no single value of it fits the tables. :func:`anchor_mismatch`
compares them with the only λ → L0 curves we have in our units (the long run's Gemma-3-270M
SAEs of the previous long run, ``results/long_previous/tables/metrics.csv``): for the paper's SAEs at L0 ≈ 30, the formula at
M_p = 1 with the text's division by n gives a λ 1.7× to 940× above the one ours need for L0 ≈ 30
at the same site, and without that division 2.7× to 1500× below. The paper's baselines also sit
one to two orders of magnitude below its gated SAEs in λ_p at equal L0 (Pythia-2.8B resid, layer
16: gated 0.0025 at L0 37.5, baseline 1.5e-05 at L0 42.7), where ours differ by 2× or less. So the paper
configs do not train a translated grid: they *anchor* a pilot (``docs/configuration.md``, pilot
mode) at :func:`anchor_lambda` = d_in · λ_p (the geometric mean of the two readings), aiming at
the L0s of the paper's own SAEs per site (:func:`paper_target_l0`). Against Gemma-3-270M, the λ
the pilot must find lies between 1/18 and 29× that anchor at every site of both models
(``docs/paper-scale.md``), so the configs probe ×/÷ 30 around their grids (``pilot.probe_factor``;
10 for Gemma-7B, whose per-site sweeps are already wide).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path

#: Tables 1–8 of the paper, transcribed: one row per SAE (provenance: ``tables_1_8.md`` beside it).
PAPER_TABLES_CSV = Path(__file__).resolve().parents[2] / "config" / "paper" / "tables_1_8.csv"
#: E‖x‖² of the paper's SAE inputs in :func:`to_our_lambda`'s default (not in the text).
PAPER_MEAN_SQ_NORM = 1.0
#: Significant digits the translated coefficients are rounded to (they name result folders).
SIGNIFICANT_DIGITS = 4


def round_significant(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """``value`` rounded to ``digits`` significant digits (0.0202386 -> 0.02024)."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def to_our_lambda(
    lam_paper: float,
    d_in: int,
    *,
    paper_mean_sq_norm: float = PAPER_MEAN_SQ_NORM,
    recon_divided_by_mean_sq: bool = False,
    recon_divided_by_n: bool = False,
) -> float:
    """λ_o = sqrt(d_in / M_p) · N_p · λ_p (module docstring): N_p is d_in if the paper's
    reconstruction term was divided by n (App. D.1.1), times M_p if it was also divided by
    E‖x‖² (their Pythia-2.8B and Gemma-7B baselines)."""
    if lam_paper <= 0 or d_in <= 0 or paper_mean_sq_norm <= 0:
        raise ValueError("lambda, d_in and the paper's mean squared norm must be positive")
    n_p = (paper_mean_sq_norm if recon_divided_by_mean_sq else 1.0) * (d_in if recon_divided_by_n else 1.0)
    return math.sqrt(d_in / paper_mean_sq_norm) * n_p * lam_paper


def anchor_lambda(lam_paper: float, d_in: int) -> float:
    """d_in · λ_p: where a paper config's pilot centres its probes for a paper λ (module
    docstring): the geometric mean of :func:`to_our_lambda` with and without App. D.1.1's
    division by n, at M_p = 1."""
    low = to_our_lambda(lam_paper, d_in)
    high = to_our_lambda(lam_paper, d_in, recon_divided_by_n=True)
    return math.sqrt(low * high)


def log_grid(low: float, high: float, n: int) -> list[float]:
    """``n`` log-spaced values from ``low`` to ``high`` inclusive, rounded to
    :data:`SIGNIFICANT_DIGITS` (the paper quotes each sweep by its end points only)."""
    if n < 2 or not 0 < low < high:
        raise ValueError("need n >= 2 and 0 < low < high")
    ratio = (high / low) ** (1 / (n - 1))
    return [round_significant(low * ratio**i) for i in range(n)]


def translated_grid(paper_grid: Sequence[float], d_in: int, **kwargs) -> list[float]:
    """:func:`to_our_lambda` of each value, rounded to :data:`SIGNIFICANT_DIGITS`."""
    return [round_significant(to_our_lambda(lam, d_in, **kwargs)) for lam in paper_grid]


def anchor_grid(paper_grid: Sequence[float], d_in: int) -> list[float]:
    """:func:`anchor_lambda` of each value, rounded to :data:`SIGNIFICANT_DIGITS`."""
    return [round_significant(anchor_lambda(lam, d_in)) for lam in paper_grid]


@cache
def load_paper_tables(path: Path = PAPER_TABLES_CSV) -> tuple[dict, ...]:
    """Rows of the paper's Tables 1–8: ``table``, ``model`` (``gemma-7b``, ``pythia-2.8b``),
    ``architecture`` (``gated``, ``baseline``), ``site`` (``resid``, ``mlp``, ``attn``), ``layer``,
    ``lambda``, ``lr``, ``l0``, ``ce_recovered_pct``, ``clean_ce``, ``sae_ce``, ``zero_abl_ce``,
    ``width``, ``alive_pct``, ``gamma`` (numbers as floats, ``table``/``layer``/``width`` as ints)."""
    ints = {"table", "layer", "width"}
    text = {"model", "architecture", "site"}
    with open(path, newline="") as fh:
        return tuple(
            {k: (v if k in text else int(v) if k in ints else float(v)) for k, v in row.items()}
            for row in csv.DictReader(fh)
        )


#: Paper configs without a table of their own read another model's: GELU-1L's sweeps are not in
#: the text (Section 4.1 and Fig. 5 only say λ was varied), so it takes Pythia-2.8B's MLP sweep.
TABLE_STAND_INS: dict[tuple[str, str], tuple[str, str]] = {("gelu-1l", "mlp_post"): ("pythia-2.8b", "mlp")}


def _table_rows(model: str, site: str, family: str | None = None) -> list[dict]:
    model, site = TABLE_STAND_INS.get((model, site), (model, site))
    rows = [r for r in load_paper_tables() if r["model"] == model and r["site"] == site]
    if family is not None:
        rows = [r for r in rows if r["architecture"] == family]
    if not rows:
        raise KeyError(f"no SAE of {model} at {site}" + (f" ({family})" if family else "") + " in Tables 1-8")
    return rows


def paper_lambda_range(model: str, family: str, site: str) -> tuple[float, float]:
    """The smallest and largest λ (paper units) of ``family``'s SAEs at ``site`` in Tables 1–8,
    over every layer: the paper's sweep at that site."""
    lams = [r["lambda"] for r in _table_rows(model, site, family)]
    return min(lams), max(lams)


def paper_target_l0(
    model: str, site: str | None = None, quantiles: tuple[float, float] = (0.1, 0.9)
) -> tuple[float, float]:
    """The L0 range a pilot aims at for ``site`` (None: every site of the model): the 10th and
    90th percentiles of the L0s of the paper's SAEs there (Tables 1–8, both architectures, every
    layer; the tables' few L0s ≤ 0 are conversion damage and left out), rounded to 2 significant
    digits."""
    if site is None:
        rows = [r for r in load_paper_tables() if r["model"] == model]
    else:
        rows = _table_rows(model, site)
    l0s = [r["l0"] for r in rows if r["l0"] > 0]
    import numpy as np

    lo, hi = (float(np.quantile(l0s, q)) for q in quantiles)
    return round_significant(lo, 2), round_significant(hi, 2)


#: Points per sweep in the paper configs.
GRID_POINTS = 6


def paper_config_grid(model: str, family: str, site: str, d_in: int, n: int = GRID_POINTS) -> list[float]:
    """The λ grid (our convention) that ``config/paper/<model>.yaml`` holds for ``family``
    (``gated`` or ``baseline``; the gated ablations use ``gated``'s) at ``site`` (``d_in`` wide):
    :func:`anchor_grid` of ``n`` log-spaced points over the paper's sweep there."""
    low, high = paper_lambda_range(model, family, site)
    return anchor_grid(log_grid(low, high, n), d_in)


def lambda_at_l0(points: Iterable[tuple[float, float]], l0: float) -> float | None:
    """λ at which L0 = ``l0``, interpolating log λ against log L0 between the two ``(λ, L0)``
    points that bracket it (sorted by λ); None if no pair brackets it."""
    pts = sorted((lam, v) for lam, v in points if lam > 0 and v > 0)
    for (l1, v1), (l2, v2) in zip(pts, pts[1:], strict=False):
        if min(v1, v2) <= l0 <= max(v1, v2) and v1 != v2:
            t = (math.log(l0) - math.log(v1)) / (math.log(v2) - math.log(v1))
            return math.exp(math.log(l1) + t * (math.log(l2) - math.log(l1)))
    return None


def anchor_mismatch(
    ours: Iterable[tuple[str, str, float, float]], model: str, d_in: dict[str, int], l0: float = 30.0
) -> dict[tuple[str, str], tuple[float, float]]:
    """How far a paper config's anchors sit from what our own SAEs need: for each (site, family),
    the lowest and highest ratio, over the paper's layers, of (our λ reaching L0 = ``l0``) to
    (:func:`anchor_lambda` of the paper's λ reaching it at that layer). ``ours``: (site, family,
    λ, L0) of our SAEs (one layer); ``d_in``: the paper model's width per site."""
    ours = list(ours)
    out: dict[tuple[str, str], tuple[float, float]] = {}
    for site in d_in:
        for family in ("gated", "baseline"):
            our_lam = lambda_at_l0([(lam, v) for s, f, lam, v in ours if (s, f) == (site, family)], l0)
            if our_lam is None:
                continue
            rows = _table_rows(model, site, family)
            ratios = []
            for layer in sorted({r["layer"] for r in rows}):
                theirs = lambda_at_l0([(r["lambda"], r["l0"]) for r in rows if r["layer"] == layer], l0)
                if theirs is not None:
                    ratios.append(our_lam / anchor_lambda(theirs, d_in[site]))
            if ratios:
                out[(site, family)] = (min(ratios), max(ratios))
    return out
