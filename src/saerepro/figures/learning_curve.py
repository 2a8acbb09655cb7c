"""Learning curves: each SAE's metrics against its training tokens (:mod:`saerepro.learning_curve`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ..tables import ARCHITECTURES, flattening
from .panels import (
    _error_bars,
    _legend,
    _no_data,
    _require,
    _site_list,
)
from .style import (
    _LABELS,
    SITE_LABELS,
    _fig_width,
    _styled,
    _token_label,
    arch_style,
    save_figure,
)


@_styled
def plot_learning_curve(table: pd.DataFrame, stem: str | Path, *, sites: Sequence[str] | None = None) -> plt.Figure:
    """Loss recovered (±1 SE, top row) and L0 (bottom row) vs training tokens, one column per site.

    ``table`` is :func:`saerepro.learning_curve.run_learning_curve`'s (one row per SAE and budget).
    One line per (architecture, coefficient) (``gid="curve:<metric>:<arch>:<coefficient>"``). Each
    top panel states, per architecture, the change of loss recovered over the last budget step
    and whether it is within 2 SE of zero ("flat").
    Needs columns site, architecture, coefficient, budget_tokens, loss_recovered, loss_recovered_se, l0.
    """

    fig_name = "learning_curve"
    _require(
        table,
        ["site", "architecture", "coefficient", "budget_tokens", "loss_recovered", "loss_recovered_se", "l0"],
        fig_name,
    )
    site_list = _site_list(table, sites)
    fig, axes = plt.subplots(
        2, len(site_list), figsize=(_fig_width(3.8, len(site_list)), 6.0), squeeze=False, layout="constrained"
    )
    flat = flattening(table)
    present: set[str] = set()
    archs = [a for a in ARCHITECTURES if a in set(table["architecture"])]
    for j, site in enumerate(site_list):
        ds = table[table["site"] == site]
        axes[0, j].set_title(SITE_LABELS.get(site, site))
        if ds.empty:
            _no_data(axes[0, j])
            _no_data(axes[1, j])
            continue
        notes = []
        for (arch, coef), g in ds.groupby(["architecture", "coefficient"], sort=True):
            g = g.sort_values("budget_tokens")
            st = arch_style(arch)
            present.add(arch)
            x = g["budget_tokens"].to_numpy(dtype=float)
            for i, metric in enumerate(("loss_recovered", "l0")):
                ax = axes[i, j]
                ax.plot(
                    x,
                    g[metric].to_numpy(dtype=float),
                    color=st.color,
                    marker=st.marker,
                    markersize=5,
                    linestyle=st.linestyle,
                    linewidth=1.4,
                    gid=f"curve:{metric}:{arch}:{coef:g}",
                )
                _error_bars(ax, g, "budget_tokens", metric, st.color, gid=f"errors:{metric}:{arch}:{coef:g}")
            f = flat[(flat["site"] == site) & (flat["architecture"] == arch)]
            if not f.empty:
                r = f.iloc[0]
                notes.append(
                    f"{st.label} λ={coef:g}: {r['change']:+.3f} ± {r['change_se']:.3f}, "
                    f"L0 {r['l0_change']:+.0%}{' (flat)' if r['flat'] else ''}"
                )
        axes[0, j].text(
            0.98,
            0.03,
            "last doubling:\n" + "\n".join(notes),
            transform=axes[0, j].transAxes,
            fontsize=7,
            ha="right",
            va="bottom",
            color="0.25",
            gid="flattening",
        )
        budgets = sorted(ds["budget_tokens"].unique())
        for i in range(2):
            axes[i, j].set_xscale("log")
            axes[i, j].set_xticks(budgets, [_token_label(b) for b in budgets])
            axes[i, j].xaxis.set_minor_formatter(NullFormatter())
            axes[i, j].set_xlabel("Training tokens per SAE (log scale)")
        axes[1, j].set_yscale("log")
        axes[1, j].yaxis.set_minor_formatter(NullFormatter())
        axes[1, j].yaxis.set_major_formatter(FuncFormatter(lambda t, _: f"{t:g}"))
        axes[1, j].yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    axes[0, 0].set_ylabel(_LABELS["loss_recovered"] + " (±1 SE)")
    axes[1, 0].set_ylabel(_LABELS["l0"])
    model = str(table["model"].iloc[0]) if "model" in table and len(table) else ""
    layer = f", layer {int(table['layer'].iloc[0])}" if "layer" in table and table["layer"].nunique() == 1 else ""
    fig.suptitle(f"Learning curves — {model}{layer}")
    _legend(fig, archs, present)
    save_figure(fig, stem)
    return fig
