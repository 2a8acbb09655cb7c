"""Shrinkage figures: γ and γ_c against L0 per site (Fig. 6) and on the layers × sites grid (Fig. 14)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.lines import Line2D

from .panels import (
    _draw_fit,
    _error_bars,
    _layer_site_grid,
    _legend,
    _log_axis,
    _missing_note,
    _no_data,
    _on,
    _positive_l0,
    _require,
    _select_layer,
    _select_model,
    _site_list,
)
from .registry import figure
from .style import (
    _LABELS,
    SITE_LABELS,
    _fig_width,
    _styled,
    arch_style,
    save_figure,
)


@figure("fig6_shrinkage")
@_styled
def plot_shrinkage(
    df: pd.DataFrame,
    stem: str | Path,
    *,
    model: str | None = None,
    layer: int | None = None,
    sites: Sequence[str] | None = None,
    architectures: Sequence[str] = ("gated", "baseline"),
) -> plt.Figure:
    """Figs. 6/14 analogue: γ (top row) and mean-centred γ_c (bottom row) vs L0, per site.

    Each architecture's SAEs are joined in order of L0 (``gid="gamma:<arch>"`` /
    ``"gamma_c:<arch>"``); a dashed line marks γ = 1 (no shrinkage; ``gid="gamma_one"``).
    γ < 1 means the reconstructions are too short (shrinkage).
    Needs columns model, layer, site, architecture, l0, gamma, gamma_c.
    """
    fig_name = "fig6_shrinkage"
    _require(df, ["model", "layer", "site", "architecture", "l0", "gamma", "gamma_c"], fig_name)
    model = _select_model(df, model, fig_name)
    d = df[df["model"] == model]
    site_list = _site_list(d, sites)
    sel = d[d["architecture"].isin(architectures)]
    layer = _select_layer(sel if not sel.empty else d, layer, fig_name)
    d = _positive_l0(sel[sel["layer"] == layer])
    fig, axes = plt.subplots(
        2, len(site_list), figsize=(_fig_width(3.6, len(site_list)), 6.5), squeeze=False, layout="constrained"
    )
    present: set[str] = set()
    for i, metric in enumerate(("gamma", "gamma_c")):
        for j, site in enumerate(site_list):
            ax = axes[i, j]
            ds = d[d["site"] == site]
            if i == 0:
                ax.set_title(SITE_LABELS.get(site, site))
            if j == 0:
                ax.set_ylabel(_LABELS[metric])
            if ds.empty:
                _no_data(ax)
                continue
            for arch in architectures:
                pts = ds[ds["architecture"] == arch].sort_values("l0", kind="stable")
                if pts.empty:
                    continue
                present.add(arch)
                st = arch_style(arch)
                # γ_c is what C1 judges: its fitted line and band (the verdict's), the SAEs joined faintly
                fitted = metric == "gamma_c" and _draw_fit(ax, pts, arch, metric)
                ax.plot(
                    pts["l0"].to_numpy(dtype=float),
                    pts[metric].to_numpy(dtype=float),
                    color=st.color,
                    marker=st.marker,
                    markersize=5,
                    linestyle=":" if fitted else st.linestyle,
                    linewidth=0.9 if fitted else 1.4,
                    alpha=0.6 if fitted else 1.0,
                    label=None if fitted else st.label,
                    gid=f"{metric}:{arch}",
                )
                _error_bars(ax, pts, "l0", metric, st.color, gid=f"errors:{metric}:{arch}")
            ax.axhline(1.0, color="0.15", linestyle="--", linewidth=1.3, gid="gamma_one", zorder=1.5)
            _missing_note(ax, architectures, ds, d, all_layers=sel)
            _log_axis(ax, "x", ds["l0"])
            if i == 1:
                ax.set_xlabel(_LABELS["l0"])
    fig.suptitle(f"Shrinkage: relative reconstruction bias vs L0 — {_on(d, model)}, layer {layer}")
    one = Line2D([], [], color="0.15", linestyle="--", linewidth=1.3, label=r"$\gamma = 1$ (no shrinkage)")
    _legend(fig, architectures, present, extra=[one])
    save_figure(fig, stem)
    return fig


@figure("fig14_gamma_grid")
@_styled
def plot_gamma_grid(
    df: pd.DataFrame,
    stem: str | Path,
    *,
    model: str | None = None,
    sites: Sequence[str] | None = None,
    architectures: Sequence[str] = ("gated", "baseline"),
) -> plt.Figure:
    """Fig. 14 analogue: γ (filled markers, solid) and γ_c (open markers, dotted) vs L0 at every
    layer (rows) and site (columns) of the table; dashed line at γ = 1 (no shrinkage).
    ``gid="<metric>:<arch>:<layer>:<site>"``. Needs columns model, layer, site, architecture, l0,
    gamma, gamma_c."""
    model, d, layers, fig, axes, cells = _layer_site_grid(
        df, "fig14_gamma_grid", ["gamma", "gamma_c"], model, sites, architectures, row_height=3.3
    )
    present: set[str] = set()
    for i, j, layer, site, ax, ds in cells:
        if j == 0:
            ax.set_ylabel(f"Layer {layer}\n" + r"$\gamma$, $\gamma_c$")
        if ds.empty:
            _no_data(ax)
            continue
        for arch in architectures:
            pts = ds[ds["architecture"] == arch].sort_values("l0", kind="stable")
            if pts.empty:
                continue
            present.add(arch)
            st = arch_style(arch)
            x = pts["l0"].to_numpy(dtype=float)
            ax.plot(
                x,
                pts["gamma"].to_numpy(dtype=float),
                color=st.color,
                marker=st.marker,
                markersize=5,
                linestyle="-",
                linewidth=1.4,
                gid=f"gamma:{arch}:{layer}:{site}",
            )
            ax.plot(
                x,
                pts["gamma_c"].to_numpy(dtype=float),
                color=st.color,
                marker=st.marker,
                markersize=5,
                markerfacecolor="white",
                linestyle=":",
                linewidth=1.4,
                gid=f"gamma_c:{arch}:{layer}:{site}",
            )
        ax.axhline(1.0, color="0.15", linestyle="--", linewidth=1.2, zorder=1.5)
        _log_axis(ax, "x", ds["l0"])
        if i == len(layers) - 1:
            ax.set_xlabel(_LABELS["l0"])
    fig.suptitle(f"Shrinkage at every layer and site — {_on(d, model)}")
    extra = [
        Line2D([], [], color="0.3", marker="o", linestyle="-", label=r"$\gamma$"),
        Line2D([], [], color="0.3", marker="o", markerfacecolor="white", linestyle=":", label=r"$\gamma_c$"),
        Line2D([], [], color="0.15", linestyle="--", label="no shrinkage"),
    ]
    _legend(fig, architectures, present, extra=extra)
    save_figure(fig, stem)
    return fig
