"""What several figures draw: selecting a model, layer and sites from the table, a panel's log
axes, "no data" and missing-architecture notes, the legend, error bars, and each architecture's
points with its fitted frontier and band (:mod:`saerepro.frontier`, what the verdicts read)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

from ..frontier import TRANSFORMS, fit, simultaneous_band
from ..pareto import pareto_frontier
from ..sites import SITES
from ..verdicts import RULES, sae_rows
from .style import (
    _LABELS,
    DIVERGED_COLOR,
    DIVERGED_LABEL,
    DIVERGED_MARK,
    SITE_LABELS,
    FigureDataError,
    _fig_width,
    arch_style,
    save_figure,
)


def _on(d: pd.DataFrame, model: str) -> str:
    """``model on <corpus>`` for figure titles (just the model for a table without a corpus column)."""
    corpora = sorted(d["corpus"].astype(str).unique()) if "corpus" in d.columns else []
    return f"{model} on {', '.join(corpora)}" if corpora else model


def _require(df: pd.DataFrame, cols: Sequence[str], fig: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise FigureDataError(f"{fig}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise FigureDataError(f"{fig}: table lacks needed column(s) {missing}; it has {list(df.columns)}")


def _select_model(df: pd.DataFrame, model: str | None, fig: str) -> str:
    models = sorted(df["model"].astype(str).unique())
    if model is not None:
        if model not in models:
            raise FigureDataError(f"{fig}: no rows for model {model!r}; models present: {models}")
        return model
    if len(models) == 1:
        return models[0]
    if not models:
        raise FigureDataError(f"{fig}: the table is empty")
    raise FigureDataError(f"{fig}: the table holds several models {models}; pass model=")


def _select_layer(df: pd.DataFrame, layer: int | None, fig: str) -> int:
    """``layer`` or, if None, the middle one of the layers present (the lower middle if even)."""
    layers = sorted(int(v) for v in df["layer"].unique())
    if not layers:
        raise FigureDataError(f"{fig}: no layers in the table")
    if layer is None:
        return layers[(len(layers) - 1) // 2]
    return int(layer)


def _site_list(df: pd.DataFrame, sites: Sequence[str] | None) -> list[str]:
    if sites is not None:
        return list(sites)
    present = [str(s) for s in df["site"].unique()]
    extra = sorted(s for s in present if s not in SITES)
    if extra and not set(present) & set(SITES):
        return extra  # e.g. a neuron-site run (paper Fig. 5): no empty paper-site panels beside it
    # The paper's three sites always, so a missing one shows as "no data" rather than vanishing.
    return list(SITES) + extra


def _no_data(ax: plt.Axes, text: str = "no data") -> None:
    ax.text(
        0.5,
        0.5,
        text,
        transform=ax.transAxes,
        ha="center",
        va="center",
        color="0.45",
        fontsize=11,
        style="italic",
        gid="no_data",
    )
    ax.tick_params(left=False, bottom=False, labelleft=False, labelbottom=False)
    ax.grid(False)


def _log_axis(ax: plt.Axes, which: str, values) -> None:
    """Log scale with readable plain-number ticks and no minor-tick labels.

    Major ticks at 1, 2, 5 × 10^k, or at every integer multiple of 10^k when the plotted
    ``values`` span less than a factor 4 (so that a narrow axis still gets at least two ticks).
    When they span less than a factor 1.5 (e.g. 48.2 to 48.3), three ticks at the ends and the
    middle, rounded to the fewest digits that keep them distinct, so labels cannot collide.
    A single value gets one tick (3 significant digits) in a window of a factor 1.5 either side.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    span = v.max() / v.min() if v.size else 10.0
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    if v.size and np.unique(v).size == 1:
        # one value (a panel with one SAE): one tick at 3 significant digits, and a factor-1.5
        # window around it, so its error bar is not stretched over the whole axis
        (ax.set_xlim if which == "x" else ax.set_ylim)(v[0] / 1.5, v[0] * 1.5)
        axis.set_major_locator(FixedLocator([float(f"{v[0]:.3g}")]))
        axis.set_major_formatter(FuncFormatter(lambda t, _: f"{t:.3g}"))
        axis.set_minor_locator(NullLocator())
        return
    if span < 1.5:
        for digits in range(2, 8):
            ticks = np.unique([float(f"{t:.{digits}g}") for t in np.geomspace(v.min(), v.max(), 3)])
            if len(ticks) == 3 or digits == 7:
                break
        axis.set_major_locator(FixedLocator(ticks.tolist()))
        axis.set_major_formatter(FuncFormatter(lambda t, _: f"{t:.{digits}g}"))
        axis.set_minor_locator(NullLocator())
        return
    subs = (1.0, 2.0, 5.0) if span >= 4 else tuple(float(k) for k in range(1, 10))
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda t, _: f"{t:g}"))
    axis.set_minor_formatter(NullFormatter())


def _positive_l0(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["l0"].astype(float) > 0]


def _missing_note(
    ax: plt.Axes,
    archs: Sequence[str],
    panel: pd.DataFrame,
    fig_data: pd.DataFrame,
    loc: str = "lower right",
    *,
    all_layers: pd.DataFrame | None = None,
) -> None:
    """Name the architectures this panel lacks although the run trains them here.

    An architecture counts as missing at (layer, site) when it has SAEs at another site of that
    layer and either at this site at another layer or at every other site of this layer that has
    data: so TopK missing at one of three sites is named, but the ablations that a run trains at
    the residual stream only are not listed under MLP and attention. ``fig_data``: the figure's
    rows; ``all_layers``: the model's rows at every layer, where the figure draws one layer.
    """
    scope = fig_data if all_layers is None else all_layers
    if panel.empty or scope.empty:
        return
    layer, site = int(panel["layer"].iloc[0]), str(panel["site"].iloc[0])
    here = scope[scope["layer"].astype(int) == layer]
    data_sites = set(here["site"]) - {site}
    missing = []
    for a in archs:
        if a in set(panel["architecture"]):
            continue
        at_layer = set(here.loc[here["architecture"] == a, "site"])
        at_site_elsewhere = ((scope["architecture"] == a) & (scope["site"] == site)).any()
        if at_layer and (at_site_elsewhere or data_sites <= at_layer):
            missing.append(arch_style(a).label)
    if not missing:
        return
    # in the panel's title, outside the axes: a note inside them could hide points; wrapped
    # between labels so that a long list does not run over the neighbouring panels
    names = "; ".join(label.replace(" ", "\xa0") for label in missing)
    note = textwrap.fill(f"(no data: {names})", 34, break_long_words=False).replace("\xa0", " ")
    ax.set_title(
        f"{ax.get_title()}\n{note}",
        fontsize=plt.rcParams["axes.titlesize"],
        gid="missing_archs",
    )


def _legend(fig: plt.Figure, archs: Sequence[str], present: set[str], extra: Sequence[Line2D] = ()) -> None:
    """One entry per architecture; absent ones are listed as "(no data)" when the figure is about
    a fixed set of them (at most 5), and left out of figures over every architecture."""
    handles = []
    if len(archs) > 5:
        archs = [a for a in archs if a in present] or list(archs)[:1]
    for a in archs:
        st = arch_style(a)
        has = a in present
        handles.append(
            Line2D(
                [],
                [],
                color=st.color,
                marker=st.marker,
                linestyle=st.linestyle,  # type: ignore[arg-type]  # one of matplotlib's names
                alpha=1.0 if has else 0.35,
                label=st.label if has else f"{st.label} (no data)",
            )
        )
    handles += list(extra)
    if any(str(c.get_gid()).startswith("diverged:") for ax in fig.axes for c in ax.collections):
        handles.append(
            Line2D(
                [],
                [],
                linestyle="none",
                marker="x",
                color=DIVERGED_COLOR,
                markersize=8,
                markeredgewidth=1.8,
                label=DIVERGED_LABEL,
            )
        )
    # at most one entry per ~2.8 inches of figure: a one-panel figure's "(no data)" labels overflowed
    per_row = max(1, int(fig.get_figwidth() // 2.8))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4, per_row), frameon=False)


def _error_bars(ax, pts: pd.DataFrame, x: str, y: str, color: str, gid: str, alpha: float = 0.6) -> None:
    """±1 SE bars from the table's ``<x>_se`` / ``<y>_se`` columns, where it has them."""
    xerr = pts[f"{x}_se"].to_numpy(dtype=float) if f"{x}_se" in pts else None
    yerr = pts[f"{y}_se"].to_numpy(dtype=float) if f"{y}_se" in pts else None
    if xerr is None and yerr is None:
        return
    ax.errorbar(
        pts[x].to_numpy(dtype=float),
        pts[y].to_numpy(dtype=float),
        xerr=xerr,
        yerr=yerr,
        fmt="none",
        ecolor=color,
        elinewidth=1.0,
        capsize=2,
        alpha=alpha,
        gid=gid,
    )


def _draw_fit(ax, pts: pd.DataFrame, arch: str, y: str) -> bool:
    """The frontier the verdicts read (:func:`saerepro.frontier.fit` on every SAE and seed behind
    ``pts``, :func:`saerepro.verdicts.sae_rows`) with its simultaneous band, over the L0s the
    architecture has SAEs at (``gid="fit:<arch>"``, ``"band:<arch>"``); each seed's SAE as a small
    hollow marker where ``pts`` are seed means (``gid="seeds:<arch>"``). False where no fit exists
    (fewer than 3 SAEs at 2 λ)."""

    if y not in TRANSFORMS:
        return False
    rows = sae_rows(pts)
    f = fit(rows, y, RULES.n_boot, RULES.seed)
    if f is None:
        return False
    st = arch_style(arch)
    if len(rows) > len(pts):
        ax.scatter(
            rows["l0"],
            rows[y],
            facecolors="none",
            edgecolors=st.color,
            marker=st.marker,
            s=14,
            alpha=0.6,
            linewidths=0.8,
            gid=f"seeds:{arch}",
        )
    grid = np.geomspace(*f.l0_range, RULES.grid)
    curve = f.predict(grid)
    low, high = simultaneous_band(curve, f.predict_draws(grid), RULES.level, f.df)
    # a band far wider than the data (few SAEs at the ends) is cut at half the points' span beyond
    # them, so it does not squash the panel
    span = float(rows[y].max() - rows[y].min()) or 1.0
    low, high = np.clip(low, rows[y].min() - span / 2, None), np.clip(high, None, rows[y].max() + span / 2)
    ax.fill_between(grid, low, high, color=st.color, alpha=0.15, linewidth=0, gid=f"band:{arch}")
    ax.plot(grid, curve, color=st.color, linestyle=st.linestyle, linewidth=1.8, label=st.label, gid=f"fit:{arch}")
    return True


def _draw_points_and_frontier(ax, pts: pd.DataFrame, arch: str, y: str, maximize_y: bool) -> None:
    """Markers for every SAE with ±1 SE bars, a red cross over each SAE that diverged in training
    (when the table has ``diverged``), the fitted frontier with its band where one exists
    (:func:`_draw_fit`), and the empirical (L0, y) Pareto frontier joined by a line: faint and
    unlabelled beside a fit, the curve itself where there is none."""
    st = arch_style(arch)
    ax.scatter(pts["l0"], pts[y], color=st.color, marker=st.marker, s=22, alpha=0.6, linewidths=0, gid=f"points:{arch}")
    _error_bars(ax, pts, "l0", y, st.color, gid=f"errors:{arch}")
    if "diverged" in pts and pts["diverged"].astype(bool).any():
        bad = pts[pts["diverged"].astype(bool)]
        ax.scatter(bad["l0"], bad[y], gid=f"diverged:{arch}", zorder=5, **DIVERGED_MARK)
    fitted = _draw_fit(ax, pts[~pts["diverged"].astype(bool)] if "diverged" in pts else pts, arch, y)
    fr = pareto_frontier(pts, "l0", y, minimize_x=True, maximize_y=maximize_y)
    ax.plot(
        fr["l0"].to_numpy(dtype=float),
        fr[y].to_numpy(dtype=float),
        color=st.color,
        marker=st.marker,
        markersize=4 if fitted else 5,
        linestyle=":" if fitted else st.linestyle,
        linewidth=0.9 if fitted else 1.6,
        alpha=0.5 if fitted else 1.0,
        label=None if fitted else st.label,
        gid=f"frontier:{arch}",
    )


def _pareto_row(
    df: pd.DataFrame,
    stem: str | Path,
    *,
    fig_name: str,
    archs: Sequence[str],
    title: str,
    model: str | None,
    layer: int | None,
    sites: Sequence[str] | None,
    y: str = "loss_recovered",
    maximize_y: bool = True,
    log_y: bool = False,
) -> plt.Figure:
    _require(df, ["model", "layer", "site", "architecture", "l0", y], fig_name)
    model = _select_model(df, model, fig_name)
    d = df[df["model"] == model]
    sel = d[d["architecture"].isin(archs)]
    layer = _select_layer(sel if not sel.empty else d, layer, fig_name)
    d = _positive_l0(sel[sel["layer"] == layer])
    site_list = _site_list(df[df["model"] == model], sites)
    height = 3.4
    fig, axes = plt.subplots(
        1, len(site_list), figsize=(_fig_width(3.6, len(site_list)), height), squeeze=False, layout="constrained"
    )
    present: set[str] = set()
    for ax, site in zip(axes[0], site_list, strict=False):
        ds = d[d["site"] == site]
        ax.set_title(SITE_LABELS.get(site, site))
        if ds.empty:
            _no_data(ax)
            continue
        for arch in archs:
            pts = ds[ds["architecture"] == arch]
            if pts.empty:
                continue
            present.add(arch)
            _draw_points_and_frontier(ax, pts, arch, y, maximize_y)
        _missing_note(ax, archs, ds, d, "lower right" if maximize_y else "upper right", all_layers=sel)
        _log_axis(ax, "x", ds["l0"])
        ylabel = _LABELS.get(y, y)
        if log_y and (ds[y] > 0).all():
            _log_axis(ax, "y", ds[y])
            ylabel += " (log scale)"
        ax.set_xlabel(_LABELS["l0"])
        ax.set_ylabel(ylabel)
    fig.suptitle(f"{title} — {_on(d, model)}, layer {layer}")
    _legend(fig, archs, present)
    save_figure(fig, stem)
    return fig


def _layer_site_grid(
    df: pd.DataFrame,
    fig_name: str,
    columns: Sequence[str],
    model: str | None,
    sites: Sequence[str] | None,
    architectures: Sequence[str],
    row_height: float,
):
    """Shared set-up of the layers × sites figures: (model, data, sites, layers, figure, axes, cells)
    where ``cells`` yields (i, j, layer, site, ax, panel data) with the site titles set."""
    _require(df, ["model", "layer", "site", "architecture", "l0", *columns], fig_name)
    model = _select_model(df, model, fig_name)
    d = df[df["model"] == model]
    site_list = _site_list(d, sites)
    layers = sorted(int(v) for v in d["layer"].unique())
    d = _positive_l0(d[d["architecture"].isin(architectures)])
    fig, axes = plt.subplots(
        len(layers),
        len(site_list),
        figsize=(_fig_width(3.4, len(site_list)), row_height * len(layers) + 0.7),
        squeeze=False,
        layout="constrained",
    )

    def cells():
        for i, layer in enumerate(layers):
            for j, site in enumerate(site_list):
                ax = axes[i, j]
                if i == 0:
                    ax.set_title(SITE_LABELS.get(site, site))
                yield i, j, layer, site, ax, d[(d["layer"] == layer) & (d["site"] == site)]

    return model, d, layers, fig, axes, cells()
