"""Inference-time optimisation (Figs. 10-11): gradient pursuit on each trained decoder at fixed k."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.lines import Line2D

from ..pareto import pareto_frontier
from ..verdicts import compare_dictionaries
from .panels import (
    _error_bars,
    _legend,
    _log_axis,
    _no_data,
    _positive_l0,
    _require,
    _select_layer,
    _site_list,
)
from .style import (
    _LABELS,
    SITE_LABELS,
    _fig_width,
    _styled,
    arch_style,
    save_figure,
)


@_styled
def plot_inference_opt(
    table: pd.DataFrame, stem: str | Path, *, layer: int | None = None, sites: Sequence[str] | None = None
) -> plt.Figure:
    """Fig. 11 analogue: L0 vs loss recovered of the SAEs' own encoders (solid Pareto frontiers over
    every SAE of an architecture) and of gradient-pursuit codes on the frozen decoder of the
    architecture's best dictionary (dashed, one point per target k, ``gid="pursuit:<arch>"``),
    gated vs baseline, one panel per site; ±1 SE bars. The best dictionary is the decoder with the
    highest pursuit loss recovered averaged over the ks (:func:`best_pursuit_decoders`), as the
    paper plots "the best performing dictionary from each model type". A note in each panel names
    it. ``table`` is :func:`saerepro.inference_opt.run_inference_opt`'s (k = 0: own encoder).
    """
    fig_name = "fig11_inference_opt_frontiers"
    _require(table, ["layer", "site", "architecture", "coefficient", "k", "l0", "loss_recovered"], fig_name)
    layer = _select_layer(table, layer, fig_name)
    d = _positive_l0(table[table["layer"] == layer])
    site_list = _site_list(d, sites)
    archs = ("gated", "baseline")
    best = best_pursuit_decoders(d)
    fig, axes = plt.subplots(
        1, len(site_list), figsize=(_fig_width(3.8, len(site_list)), 3.8), squeeze=False, layout="constrained"
    )
    present: set[str] = set()
    for ax, site in zip(axes[0], site_list, strict=False):
        ds = d[d["site"] == site]
        ax.set_title(SITE_LABELS.get(site, site))
        if ds.empty:
            _no_data(ax)
            continue
        notes = []
        for arch in archs:
            st = arch_style(arch)
            own = ds[(ds["architecture"] == arch) & (ds["k"] == 0)]
            if own.empty:
                continue
            present.add(arch)
            ax.scatter(
                own["l0"], own["loss_recovered"], color=st.color, marker=st.marker, s=18, alpha=0.6, linewidths=0
            )
            _error_bars(ax, own, "l0", "loss_recovered", st.color, gid=f"errors:encoder:{arch}", alpha=0.4)
            fr = pareto_frontier(own, "l0", "loss_recovered")
            _ito_line(ax, fr, arch, "-", f"encoder:{arch}")
            pick = best[(best["site"] == site) & (best["architecture"] == arch)]
            if pick.empty:
                continue
            coef = pick["coefficient"].iloc[0]
            curve = ds[(ds["architecture"] == arch) & (ds["coefficient"] == coef) & (ds["k"] > 0)].sort_values("k")
            _error_bars(ax, curve, "l0", "loss_recovered", st.color, gid=f"errors:pursuit:{arch}", alpha=0.4)
            _ito_line(ax, curve, arch, "--", f"pursuit:{arch}")
            notes.append(f"best {st.label} dictionary: λ={coef:g} (own L0 {pick['own_l0'].iloc[0]:.3g})")
        if notes:
            ax.text(
                0.98,
                0.03,
                "\n".join(notes),
                transform=ax.transAxes,
                fontsize=7,
                ha="right",
                va="bottom",
                color="0.25",
                gid="best_decoders",
            )
        _log_axis(ax, "x", ds["l0"])
        ax.set_xlabel(_LABELS["l0"])
        ax.set_ylabel(_LABELS["loss_recovered"])
    extra = [
        Line2D([], [], color="0.3", linestyle="-", label="own encoders (frontier)"),
        Line2D([], [], color="0.3", linestyle="--", label="gradient pursuit on the best dictionary"),
    ]
    fig.suptitle(f"Inference-time optimisation: frontiers — layer {layer}")
    _legend(fig, archs, present, extra=extra)
    save_figure(fig, stem)
    return fig


def _ito_line(ax: plt.Axes, pts: pd.DataFrame, arch: str, linestyle: str, gid: str) -> None:
    """L0 against loss recovered of ``pts``, joined in ``arch``'s colour and marker."""
    st = arch_style(arch)
    ax.plot(
        pts["l0"].to_numpy(dtype=float),
        pts["loss_recovered"].to_numpy(dtype=float),
        color=st.color,
        marker=st.marker,
        markersize=4,
        linestyle=linestyle,
        linewidth=1.5,
        gid=gid,
    )


def best_pursuit_decoders(table: pd.DataFrame) -> pd.DataFrame:
    """Per (site, architecture): the SAE whose decoder gives the highest gradient-pursuit loss
    recovered, averaged over the ks every SAE of that (site, architecture) was run at. Columns
    ``site``, ``architecture``, ``coefficient``, ``mean_loss_recovered`` and ``own_l0`` (the SAE's
    own encoder's L0, from its k = 0 row)."""
    rows = []
    for (site, arch), g in table.groupby(["site", "architecture"], sort=True):
        pursuit = g[g["k"] > 0]
        if pursuit.empty:
            continue
        common = set.intersection(*(set(x["k"]) for _, x in pursuit.groupby("coefficient")))
        means = pursuit[pursuit["k"].isin(common)].groupby("coefficient")["loss_recovered"].mean()
        coef = means.idxmax()
        own = g[(g["coefficient"] == coef) & (g["k"] == 0)]["l0"]
        rows.append(
            {
                "site": site,
                "architecture": arch,
                "coefficient": coef,
                "mean_loss_recovered": float(means.max()),
                "own_l0": float(own.iloc[0]) if len(own) else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=["site", "architecture", "coefficient", "mean_loss_recovered", "own_l0"])


@_styled
def plot_inference_opt_decoders(
    table: pd.DataFrame, stem: str | Path, *, layer: int | None = None, sites: Sequence[str] | None = None
) -> plt.Figure:
    """Fig. 10 analogue: which dictionary is best at a fixed test-time sparsity. One panel per
    (site, pursuit target k): each trained decoder's gradient-pursuit loss recovered (±1 SE) against
    the L0 its own encoder reached in training (log scale), gated vs baseline
    (``gid="decoders:<arch>:k<k>"``). A curve above the other at every training L0 means that
    architecture learned the better dictionaries at that k. Each panel's note is the verdict of
    :func:`saerepro.verdicts.compare_dictionaries` there (best gated − best baseline ± SE)."""

    fig_name = "fig10_inference_opt_decoders"
    _require(table, ["layer", "site", "architecture", "coefficient", "k", "l0", "loss_recovered"], fig_name)
    layer = _select_layer(table, layer, fig_name)
    d = table[table["layer"] == layer]
    site_list = _site_list(d, sites)
    ks = sorted(int(k) for k in d["k"].unique() if k > 0)
    archs = ("gated", "baseline")
    own_l0 = d[d["k"] == 0][["site", "architecture", "coefficient", "l0"]].rename(columns={"l0": "train_l0"})
    pursuit = d[d["k"] > 0].merge(own_l0, on=["site", "architecture", "coefficient"], how="inner")
    pursuit = pursuit[pursuit["train_l0"] > 0]
    judged = compare_dictionaries(d) if "loss_recovered_se" in d else None
    fig, axes = plt.subplots(
        len(site_list),
        max(1, len(ks)),
        figsize=(2.9 * max(1, len(ks)), 2.7 * len(site_list)),
        squeeze=False,
        layout="constrained",
        sharey="row",
    )
    present: set[str] = set()
    for i, site in enumerate(site_list):
        for j, k in enumerate(ks or [0]):
            ax = axes[i, j]
            ax.set_title(f"{SITE_LABELS.get(site, site)}, pursuit k = {k}", fontsize=9)
            pk = pursuit[(pursuit["site"] == site) & (pursuit["k"] == k)]
            if pk.empty:
                _no_data(ax)
                continue
            for arch in archs:
                pts = pk[pk["architecture"] == arch].sort_values("train_l0")
                if pts.empty:
                    continue
                present.add(arch)
                st = arch_style(arch)
                _error_bars(ax, pts, "train_l0", "loss_recovered", st.color, gid=f"errors:decoders:{arch}:k{k}")
                ax.plot(
                    pts["train_l0"].to_numpy(dtype=float),
                    pts["loss_recovered"].to_numpy(dtype=float),
                    color=st.color,
                    marker=st.marker,
                    markersize=4,
                    linestyle=st.linestyle,
                    linewidth=1.4,
                    gid=f"decoders:{arch}:k{k}",
                )
            if judged is not None and not judged.empty:
                v = judged[(judged["site"] == site) & (judged["k"] == k)]
                if not v.empty:
                    r = v.iloc[0]
                    ax.text(
                        0.98,
                        0.03,
                        f"best gated − best baseline:\n{r['diff']:+.3f} ± {r['diff_se']:.3f}, {r['verdict']}",
                        transform=ax.transAxes,
                        fontsize=7,
                        ha="right",
                        va="bottom",
                        color="0.25",
                        gid="dictionary_verdict",
                    )
            _log_axis(ax, "x", pk["train_l0"])
            ax.set_xlabel("L0 of the decoder's own encoder")
        axes[i, 0].set_ylabel(_LABELS["loss_recovered"] + " (pursuit)")
    fig.suptitle(f"Inference-time optimisation: dictionaries at fixed sparsity — layer {layer}")
    _legend(fig, archs, present)
    save_figure(fig, stem)
    return fig
