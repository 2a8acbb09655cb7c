"""Pareto figures: loss recovered (Figs. 1, 12-13), ΔLM loss, NMSE and dead latents against L0, and
the L0 ratio baseline / gated at equal loss recovered (C3)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from ..tables import ARCHITECTURES
from .panels import (
    _draw_points_and_frontier,
    _layer_site_grid,
    _legend,
    _log_axis,
    _missing_note,
    _no_data,
    _on,
    _pareto_row,
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
    FigureDataError,
    _fig_width,
    _styled,
    arch_style,
    save_figure,
)


@figure("fig1_pareto_headline")
@_styled
def plot_pareto_headline(
    df: pd.DataFrame,
    stem: str | Path,
    *,
    model: str | None = None,
    layer: int | None = None,
    sites: Sequence[str] | None = None,
) -> plt.Figure:
    """Fig. 1 analogue: L0 (log x) vs loss recovered, gated vs baseline, one panel per site.

    Every SAE is a faint marker; each architecture's Pareto frontier (min L0, max loss recovered)
    is joined by a line (``gid="frontier:<arch>"``). ``layer`` defaults to the middle
    layer present (pass the configured headline layer). ``model`` may be omitted if the table holds
    one model. Needs columns model, layer, site, architecture, l0, loss_recovered.
    """
    return _pareto_row(
        df,
        stem,
        fig_name="fig1_pareto_headline",
        archs=("gated", "baseline"),
        title="Gated vs baseline",
        model=model,
        layer=layer,
        sites=sites,
    )


@figure("fig12_pareto_grid")
@_styled
def plot_pareto_grid(
    df: pd.DataFrame,
    stem: str | Path,
    *,
    model: str | None = None,
    sites: Sequence[str] | None = None,
    architectures: Sequence[str] = ("gated", "baseline"),
) -> plt.Figure:
    """Figs. 12–13 analogue: L0 vs loss recovered on a grid of layers (rows) × sites (columns).

    One model per figure; every SAE a faint marker, each architecture's frontier joined.
    Needs columns model, layer, site, architecture, l0, loss_recovered.
    """
    model, d, layers, fig, axes, cells = _layer_site_grid(
        df, "fig12_pareto_grid", ["loss_recovered"], model, sites, architectures, row_height=3.1
    )
    present: set[str] = set()
    for i, j, layer, _site, ax, ds in cells:
        if ds.empty:
            _no_data(ax)
        else:
            for arch in architectures:
                pts = ds[ds["architecture"] == arch]
                if not pts.empty:
                    present.add(arch)
                    _draw_points_and_frontier(ax, pts, arch, "loss_recovered", True)
            _missing_note(ax, architectures, ds, d)
            _log_axis(ax, "x", ds["l0"])
        if j == 0:
            ax.set_ylabel(f"Layer {layer}\n{_LABELS['loss_recovered']}")
        if i == len(layers) - 1:
            ax.set_xlabel(_LABELS["l0"])
    fig.suptitle(f"L0 vs loss recovered, all layers and sites — {_on(d, model)}")
    _legend(fig, architectures, present)
    save_figure(fig, stem)
    return fig


@figure("delta_lm_loss_all")
@_styled
def plot_delta_lm_loss(
    df: pd.DataFrame,
    stem: str | Path,
    *,
    model: str | None = None,
    layer: int | None = None,
    sites: Sequence[str] | None = None,
    architectures: Sequence[str] = ARCHITECTURES,
) -> plt.Figure:
    """Beyond the paper: ΔLM loss (log y) vs L0 (log x) for every architecture incl. TopK and
    JumpReLU; each architecture's frontier (min L0, min ΔLM loss) joined. A panel whose ΔLM losses
    are not all positive falls back to a linear y axis.
    Needs columns model, layer, site, architecture, l0, delta_lm_loss."""
    return _pareto_row(
        df,
        stem,
        fig_name="delta_lm_loss_all",
        archs=tuple(architectures),
        title="ΔLM loss vs L0, all architectures",
        model=model,
        layer=layer,
        sites=sites,
        y="delta_lm_loss",
        maximize_y=False,
        log_y=True,
    )


@figure("nmse_frontier")
@_styled
def plot_nmse(
    df: pd.DataFrame,
    stem: str | Path,
    *,
    model: str | None = None,
    layer: int | None = None,
    sites: Sequence[str] | None = None,
    architectures: Sequence[str] = ARCHITECTURES,
) -> plt.Figure:
    """Beyond the paper (Gao et al.'s main plot): NMSE (log y) vs L0 (log x) for every architecture,
    each architecture's frontier (min L0, min NMSE) joined. NMSE is the fraction of variance
    unexplained; on Gemma's residual and MLP outputs a few massive dimensions dominate the variance,
    so read it beside loss recovered. Needs columns model, layer, site, architecture, l0, nmse."""
    return _pareto_row(
        df,
        stem,
        fig_name="nmse_frontier",
        archs=tuple(architectures),
        title="NMSE vs L0, all architectures",
        model=model,
        layer=layer,
        sites=sites,
        y="nmse",
        maximize_y=False,
        log_y=True,
    )


@figure("dead_latents")
@_styled
def plot_dead_latents(
    df: pd.DataFrame,
    stem: str | Path,
    *,
    model: str | None = None,
    layer: int | None = None,
    sites: Sequence[str] | None = None,
    architectures: Sequence[str] = ARCHITECTURES,
) -> plt.Figure:
    """Beyond the paper (Gao et al.): fraction of latents that never fire on the eval tokens
    (1 − alive fraction) vs L0, one line per architecture in order of L0
    (``gid="dead:<arch>"``). Needs columns model, layer, site, architecture, l0, alive_frac."""
    fig_name = "dead_latents"
    _require(df, ["model", "layer", "site", "architecture", "l0", "alive_frac"], fig_name)
    model = _select_model(df, model, fig_name)
    d = df[df["model"] == model]
    site_list = _site_list(d, sites)
    sel = d[d["architecture"].isin(architectures)]
    layer = _select_layer(sel if not sel.empty else d, layer, fig_name)
    d = _positive_l0(sel[sel["layer"] == layer])
    fig, axes = plt.subplots(
        1, len(site_list), figsize=(_fig_width(3.6, len(site_list)), 3.4), squeeze=False, layout="constrained"
    )
    present: set[str] = set()
    for ax, site in zip(axes[0], site_list, strict=False):
        ds = d[d["site"] == site]
        ax.set_title(SITE_LABELS.get(site, site))
        if ds.empty:
            _no_data(ax)
            continue
        for arch in architectures:
            pts = ds[ds["architecture"] == arch].sort_values("l0", kind="stable")
            if pts.empty:
                continue
            present.add(arch)
            st = arch_style(arch)
            ax.plot(
                pts["l0"].to_numpy(dtype=float),
                1 - pts["alive_frac"].to_numpy(dtype=float),
                color=st.color,
                marker=st.marker,
                markersize=5,
                linestyle=st.linestyle,
                linewidth=1.4,
                gid=f"dead:{arch}",
            )
        _log_axis(ax, "x", ds["l0"])
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel(_LABELS["l0"])
        ax.set_ylabel("Dead fraction")  # never fire on the eval tokens (the caption says so)
    fig.suptitle(f"Dead latents vs L0 — {_on(d, model)}, layer {layer}")
    _legend(fig, architectures, present)
    save_figure(fig, stem)
    return fig


@figure("half_l0_ratios")
@_styled
def plot_half_l0(
    half: pd.DataFrame,
    stem: str | Path,
    *,
    sites: Sequence[str] | None = None,
) -> plt.Figure:
    """L0 ratio baseline / gated needed for equal loss recovered, from :func:`saerepro.pareto.half_l0`.

    Rows: models; columns: sites; x: loss-recovered level; one line per layer
    (``gid="ratio:<model>:<layer>"``, viridis by layer). Reference lines: ratio 1 (parity,
    dotted, ``gid="ratio_one"``) and 2 ("half the L0", dashed, ``gid="ratio_two"``). Undefined
    ratios (level outside a frontier) leave gaps; a panel without any defined ratio says so.
    Optional columns ci_low, ci_high (:func:`saerepro.tables.half_l0_ratio_ci`) are drawn as a
    shaded 95% band (``gid="ratio_ci:<model>:<layer>"``).
    Needs columns model, layer, site, level, ratio.
    """
    fig_name = "half_l0_ratios"
    _require(half, ["model", "layer", "site", "level", "ratio"], fig_name)
    models = sorted(half["model"].astype(str).unique())
    if not models:
        raise FigureDataError(f"{fig_name}: the table is empty")
    site_list = _site_list(half, sites)
    all_layers = sorted(int(v) for v in half["layer"].unique())
    cmap = plt.get_cmap("viridis")
    colors = {L: cmap(k / max(len(all_layers) - 1, 1) * 0.9) for k, L in enumerate(all_layers)}
    fig, axes = plt.subplots(
        len(models),
        len(site_list),
        figsize=(_fig_width(3.6, len(site_list)), 3.0 * len(models) + 0.7),
        squeeze=False,
        layout="constrained",
    )
    all_levels = sorted(float(v) for v in half["level"].unique())
    pad = 0.05 * (all_levels[-1] - all_levels[0]) if len(all_levels) > 1 else 0.01
    used_layers: set[int] = set()
    for i, model in enumerate(models):
        for j, site in enumerate(site_list):
            ax = axes[i, j]
            ds = half[(half["model"] == model) & (half["site"] == site)]
            title = SITE_LABELS.get(site, site)
            ax.set_title(f"{model}\n{title}" if len(models) > 1 else title)
            if ds.empty or not np.isfinite(ds["ratio"].to_numpy(dtype=float)).any():
                _no_data(ax, "no data" if ds.empty else "no level inside\nboth frontiers")
                continue
            for layer, g in ds.groupby("layer", sort=True):
                g = g.sort_values("level")
                used_layers.add(int(layer))
                ax.plot(
                    g["level"].to_numpy(dtype=float),
                    g["ratio"].to_numpy(dtype=float),
                    marker="o",
                    markersize=5,
                    color=colors[int(layer)],
                    linewidth=1.4,
                    gid=f"ratio:{model}:{int(layer)}",
                )
                if {"ci_low", "ci_high"} <= set(g.columns):  # unbounded ends (undefined draws) are not drawn
                    g = g.assign(**{c: g[c].where(np.isfinite(g[c].astype(float))) for c in ("ci_low", "ci_high")})
                if {"ci_low", "ci_high"} <= set(g.columns) and np.isfinite(g["ci_low"].to_numpy(dtype=float)).any():
                    ax.fill_between(
                        g["level"].to_numpy(dtype=float),
                        g["ci_low"].to_numpy(dtype=float),
                        g["ci_high"].to_numpy(dtype=float),
                        color=colors[int(layer)],
                        alpha=0.18,
                        linewidth=0,
                        gid=f"ratio_ci:{model}:{int(layer)}",
                    )
                    # a band between undefined neighbours has no width: bars show each level's CI
                    level, r, lo, hi = (g[c].to_numpy(dtype=float) for c in ("level", "ratio", "ci_low", "ci_high"))
                    ok = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(r)
                    ax.errorbar(
                        level[ok],
                        r[ok],
                        yerr=[r[ok] - lo[ok], hi[ok] - r[ok]],
                        fmt="none",
                        ecolor=colors[int(layer)],
                        capsize=3,
                        linewidth=1.2,
                        gid=f"ratio_ci_bars:{model}:{int(layer)}",
                    )
            ax.axhline(1.0, color="0.15", linestyle=":", linewidth=1.3, gid="ratio_one", zorder=1.5)
            ax.axhline(2.0, color="0.15", linestyle="--", linewidth=1.3, gid="ratio_two", zorder=1.5)
            top = np.nanmax(ds["ratio"].to_numpy(dtype=float))
            if "ci_high" in ds and np.isfinite(ds["ci_high"].to_numpy(dtype=float)).any():
                top = max(top, min(np.nanmax(ds["ci_high"].to_numpy(dtype=float)), 3 * top))
            ax.set_ylim(0, max(2.5, top * 1.1))
            ax.set_xticks(all_levels, [f"{v:g}" for v in all_levels])
            ax.set_xlim(all_levels[0] - pad, all_levels[-1] + pad)
            defined = ds.groupby("level")["ratio"].apply(lambda r: np.isfinite(r.to_numpy(dtype=float)).any())
            undefined = [lv for lv in all_levels if not defined.get(lv, False)]
            notes = []
            if undefined:
                notes.append("no ratio at " + ", ".join(f"{v:g}" for v in undefined) + "\n(level outside a frontier)")
            if {"ci_low", "ci_high"} <= set(ds.columns):
                bounded = ds.groupby("level")[["ci_low", "ci_high"]].apply(
                    lambda g: bool(np.isfinite(g.to_numpy(dtype=float)).all(axis=1).any())
                )
                unbounded = [lv for lv in all_levels if defined.get(lv, False) and not bounded.get(lv, False)]
                if unbounded:
                    notes.append("no bar at " + ", ".join(f"{v:g}" for v in unbounded) + " (unbounded interval)")
            if notes:
                ax.text(
                    0.02,
                    0.03,
                    "\n".join(notes),
                    transform=ax.transAxes,
                    fontsize=7.5,
                    color="0.35",
                    ha="left",
                    va="bottom",
                    gid="undefined_levels",
                )
            ax.set_xlabel("Loss recovered level")
            if j == 0:
                ax.set_ylabel("L0 baseline / L0 gated")
    handles = [Line2D([], [], color=colors[L], marker="o", label=f"layer {L}") for L in sorted(used_layers)]
    handles += [
        Line2D([], [], color="0.15", linestyle=":", linewidth=1.3, label="parity (ratio 1)"),
        Line2D([], [], color="0.15", linestyle="--", linewidth=1.3, label="half the L0 (ratio 2)"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5), frameon=False)
    fig.suptitle("L0 baseline needs ÷ L0 gated needs, at equal loss recovered")
    save_figure(fig, stem)
    return fig
