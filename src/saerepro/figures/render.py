"""Every registered figure of a run, from its aggregated tables only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from ..pareto import DEFAULT_LEVELS
from ..sites import SITES
from ..tables import KEY_COLUMNS, aggregate_seeds, read_metrics_table, slug
from ..verdicts import fitted_half_l0
from .registry import FIGURES


def figures_from_tables(tables_dir: str | Path, out_dir: str | Path, **kwargs) -> list[Path]:
    """:func:`make_all_figures` from the aggregated tables in ``tables_dir``: ``metrics.csv`` and,
    where aggregate wrote it, ``training_health.csv``, whose ``diverged`` crosses out the SAEs that
    blew up in training (:mod:`saerepro.health`). ``kwargs`` go to :func:`make_all_figures`; its
    ``sites`` default to those the run asked for (with SAEs, or listed in ``missing_runs.csv``)."""

    df = read_metrics_table(Path(tables_dir) / "metrics.csv")
    # the sites the run asked for: those with SAEs and those whose SAEs are missing (a partial run);
    # a paper site the config never asked for gets no empty panel
    asked = set(df["site"])
    missing_path = Path(tables_dir) / "missing_runs.csv"
    if missing_path.exists():
        asked |= set(pd.read_csv(missing_path)["site"].astype(str))
    kwargs.setdefault("sites", [s for s in SITES if s in asked] + sorted(asked - set(SITES)))
    health_path = Path(tables_dir) / "training_health.csv"
    if health_path.exists():
        health = pd.read_csv(health_path)
        if len(health):
            keys = list(KEY_COLUMNS)
            df = df.merge(health[[*keys, "diverged"]], on=keys, how="left")
            df["diverged"] = df["diverged"].fillna(False).astype(bool)
    return make_all_figures(df, out_dir, **kwargs)


def make_all_figures(
    metrics: pd.DataFrame,
    out_dir: str | Path,
    *,
    headline_layer: int | Mapping[str, int] | None = None,
    levels: Sequence[float] | None = None,
    sites: Sequence[str] | None = None,
) -> list[Path]:
    """Every figure of :data:`FIGURES` from the long results table; returns the written paths.

    Seeds are averaged first (:func:`saerepro.tables.aggregate_seeds`). With one model the files
    are ``<out_dir>/<stem>.{png,pdf}``; with several, the per-model figures go to
    ``<out_dir>/<model>/<stem>.{png,pdf}`` and ``half_l0_ratios`` (all models) stays in ``out_dir``.
    ``headline_layer`` (an int, or model -> int) is the layer of the single-layer figures
    (default: the middle layer present); ``sites`` the panels (default: the paper's three sites
    and any other present); ``levels`` the loss-recovered levels of the half-L0 plot
    (default :data:`saerepro.pareto.DEFAULT_LEVELS`). Figures are closed after saving.
    """

    agg = aggregate_seeds(metrics)
    out_dir = Path(out_dir)
    models = sorted(agg["model"].unique())
    paths: list[Path] = []

    def _done(fig: plt.Figure, stem: Path) -> None:
        plt.close(fig)
        paths.extend([stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")])

    for model in models:
        layer = headline_layer.get(model) if isinstance(headline_layer, Mapping) else headline_layer
        base = out_dir if len(models) == 1 else out_dir / slug(model)
        for name, func in FIGURES.items():
            if name == "half_l0_ratios":
                continue
            grid = name in ("fig12_pareto_grid", "fig14_gamma_grid")
            kwargs = {"model": model, "sites": sites} if grid else {"model": model, "layer": layer, "sites": sites}
            _done(func(agg, base / name, **kwargs), base / name)

    stem = out_dir / "half_l0_ratios"
    # C3's ratios from the fitted frontiers (what the verdicts read), not the interpolated points
    half = fitted_half_l0(metrics, DEFAULT_LEVELS if levels is None else levels)
    _done(FIGURES["half_l0_ratios"](half, stem, sites=sites), stem)
    return paths
