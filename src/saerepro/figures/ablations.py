"""The paper's ablations: gated against its ablations (Fig. 8) and baseline + rescale & shift (Fig. 9)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from .panels import (
    _pareto_row,
)
from .registry import figure
from .style import (
    _styled,
)


@figure("fig8_ablations")
@_styled
def plot_gated_ablations(
    df: pd.DataFrame,
    stem: str | Path,
    *,
    model: str | None = None,
    layer: int | None = None,
    sites: Sequence[str] | None = None,
) -> plt.Figure:
    """Fig. 8 analogue: Pareto frontiers of gated vs gated_unfrozen_decoder, gated_no_rmag,
    gated_untied and gated_strict_aux (L0 vs loss recovered), one panel per site at one layer.
    Needs columns model, layer, site, architecture, l0, loss_recovered."""
    return _pareto_row(
        df,
        stem,
        fig_name="fig8_ablations",
        archs=("gated", "gated_unfrozen_decoder", "gated_no_rmag", "gated_untied", "gated_strict_aux"),
        title="Gated SAE ablations",
        model=model,
        layer=layer,
        sites=sites,
    )


@figure("fig9_rescale_shift")
@_styled
def plot_baseline_rescale_shift(
    df: pd.DataFrame,
    stem: str | Path,
    *,
    model: str | None = None,
    layer: int | None = None,
    sites: Sequence[str] | None = None,
) -> plt.Figure:
    """Fig. 9 analogue: Pareto frontiers of baseline vs baseline_rescale_shift vs gated
    (L0 vs loss recovered), one panel per site at one layer.
    Needs columns model, layer, site, architecture, l0, loss_recovered."""
    return _pareto_row(
        df,
        stem,
        fig_name="fig9_rescale_shift",
        archs=("baseline", "baseline_rescale_shift", "gated"),
        title="Baseline + rescale & shift vs baseline and gated",
        model=model,
        layer=layer,
        sites=sites,
    )
